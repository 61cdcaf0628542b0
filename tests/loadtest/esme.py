"""An independent test ESME on `smpplib` (not our codec), synchronous and bounded
in time: it submits with a window, reconnects when the SMSC drops the bind and
resends what was left unanswered, and acknowledges every deliver_sm."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions


@dataclass
class Event:
    kind: str  # "resp" | "receipt" | "mo"
    at: float
    status: int = 0
    message_id: str = ""
    text: bytes = b""
    key: Any = None


@dataclass
class Esme:
    port: int
    system_id: str = "test"
    password: str = "test"
    registered_delivery: int = 1
    client: smpplib.client.Client | None = None
    events: list[Event] = field(default_factory=list)
    reconnects: int = 0

    def connect(self) -> None:
        self.client = smpplib.client.Client(
            "127.0.0.1", self.port, timeout=0.2, allow_unknown_opt_params=True
        )
        self.client.connect()
        self.client.bind_transceiver(system_id=self.system_id, password=self.password)

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.disconnect()
            except Exception:
                pass
            self.client = None

    def _submit(self, key: Any, dest: str, text: bytes) -> int:
        assert self.client is not None
        pdu = self.client.send_message(
            source_addr_ton=5, source_addr="TEST", dest_addr_ton=1, dest_addr_npi=1,
            destination_addr=dest, short_message=text,
            registered_delivery=self.registered_delivery,
        )
        return int(pdu.sequence)

    def read_one(self) -> Event | None:
        """One PDU (or None on a read timeout); raises ConnectionError if the bind is gone."""
        assert self.client is not None
        try:
            pdu = self.client.read_pdu()
        except TimeoutError:
            return None
        except smpplib.exceptions.ConnectionError as exc:
            raise ConnectionError(str(exc)) from exc
        now = time.monotonic()
        if pdu.command == "submit_sm_resp":
            mid = pdu.message_id.decode() if pdu.message_id else ""
            ev = Event("resp", now, int(pdu.status), mid, key=pdu.sequence)
        elif pdu.command == "deliver_sm":
            text = pdu.short_message or b""
            kind = "receipt" if int(pdu.esm_class) & 0x04 else "mo"
            ev = Event(kind, now, 0, "", text, key=pdu.source_addr)
            resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=self.client)
            resp.sequence = pdu.sequence
            self.client.send_pdu(resp)
        else:
            return None
        self.events.append(ev)
        return ev

    def submit_all(
        self, messages: list[tuple[str, bytes]], window: int = 10, timeout: float = 20.0
    ) -> dict[int, int]:
        """Submit every (dest, text) until each has a response; resend those left
        unanswered by a dropped bind. Returns index → final command_status."""
        todo = list(range(len(messages)))
        result: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while (todo or self._outstanding) and time.monotonic() < deadline:
            if self.client is None:
                try:
                    self.connect()
                except (OSError, smpplib.exceptions.ConnectionError,
                        smpplib.exceptions.PDUError):
                    time.sleep(0.1)
                    continue
            try:
                while todo and len(self._outstanding) < window:
                    self._outstanding[self._submit(todo[0], *messages[todo[0]])] = todo[0]
                    todo.pop(0)
                ev = self.read_one()
            except (ConnectionError, OSError, smpplib.exceptions.ConnectionError):
                # Dropped: whatever has no response goes again, in order.
                todo = sorted(self._outstanding.values()) + todo
                self._outstanding.clear()
                self.client = None
                self.reconnects += 1
                continue
            if ev is not None and ev.kind == "resp":
                i = self._outstanding.pop(ev.key, None)
                if i is not None:
                    result[i] = ev.status
                    if ev.status == 0:
                        self.acked[i] = ev.message_id
        return result

    def read_for(self, seconds: float, until: Any = None) -> None:
        """Read (and acknowledge) PDUs for `seconds`, or until until() is true."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until()):
            try:
                self.read_one()
            except ConnectionError:
                return

    def __post_init__(self) -> None:
        self._outstanding: dict[int, int] = {}
        self.acked: dict[int, str] = {}

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]
