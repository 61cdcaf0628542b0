"""A sans-I/O SMPP 3.4 session: bytes in → events out, PDUs in → bytes out.

Modelled on h11's connection object: the session owns no socket and no clock.
``receive_data`` takes whatever the transport read and returns events;
``send`` takes a PDU and returns the bytes to write. It keeps no timers: the
caller times its requests and ``forget``s those it gave up on.

Session states are those of SMPP 3.4 section 2.3 (OPEN, BOUND_TX, BOUND_RX,
BOUND_TRX, UNBOUND, CLOSED). Which side may issue which request in which state
is the table ``ALLOWED_IN`` below, keyed by command and issuer (section 2.3 and
the "issued by" line of each PDU in section 4); the state changes are
``BIND_RESULT`` and the unbind rows of ``_on_pdu``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .constants import RESP_BIT, CommandId
from .constants import CommandStatus as S
from .errors import SmppError
from .pdu import HEADER, HEADER_LENGTH, Pdu, decode_body, encode

__all__ = [
    "ALLOWED_IN",
    "BIND_RESULT",
    "ConnectionFatal",
    "Event",
    "PduError",
    "Role",
    "Session",
    "SessionState",
]


class Role(enum.Enum):
    ESME = "esme"
    SMSC = "smsc"


class SessionState(enum.Enum):
    OPEN = "open"  # connected, not yet bound
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBOUND = "unbound"  # an unbind was sent or received: only responses from here on
    CLOSED = "closed"  # the connection is gone (or framing was lost)


@dataclass(frozen=True, slots=True)
class PduError:
    """A PDU whose header was readable but which cannot be accepted.

    Answer it with ``generic_nack(sequence_number, command_status)`` (or the
    request's own response with that status) and carry on: the session has
    skipped exactly this PDU's ``command_length`` octets.
    """

    command_status: int
    command_id: int
    sequence_number: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionFatal:
    """Framing is lost (command_length < 16 or above the maximum): close the connection.

    Section 3.2: without a trustworthy command_length no later PDU can be
    found, so the only safe reaction is to drop the connection; the session
    is CLOSED from here on. Callers may send a generic_nack first as a
    courtesy (ESME_RINVCMDLEN).
    """

    reason: str


Event = Pdu | PduError | ConnectionFatal

_OPEN, _TX, _RX, _TRX = (
    SessionState.OPEN,
    SessionState.BOUND_TX,
    SessionState.BOUND_RX,
    SessionState.BOUND_TRX,
)
_TX_SIDE = frozenset({_TX, _TRX})  # states in which the ESME may submit
_RX_SIDE = frozenset({_RX, _TRX})  # states in which the SMSC may deliver
_BOUND = frozenset({_TX, _RX, _TRX})

C = CommandId
# In which session states each request may be issued (section 2.3, table 2-1),
# keyed by (command, issuer) because data_sm goes ESME→SMSC only when the ESME
# is a transmitter and SMSC→ESME only when it is a receiver.
ALLOWED_IN: Final[dict[tuple[int, Role], frozenset[SessionState]]] = {
    (C.BIND_TRANSMITTER, Role.ESME): frozenset({_OPEN}),
    (C.BIND_RECEIVER, Role.ESME): frozenset({_OPEN}),
    (C.BIND_TRANSCEIVER, Role.ESME): frozenset({_OPEN}),
    (C.OUTBIND, Role.SMSC): frozenset({_OPEN}),
    (C.UNBIND, Role.ESME): _BOUND,
    (C.UNBIND, Role.SMSC): _BOUND,
    # SMPP 3.4 lists enquire_link for bound states; 5.0 (section 2.4) also
    # allows it in OPEN, and answering a keep-alive early harms no one.
    (C.ENQUIRE_LINK, Role.ESME): _BOUND | {_OPEN},
    (C.ENQUIRE_LINK, Role.SMSC): _BOUND | {_OPEN},
    (C.SUBMIT_SM, Role.ESME): _TX_SIDE,
    (C.SUBMIT_MULTI, Role.ESME): _TX_SIDE,
    (C.QUERY_SM, Role.ESME): _TX_SIDE,
    (C.CANCEL_SM, Role.ESME): _TX_SIDE,
    (C.REPLACE_SM, Role.ESME): _TX_SIDE,
    (C.DATA_SM, Role.ESME): _TX_SIDE,
    (C.DELIVER_SM, Role.SMSC): _RX_SIDE,
    (C.DATA_SM, Role.SMSC): _RX_SIDE,
    (C.ALERT_NOTIFICATION, Role.SMSC): _RX_SIDE,
}

# A bind response with command_status 0 moves OPEN to this state — on the
# ESME when it receives the response, on the SMSC when it sends it.
BIND_RESULT: Final[dict[int, SessionState]] = {
    C.BIND_TRANSMITTER_RESP: _TX,
    C.BIND_RECEIVER_RESP: _RX,
    C.BIND_TRANSCEIVER_RESP: _TRX,
}

# Requests with no response of their own: nothing to wait for.
_UNANSWERED: Final = frozenset({C.OUTBIND, C.ALERT_NOTIFICATION, C.GENERIC_NACK})
_BINDS: Final = frozenset({C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER})

# section 3.2: sequence_number runs 0x00000001..0x7FFFFFFF.
MAX_SEQUENCE: Final = 0x7FFF_FFFF


class Session:
    """One SMPP connection's protocol state, for either end.

    ``role`` is our side. ``max_pdu_length`` bounds command_length: a peer
    announcing more is treated as lost framing, which also caps the buffer.
    """

    def __init__(self, role: Role, max_pdu_length: int = 65536) -> None:
        if max_pdu_length < HEADER_LENGTH:
            raise ValueError("max_pdu_length must be at least 16")
        self.role: Final = role
        self.peer_role: Final = Role.SMSC if role is Role.ESME else Role.ESME
        self.max_pdu_length = max_pdu_length
        self.state = SessionState.OPEN
        self._buf = bytearray()
        self._seq = 0
        # sequence_number -> command_id of requests we sent, in send order
        self._outstanding: dict[int, int] = {}
        # the bind request in flight: sent by us (ESME) or received (SMSC)
        self._bind_pending: tuple[int, int] | None = None  # (command_id, sequence_number)

    # -- sequence numbers and the window ---------------------------------

    def next_sequence(self) -> int:
        """The next sequence_number, 1..0x7FFFFFFF then wrapping to 1."""
        self._seq = self._seq % MAX_SEQUENCE + 1
        return self._seq

    @property
    def outstanding(self) -> int:
        """How many requests we sent that are still waiting for a response."""
        return len(self._outstanding)

    def window_full(self, limit: int) -> bool:
        return len(self._outstanding) >= limit

    def pending(self, sequence_number: int) -> int | None:
        """The command_id of our outstanding request ``sequence_number``, if any."""
        return self._outstanding.get(sequence_number)

    def forget(self, sequence_number: int) -> bool:
        """Stop tracking our request ``sequence_number`` (the caller gave up on it).

        Without this, requests never answered would stay outstanding for ever;
        a late response then surfaces like any other unmatched response.
        """
        return self._outstanding.pop(sequence_number, None) is not None

    # -- sending -----------------------------------------------------------

    def can_send(self, command_id: int) -> bool:
        if self.state is SessionState.CLOSED:
            return False
        if command_id & RESP_BIT:
            return True
        allowed = ALLOWED_IN.get((command_id, self.role))
        return allowed is not None and self.state in allowed

    def send(self, pdu: Pdu) -> bytes:
        """The bytes of ``pdu``, after checking the state allows it.

        A request with sequence_number 0 gets the next one (set on ``pdu``).
        Requests that expect a response are tracked as outstanding.
        Raises SmppError(ESME_RINVBNDSTS) when the state forbids the PDU.
        """
        command_id = pdu.command_id
        state = self.state
        if command_id & RESP_BIT:
            if state is SessionState.CLOSED:
                raise SmppError(S.ESME_RINVBNDSTS, "session is closed", command_id=command_id)
            data = encode(pdu)
            self._after_response(pdu, sent=True)
            return data
        allowed = ALLOWED_IN.get((command_id, self.role))
        if allowed is None or state not in allowed:
            raise SmppError(
                S.ESME_RINVBNDSTS,
                f"{self.role.name} may not send {CommandId(command_id).name} in {state.name}",
                command_id=command_id,
                sequence_number=pdu.sequence_number,
            )
        if command_id in _BINDS and self._bind_pending is not None:
            raise SmppError(S.ESME_RALYBND, "a bind is already in flight", command_id=command_id)
        if pdu.sequence_number == 0:
            pdu.sequence_number = self.next_sequence()
        data = encode(pdu)
        seq = pdu.sequence_number
        if command_id not in _UNANSWERED:
            self._outstanding[seq] = command_id
        if command_id in _BINDS:
            self._bind_pending = (command_id, seq)
        elif command_id == C.UNBIND:
            self.state = SessionState.UNBOUND
        return data

    def send_all(self, pdus: Iterable[Pdu]) -> bytes:
        """``send`` each PDU and join the bytes, for one write."""
        return b"".join([self.send(pdu) for pdu in pdus])

    def close(self) -> None:
        """The transport is gone (or the caller is dropping it)."""
        self.state = SessionState.CLOSED
        self._buf.clear()

    # -- receiving -----------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Events for the PDUs completed by ``data`` (any chunking; b"" means EOF)."""
        if self.state is SessionState.CLOSED:
            return []
        buf = self._buf
        if not data:
            partial = bool(buf)
            self.close()
            return [ConnectionFatal("connection closed inside a PDU")] if partial else []
        if buf:
            buf += data
            if len(buf) < HEADER_LENGTH:
                return []
            length = HEADER.unpack_from(buf)[0]
            if HEADER_LENGTH <= length <= self.max_pdu_length and len(buf) < length:
                return []  # still incomplete: no copy until a whole PDU is here
            src = bytes(buf)
            buf.clear()
        else:
            src = data if type(data) is bytes else bytes(data)
        events: list[Event] = []
        n = len(src)
        pos = 0
        max_len = self.max_pdu_length
        unpack_from = HEADER.unpack_from
        on_pdu = self._on_pdu
        while n - pos >= HEADER_LENGTH:
            length, command_id, status, seq = unpack_from(src, pos)
            if length < HEADER_LENGTH or length > max_len:
                self.close()
                events.append(ConnectionFatal(f"command_length {length} outside 16..{max_len}"))
                return events
            end = pos + length
            if end > n:
                break
            chunk = src if (pos == 0 and end == n) else src[pos:end]
            pos = end
            try:
                pdu = decode_body(chunk, command_id, status, seq)
            except SmppError as exc:
                if command_id & RESP_BIT:
                    self._outstanding.pop(seq, None)  # answered, if badly
                events.append(PduError(exc.command_status, command_id, seq, str(exc)))
                continue
            events.append(on_pdu(pdu))
        if pos < n:
            buf += src[pos:] if pos else src
        return events

    def _on_pdu(self, pdu: Pdu) -> Event:
        command_id = pdu.command_id
        if command_id & RESP_BIT:
            self._outstanding.pop(pdu.sequence_number, None)
            self._after_response(pdu, sent=False)
            return pdu
        allowed = ALLOWED_IN.get((command_id, self.peer_role))
        state = self.state
        if allowed is None or state not in allowed:
            status = S.ESME_RINVBNDSTS
            if command_id in _BINDS and state in _BOUND:
                status = S.ESME_RALYBND  # section 5.1.3: "ESME Already in Bound State"
            return PduError(
                status,
                command_id,
                pdu.sequence_number,
                f"{self.peer_role.name} may not send {CommandId(command_id).name} in {state.name}",
            )
        if command_id in _BINDS:
            if self._bind_pending is not None:
                return PduError(
                    S.ESME_RALYBND, command_id, pdu.sequence_number, "a bind is already in flight"
                )
            self._bind_pending = (command_id, pdu.sequence_number)
        elif command_id == C.UNBIND:
            self.state = SessionState.UNBOUND
        return pdu

    def _after_response(self, pdu: Pdu, *, sent: bool) -> None:
        """State changes driven by responses (bind results, unbind_resp)."""
        command_id = pdu.command_id
        pending = self._bind_pending
        if pending is not None and pdu.sequence_number == pending[1]:
            # We track the bind on the side that decides it: the ESME learns the
            # result by receiving the response, the SMSC by sending it.
            deciding = (self.role is Role.ESME) is not sent
            if deciding and command_id in (pending[0] | RESP_BIT, C.GENERIC_NACK):
                self._bind_pending = None
                result = BIND_RESULT.get(command_id)
                if result is not None and pdu.command_status == 0 and self.state is _OPEN:
                    self.state = result
        if command_id == C.UNBIND_RESP and self.state is not SessionState.CLOSED:
            self.state = SessionState.UNBOUND
