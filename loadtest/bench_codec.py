"""SMPP codec throughput on one core: ours beside aiosmpplib (and smpp34 if installed).

    python -m loadtest.bench_codec [--seconds N]

The input is the gateway's typical PDU: a submit_sm carrying 160 GSM 03.38
characters (letters, digits and spaces, whose unpacked septets equal their
ASCII bytes, so every codec sends the same octets). Each figure is the best
of three runs of ``--seconds`` each, to damp noise from other processes.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

from protocols.smpp import (
    Role,
    Session,
    SessionState,
    SubmitSm,
    SubmitSmResp,
    decode,
    encode,
)

TEXT = ("Hello from smsgw 0123456789 " * 8)[:160]
SOURCE, DESTINATION = "smsgw", "8613800138000"


def rate(fn: Callable[[], object], seconds: float, batch: int = 1000) -> float:
    """Calls per second of ``fn``: best of three runs of ``seconds``."""
    best = 0.0
    for _ in range(3):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            for _ in range(batch):
                fn()
            calls += batch
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, calls / (now - start))
    return best


def ours(seconds: float) -> dict[str, float]:
    sm = TEXT.encode("ascii")

    def build() -> SubmitSm:
        return SubmitSm(
            source_addr_ton=5,
            source_addr=SOURCE,
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr=DESTINATION,
            registered_delivery=1,
            short_message=sm,
        )

    pdu = build()
    pdu.sequence_number = 1
    wire = encode(pdu)
    assert decode(wire) == pdu
    return {
        "encode": rate(lambda: encode(pdu), seconds),
        "construct+encode": rate(lambda: encode(build()), seconds),
        "decode": rate(lambda: decode(wire), seconds),
    }


def aiosmpplib_codec(seconds: float) -> dict[str, float] | str:
    try:
        from aiosmpplib import protocol as aio
        from aiosmpplib import state as aio_state
    except ImportError as exc:  # pragma: no cover - it is a dependency
        return f"not importable ({exc})"

    def build() -> aio.SubmitSm:
        return aio.SubmitSm(
            sequence_num=1,
            short_message=TEXT,
            source=aio_state.PhoneNumber(SOURCE, aio_state.TON.ALPHANUMERIC),
            destination=aio_state.PhoneNumber(
                DESTINATION, aio_state.TON.INTERNATIONAL, aio_state.NPI.ISDN
            ),
        )

    wire = build().pdu()
    ours_pdu = decode(wire)  # the same octets as ours, apart from sequence_number
    assert isinstance(ours_pdu, SubmitSm) and ours_pdu.short_message == TEXT.encode("ascii")
    header = aio.SmppMessage.parse_header(wire)

    def parse() -> object:
        return aio.SubmitSm.from_pdu(wire, aio.SmppMessage.parse_header(wire))

    assert aio.SubmitSm.from_pdu(wire, header).short_message == TEXT
    # aiosmpplib caches the encoded text inside the object after the first
    # pdu(), so only construct+encode measures its encoder.
    return {
        "construct+encode": rate(lambda: build().pdu(), seconds),
        "decode": rate(parse, seconds),
    }


def smpp34_codec(seconds: float) -> dict[str, float] | str:
    try:
        import smpp34  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return "not importable in this environment (not installed); no figures"
    return "importable, but no benchmark adapter is written for its API yet"


def session_receive(seconds: float) -> dict[str, float]:
    """submit_sm_resp PDUs per second through Session.receive_data, 1,000 per chunk."""
    chunk = b"".join(encode(SubmitSmResp(i + 1, 0, f"{i:016x}")) for i in range(1000))
    session = Session(Role.ESME)
    session.state = SessionState.BOUND_TRX
    events = session.receive_data(chunk)
    assert len(events) == 1000 and isinstance(events[-1], SubmitSmResp)
    # a chunk split mid-PDU, as TCP reads are
    cut = len(chunk) // 2 + 7
    halves = (chunk[:cut], chunk[cut:])

    def split() -> None:
        session.receive_data(halves[0])
        session.receive_data(halves[1])

    return {
        "submit_sm_resp via receive_data": rate(
            lambda: session.receive_data(chunk), seconds, batch=10
        )
        * 1000,
        "  (same, chunks split mid-PDU)": rate(split, seconds, batch=10) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each run")
    args = parser.parse_args(argv)
    seconds: float = args.seconds

    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} cores visible, one used; best of 3 x {seconds:g}s"
    )
    print(f"input: submit_sm, {len(TEXT)} GSM characters, no TLVs\n")
    results: list[tuple[str, dict[str, float] | str]] = [
        ("protocols.smpp (ours)", ours(seconds)),
        ("aiosmpplib", aiosmpplib_codec(seconds)),
        ("smpp34", smpp34_codec(seconds)),
        ("protocols.smpp Session", session_receive(seconds)),
    ]
    for name, figures in results:
        print(name)
        if isinstance(figures, str):
            print(f"  {figures}")
            continue
        for what, per_second in figures.items():
            print(f"  {what:34s} {per_second:>12,.0f} /s")
    mine, theirs = results[0][1], results[1][1]
    if isinstance(mine, dict) and isinstance(theirs, dict):
        print(
            "\nours / aiosmpplib: construct+encode "
            f"{mine['construct+encode'] / theirs['construct+encode']:.1f}x, "
            f"decode {mine['decode'] / theirs['decode']:.1f}x"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
