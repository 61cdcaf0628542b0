"""The sans-I/O SMPP session: framing, bind state machine, window."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.smpp import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CommandId,
    CommandStatus,
    ConnectionFatal,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    PduError,
    Role,
    Session,
    SessionState,
    SmppError,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    encode,
)

S = CommandStatus


def bound_pair(bind: type = BindTransceiver) -> tuple[Session, Session]:
    """An ESME and an SMSC session that have completed a bind."""
    esme, smsc = Session(Role.ESME), Session(Role.SMSC)
    (req,) = smsc.receive_data(esme.send(bind(system_id="u", password="p")))
    assert esme.receive_data(smsc.send(req.make_resp(system_id="smsc")))
    return esme, smsc


def stream() -> tuple[bytes, list[object]]:
    pdus = [
        SubmitSm(1, destination_addr="8613800138000", short_message=b"x" * 160),
        EnquireLink(2),
        DeliverSm(3, esm_class=4, short_message=b"id:1 stat:DELIVRD"),
        SubmitSmResp(4, 0, "abc"),
        DeliverSmResp(5),
    ]
    pdus[2].set(0x001E, "1")
    return b"".join(encode(p) for p in pdus), list(pdus)


def trx_smsc() -> Session:
    s = Session(Role.SMSC)
    s.state = SessionState.BOUND_TRX
    return s


# ---------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------


def test_chunking_at_every_byte_boundary_yields_the_same_pdus() -> None:
    data, pdus = stream()
    for cut in range(1, len(data)):  # (b"" would mean EOF)
        s = Session(Role.ESME)
        s.state = SessionState.BOUND_TRX
        events = s.receive_data(data[:cut]) + s.receive_data(data[cut:])
        assert [e for e in events if not isinstance(e, PduError)] == [
            p
            for p in pdus
            if p.command_id != CommandId.SUBMIT_SM  # an ESME never receives it
        ]


def test_one_byte_at_a_time() -> None:
    data, pdus = stream()
    s = trx_smsc()
    events = []
    for i in range(len(data)):
        events += s.receive_data(data[i : i + 1])
    # As SMSC, deliver_sm from the peer is refused; the rest arrive in order.
    assert [type(e).__name__ for e in events] == [
        "SubmitSm", "EnquireLink", "PduError", "SubmitSmResp", "DeliverSmResp",
    ]  # fmt: skip
    assert events[0] == pdus[0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 400), max_size=30))
def test_any_chunking_yields_the_same_events(sizes: list[int]) -> None:
    data, _ = stream()
    data = data * 3
    whole = trx_smsc().receive_data(data)
    s = trx_smsc()
    events, pos = [], 0
    for size in sizes:
        if pos < len(data):
            events += s.receive_data(data[pos : pos + size])
        pos += size
    if pos < len(data):
        events += s.receive_data(data[pos:])
    assert events == whole


def test_accepts_bytearray_and_memoryview_chunks() -> None:
    data, _ = stream()
    s = trx_smsc()
    events = s.receive_data(bytearray(data[:50])) + s.receive_data(memoryview(data)[50:])
    assert events == trx_smsc().receive_data(data)


def test_malformed_pdu_is_reported_and_the_stream_continues() -> None:
    good = encode(EnquireLink(1))
    unknown = struct.pack(">IIII", 20, 0x99, 0, 2) + b"junk"
    base = encode(SubmitSm(3))
    tlv = b"\x04\x27\x00\x05\x02"  # message_state claiming 5 octets, 1 present
    bad_tlv = struct.pack(">IIII", len(base) + len(tlv), 4, 0, 3) + base[16:] + tlv
    s = trx_smsc()
    events = s.receive_data(good + unknown + bad_tlv + good)
    assert events[0] == EnquireLink(1)
    assert events[1] == PduError(S.ESME_RINVCMDID, 0x99, 2, events[1].reason)
    assert isinstance(events[2], PduError)
    assert (events[2].command_status, events[2].sequence_number) == (S.ESME_RINVOPTPARSTREAM, 3)
    assert events[3] == EnquireLink(1)
    assert s.state is SessionState.BOUND_TRX


@pytest.mark.parametrize("length", [0, 4, 15, 65537, 0xFFFFFFFF])
def test_lost_framing_is_fatal_and_closes(length: int) -> None:
    s = trx_smsc()
    events = s.receive_data(encode(EnquireLink(1)) + struct.pack(">IIII", length, 0x15, 0, 2))
    assert events[0] == EnquireLink(1)
    assert isinstance(events[1], ConnectionFatal)
    assert s.state is SessionState.CLOSED
    assert s.receive_data(encode(EnquireLink(3))) == []
    with pytest.raises(SmppError):
        s.send(EnquireLinkResp(3))


def test_max_pdu_length_is_configurable() -> None:
    big = encode(DeliverSm(1, short_message=b"x" * 200))
    s = Session(Role.ESME, max_pdu_length=100)
    s.state = SessionState.BOUND_RX
    assert isinstance(s.receive_data(big[:20])[0], ConnectionFatal)
    ok = Session(Role.ESME, max_pdu_length=len(big))
    ok.state = SessionState.BOUND_RX
    assert isinstance(ok.receive_data(big)[0], DeliverSm)


def test_eof_inside_a_pdu_is_fatal_and_clean_eof_is_not() -> None:
    s = trx_smsc()
    s.receive_data(encode(EnquireLink(1))[:5])
    assert isinstance(s.receive_data(b"")[0], ConnectionFatal)
    assert s.state is SessionState.CLOSED
    clean = trx_smsc()
    assert clean.receive_data(b"") == []
    assert clean.state is SessionState.CLOSED


# ---------------------------------------------------------------------------
# Bind state machine
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "state"),
    [
        (BindTransmitter, SessionState.BOUND_TX),
        (BindReceiver, SessionState.BOUND_RX),
        (BindTransceiver, SessionState.BOUND_TRX),
    ],
)
def test_bind_moves_both_ends_to_the_same_state(bind: type, state: SessionState) -> None:
    esme, smsc = bound_pair(bind)
    assert esme.state is smsc.state is state
    assert esme.outstanding == 0


def test_failed_bind_leaves_the_session_open_and_retryable() -> None:
    esme, smsc = Session(Role.ESME), Session(Role.SMSC)
    (req,) = smsc.receive_data(esme.send(BindTransmitter(system_id="u", password="bad")))
    (resp,) = esme.receive_data(smsc.send(req.make_resp(command_status=S.ESME_RINVPASWD)))
    assert resp.command_status == S.ESME_RINVPASWD
    assert esme.state is smsc.state is SessionState.OPEN
    esme.send(BindTransmitter(system_id="u", password="good"))  # may bind again


def test_generic_nack_to_a_bind_fails_it() -> None:
    esme = Session(Role.ESME)
    esme.send(BindTransceiver(sequence_number=8))
    assert esme.receive_data(encode(GenericNack(8, S.ESME_RINVCMDLEN)))
    assert esme.state is SessionState.OPEN and esme.outstanding == 0


@pytest.mark.parametrize(
    ("role", "state", "pdu"),
    [
        (Role.ESME, SessionState.OPEN, SubmitSm()),  # not bound yet
        (Role.ESME, SessionState.BOUND_RX, SubmitSm()),  # a receiver cannot submit
        (Role.ESME, SessionState.BOUND_TX, BindTransmitter()),  # already bound
        (Role.ESME, SessionState.BOUND_TRX, DeliverSm()),  # an ESME never delivers
        (Role.SMSC, SessionState.BOUND_TX, DeliverSm()),  # a transmitter gets no deliver_sm
        (Role.SMSC, SessionState.BOUND_TRX, SubmitSm()),  # an SMSC never submits
        (Role.SMSC, SessionState.BOUND_TX, DataSm()),  # data_sm to the ESME needs RX
        (Role.SMSC, SessionState.BOUND_RX, Outbind()),  # outbind only before binding
        (Role.ESME, SessionState.UNBOUND, SubmitSm()),  # after unbind, only responses
        (Role.ESME, SessionState.UNBOUND, Unbind()),
    ],
)
def test_send_rejects_what_the_state_forbids(role: Role, state: SessionState, pdu: object) -> None:
    s = Session(role)
    s.state = state
    with pytest.raises(SmppError) as err:
        s.send(pdu)  # type: ignore[arg-type]
    assert err.value.command_status == S.ESME_RINVBNDSTS


def test_received_requests_in_the_wrong_state_are_refused_with_invbndsts() -> None:
    smsc = Session(Role.SMSC)
    (ev,) = smsc.receive_data(encode(SubmitSm(5, destination_addr="1")))
    assert ev == PduError(S.ESME_RINVBNDSTS, CommandId.SUBMIT_SM, 5, ev.reason)
    esme, smsc = bound_pair(BindTransmitter)
    (ev,) = esme.receive_data(encode(DeliverSm(6)))  # a transmitter is not delivered to
    assert isinstance(ev, PduError) and ev.command_status == S.ESME_RINVBNDSTS
    (ev,) = smsc.receive_data(encode(BindTransmitter(7)))
    assert isinstance(ev, PduError) and ev.command_status == S.ESME_RALYBND


def test_transceiver_traffic_both_ways() -> None:
    esme, smsc = bound_pair()
    (sub,) = smsc.receive_data(esme.send(SubmitSm(destination_addr="1", short_message=b"hi")))
    (resp,) = esme.receive_data(smsc.send(sub.make_resp(message_id="m1")))
    assert resp == SubmitSmResp(sub.sequence_number, 0, "m1")
    (dlv,) = esme.receive_data(smsc.send(DeliverSm(esm_class=4, short_message=b"id:m1")))
    assert smsc.outstanding == 1
    smsc.receive_data(esme.send(dlv.make_resp()))
    assert smsc.outstanding == 0


def test_unbind_from_either_side() -> None:
    esme, smsc = bound_pair()
    (unbind,) = smsc.receive_data(esme.send(Unbind()))
    assert esme.state is smsc.state is SessionState.UNBOUND
    with pytest.raises(SmppError):
        esme.send(SubmitSm())
    (resp,) = esme.receive_data(smsc.send(unbind.make_resp()))
    assert isinstance(resp, UnbindResp) and esme.outstanding == 0
    # responses to earlier requests still flow in UNBOUND
    smsc.send(SubmitSmResp(99, 0, "late"))
    esme, smsc = bound_pair()
    (unbind,) = esme.receive_data(smsc.send(Unbind()))
    assert esme.state is smsc.state is SessionState.UNBOUND
    esme.send(unbind.make_resp())


def test_enquire_link_allowed_open_and_bound() -> None:
    esme = Session(Role.ESME)
    assert esme.can_send(CommandId.ENQUIRE_LINK)
    assert not esme.can_send(CommandId.SUBMIT_SM)
    assert esme.can_send(CommandId.SUBMIT_SM_RESP)
    smsc = Session(Role.SMSC)
    (ev,) = smsc.receive_data(esme.send(EnquireLink()))
    assert isinstance(ev, EnquireLink)


def test_outbind_then_bind_receiver() -> None:
    esme, smsc = Session(Role.ESME), Session(Role.SMSC)
    (ob,) = esme.receive_data(smsc.send(Outbind(system_id="smsc", password="pw")))
    assert isinstance(ob, Outbind) and smsc.outstanding == 0  # outbind has no response
    (req,) = smsc.receive_data(esme.send(BindReceiver(system_id="u")))
    esme.receive_data(smsc.send(req.make_resp()))
    assert esme.state is smsc.state is SessionState.BOUND_RX


# ---------------------------------------------------------------------------
# Sequence numbers and the window
# ---------------------------------------------------------------------------


def test_sequence_numbers_are_assigned_and_wrap() -> None:
    esme, _ = bound_pair()
    first = SubmitSm()
    esme.send(first)
    second = SubmitSm()
    esme.send(second)
    assert second.sequence_number == first.sequence_number + 1
    kept = SubmitSm(sequence_number=1234)
    esme.send(kept)
    assert kept.sequence_number == 1234
    esme._seq = 0x7FFF_FFFF
    assert esme.next_sequence() == 1


def test_window_tracks_outstanding_requests() -> None:
    esme, smsc = bound_pair()
    wires = [esme.send(SubmitSm(destination_addr="1")) for _ in range(5)]
    assert esme.outstanding == 5 and esme.window_full(5) and not esme.window_full(6)
    reqs = smsc.receive_data(b"".join(wires))
    seqs = [r.sequence_number for r in reqs]
    assert esme.pending(seqs[0]) == CommandId.SUBMIT_SM
    esme.receive_data(smsc.send(reqs[1].make_resp(message_id="x")))  # answer the 2nd only
    assert esme.outstanding == 4 and esme.pending(seqs[1]) is None
    # the caller gave up on the 1st: a late response for it still surfaces
    assert esme.forget(seqs[0]) and esme.outstanding == 3
    (late,) = esme.receive_data(smsc.send(reqs[0].make_resp(message_id="late")))
    assert isinstance(late, SubmitSmResp) and esme.outstanding == 3


def test_error_response_settles_the_request() -> None:
    esme, smsc = bound_pair()
    (req,) = smsc.receive_data(esme.send(SubmitSm()))
    (resp,) = esme.receive_data(smsc.send(req.make_resp(command_status=S.ESME_RTHROTTLED)))
    assert resp.command_status == S.ESME_RTHROTTLED and esme.outstanding == 0


def test_malformed_response_settles_the_request_as_pdu_error() -> None:
    esme, _ = bound_pair()
    pdu = SubmitSm()
    esme.send(pdu)
    body = b"m" * 70
    wire = struct.pack(">IIII", 16 + len(body), 0x80000004, 0, pdu.sequence_number) + body
    (ev,) = esme.receive_data(wire)
    assert isinstance(ev, PduError) and ev.command_status == S.ESME_RINVMSGID
    assert esme.outstanding == 0


def test_send_all_joins_for_one_write() -> None:
    esme, smsc = bound_pair()
    data = esme.send_all([SubmitSm(short_message=b"a"), SubmitSm(short_message=b"b")])
    assert [p.short_message for p in smsc.receive_data(data)] == [b"a", b"b"]
    assert esme.outstanding == 2


def test_a_request_stays_outstanding_until_answered_or_forgotten() -> None:
    esme, _ = bound_pair()
    ping = EnquireLink()
    esme.send(ping)
    assert esme.outstanding == 1
    assert esme.forget(ping.sequence_number) and esme.outstanding == 0
    assert not esme.forget(ping.sequence_number)
