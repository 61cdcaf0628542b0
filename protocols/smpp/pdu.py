"""SMPP 3.4 PDUs as plain objects, and a strict codec for them.

One dataclass per operation (section 4), fields named as in the spec. The
codec is table-driven: each class carries ``_layout``, the list of its
mandatory parameters in wire order with their maxima, which both documents the
PDU and drives the generic encoder/decoder. submit_sm, deliver_sm and their
responses are the traffic of a gateway, so they also get hand-written fast
paths; the fast decoder falls back to the generic one on any doubt, so every
error is reported by one piece of code with one set of rules.

Decoding is strict about what breaks framing or meaning (lengths, C-octet
string maxima, TLV structure) and lenient where real SMSCs differ harmlessly;
each leniency is commented where it is made.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from .constants import RESP_BIT, TAG_TYPES, CommandId, TlvKind
from .constants import CommandStatus as S
from .errors import SmppError

__all__ = [
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CancelSm",
    "CancelSmResp",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "DistributionList",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "Outbind",
    "Pdu",
    "QuerySm",
    "QuerySmResp",
    "ReplaceSm",
    "ReplaceSmResp",
    "SmeAddress",
    "SubmitMulti",
    "SubmitMultiResp",
    "SubmitSm",
    "SubmitSmResp",
    "Unbind",
    "UnbindResp",
    "UnsuccessSme",
    "decode",
    "encode",
    "generic_nack",
    "pdu_class",
    "response_for",
]

HEADER = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence_number
_TL = struct.Struct(">HH")  # TLV tag, length (section 3.2.4.1)
_U32 = struct.Struct(">I")

HEADER_LENGTH = 16
# section 4.4.1: short_message is 0..254 octets; longer payloads go in message_payload.
MAX_SHORT_MESSAGE = 254
# section 4.5.1: "number_of_dests ... maximum of 254".
MAX_DESTS = 254


# ---------------------------------------------------------------------------
# Layout tables
# ---------------------------------------------------------------------------


class _Kind:
    """Mandatory-parameter kinds. Compared by identity on the generic path."""

    CSTR = "cstring"  # C-Octet String: value + NUL, ``max`` counts the NUL
    U8 = "u8"  # 1-octet Integer
    SM = "sm"  # sm_length (1 octet) followed by that many octets of short_message
    DESTS = "dests"  # submit_multi: number_of_dests + dest_address list (section 4.5.1.1)
    UNSUCCESS = "unsuccess"  # submit_multi_resp: no_unsuccess + unsuccess_sme list (4.5.2)


class F(NamedTuple):
    """One mandatory parameter: its name, kind, maximum size and error status.

    ``max`` is the spec's "Var. max" size in octets *including* the NUL, so a
    source_addr (max 21) holds at most 20 characters. ``status`` is what the
    peer is told when the value is over-long.
    """

    name: str
    kind: str
    max: int = 1
    status: int = S.ESME_RINVCMDLEN


def _c(name: str, max_: int, status: int) -> F:
    return F(name, _Kind.CSTR, max_, status)


def _u8(name: str) -> F:
    return F(name, _Kind.U8)


# Reusable groups; sizes are the "Var. max" column of each PDU's table in section 4.
_SRC21 = (
    _u8("source_addr_ton"),
    _u8("source_addr_npi"),
    _c("source_addr", 21, S.ESME_RINVSRCADR),
)
_DST21 = (
    _u8("dest_addr_ton"),
    _u8("dest_addr_npi"),
    _c("destination_addr", 21, S.ESME_RINVDSTADR),
)
_BIND = (  # section 4.1.1 (all three bind requests share it)
    _c("system_id", 16, S.ESME_RINVSYSID),
    _c("password", 9, S.ESME_RINVPASWD),
    _c("system_type", 13, S.ESME_RINVSYSTYP),
    _u8("interface_version"),
    _u8("addr_ton"),
    _u8("addr_npi"),
    _c("address_range", 41, S.ESME_RINVPARLEN),
)
_BIND_RESP = (_c("system_id", 16, S.ESME_RINVSYSID),)  # section 4.1.2
_SM_TAIL = (  # esm_class .. short_message, shared by submit_sm/deliver_sm/submit_multi
    _u8("esm_class"),
    _u8("protocol_id"),
    _u8("priority_flag"),
    # "1 or 17" octets (section 7.1): empty or a 16-character time; only the
    # maximum is enforced here, the format is the application's to judge.
    _c("schedule_delivery_time", 17, S.ESME_RINVSCHED),
    _c("validity_period", 17, S.ESME_RINVEXPIRY),
    _u8("registered_delivery"),
    _u8("replace_if_present_flag"),
    _u8("data_coding"),
    _u8("sm_default_msg_id"),
    F("short_message", _Kind.SM, MAX_SHORT_MESSAGE, S.ESME_RINVMSGLEN),
)
_SUBMIT_SM = (_c("service_type", 6, S.ESME_RINVSERTYP), *_SRC21, *_DST21, *_SM_TAIL)  # 4.4.1
_MESSAGE_ID = _c("message_id", 65, S.ESME_RINVMSGID)


# ---------------------------------------------------------------------------
# PDU classes
# ---------------------------------------------------------------------------


class Pdu:
    """Base of every PDU: header fields, optional parameters, typed TLV access.

    ``tlvs`` maps tag → raw value octets, in wire order; unknown tags are kept
    byte for byte. ``get``/``set`` type values using ``TAG_TYPES``.
    """

    if not TYPE_CHECKING:  # mypy would reject assigning the subclasses' fields
        __slots__ = ()
    command_id: ClassVar[CommandId]
    _layout: ClassVar[tuple[F, ...]]
    if TYPE_CHECKING:
        sequence_number: int
        command_status: int
        tlvs: dict[int, bytes]

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def get(self, tag: int) -> int | str | bytes | None:
        """The typed value of optional parameter ``tag``, or None if absent."""
        raw = self.tlvs.get(tag)
        if raw is None:
            return None
        return tlv_value(tag, raw)

    def get_int(self, tag: int) -> int | None:
        value = self.get(tag)
        if value is None or isinstance(value, int):
            return value
        raise TypeError(f"TLV 0x{tag:04x} is not an integer")

    def get_str(self, tag: int) -> str | None:
        value = self.get(tag)
        if value is None or isinstance(value, str):
            return value
        raise TypeError(f"TLV 0x{tag:04x} is not a C-octet string")

    def set(self, tag: int, value: int | str | bytes | bool) -> None:
        """Set optional parameter ``tag`` from a typed value (see ``tlv_bytes``)."""
        self.tlvs[tag] = tlv_bytes(tag, value)

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESP_BIT)


def tlv_value(tag: int, raw: bytes) -> int | str | bytes:
    """Decode a raw TLV value per the tag table; unknown tags stay bytes."""
    spec = TAG_TYPES.get(tag)
    if spec is None:
        return raw
    kind = spec.kind
    if kind is TlvKind.INT:
        return int.from_bytes(raw, "big")
    if kind is TlvKind.CSTRING:
        end = raw.find(b"\0")
        return (raw if end < 0 else raw[:end]).decode("latin-1")
    return raw


def tlv_bytes(tag: int, value: int | str | bytes | bool) -> bytes:
    """Encode a typed TLV value per the tag table, checking its size.

    INT tags take an int, CSTRING tags a str (the NUL is added), OCTETS and
    unknown tags bytes, and alert_on_message_delivery (no value) True or b"".
    """
    spec = TAG_TYPES.get(tag)
    if not 0 <= tag <= 0xFFFF:
        raise SmppError(S.ESME_RINVOPTPARSTREAM, f"TLV tag {tag} out of range")
    if spec is None:
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"unknown TLV 0x{tag:04x} takes bytes")
        raw = bytes(value)
    elif spec.kind is TlvKind.INT:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"TLV 0x{tag:04x} takes an int")
        try:
            raw = value.to_bytes(spec.size, "big")
        except OverflowError:
            raise SmppError(
                S.ESME_RINVOPTPARAMVAL, f"TLV 0x{tag:04x} value {value} exceeds {spec.size} octets"
            ) from None
    elif spec.kind is TlvKind.CSTRING:
        if not isinstance(value, str):
            raise TypeError(f"TLV 0x{tag:04x} takes a str")
        raw = _latin1(value, S.ESME_RINVOPTPARAMVAL, f"TLV 0x{tag:04x}") + b"\0"
    elif spec.kind is TlvKind.EMPTY:
        if value not in (True, b""):
            raise TypeError(f"TLV 0x{tag:04x} has no value; pass True")
        raw = b""
    else:
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"TLV 0x{tag:04x} takes bytes")
        raw = bytes(value)
    _check_tlv(tag, len(raw))
    return raw


def _check_tlv(tag: int, length: int) -> None:
    if length > 0xFFFF:
        raise SmppError(S.ESME_RINVPARLEN, f"TLV 0x{tag:04x} longer than 65535 octets")
    spec = TAG_TYPES.get(tag)
    if spec is not None and not spec.min_len <= length <= spec.max_len:
        raise SmppError(
            S.ESME_RINVPARLEN,
            f"TLV 0x{tag:04x} length {length} outside {spec.min_len}..{spec.max_len}",
        )


def _latin1(value: str, status: int, what: str) -> bytes:
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise SmppError(status, f"{what} is not Latin-1 text") from None
    if 0 in raw:
        raise SmppError(status, f"{what} contains NUL")
    return raw


# Sub-structures of submit_multi / submit_multi_resp (section 4.5.1.1, 4.5.2.1).


@dataclass(slots=True, frozen=True)
class SmeAddress:
    """dest_flag 1: an SME address."""

    destination_addr: str
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0


@dataclass(slots=True, frozen=True)
class DistributionList:
    """dest_flag 2: a distribution list held by the SMSC."""

    dl_name: str


@dataclass(slots=True, frozen=True)
class UnsuccessSme:
    destination_addr: str
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    error_status_code: int = 0


# --- Session management (section 4.1, 4.2, 4.3, 4.11) ---


@dataclass(slots=True)
class BindTransmitter(Pdu):
    """section 4.1.1"""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER
    _layout: ClassVar[tuple[F, ...]] = _BIND
    sequence_number: int = 0
    command_status: int = 0
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> BindTransmitterResp:
        return BindTransmitterResp(self.sequence_number, **fields)


@dataclass(slots=True)
class BindTransmitterResp(Pdu):
    """section 4.1.2; sc_interface_version goes in ``tlvs``."""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER_RESP
    _layout: ClassVar[tuple[F, ...]] = _BIND_RESP
    sequence_number: int = 0
    command_status: int = 0
    system_id: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class BindReceiver(Pdu):
    """section 4.1.3"""

    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER
    _layout: ClassVar[tuple[F, ...]] = _BIND
    sequence_number: int = 0
    command_status: int = 0
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> BindReceiverResp:
        return BindReceiverResp(self.sequence_number, **fields)


@dataclass(slots=True)
class BindReceiverResp(Pdu):
    """section 4.1.4"""

    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER_RESP
    _layout: ClassVar[tuple[F, ...]] = _BIND_RESP
    sequence_number: int = 0
    command_status: int = 0
    system_id: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class BindTransceiver(Pdu):
    """section 4.1.5"""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER
    _layout: ClassVar[tuple[F, ...]] = _BIND
    sequence_number: int = 0
    command_status: int = 0
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> BindTransceiverResp:
        return BindTransceiverResp(self.sequence_number, **fields)


@dataclass(slots=True)
class BindTransceiverResp(Pdu):
    """section 4.1.6"""

    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER_RESP
    _layout: ClassVar[tuple[F, ...]] = _BIND_RESP
    sequence_number: int = 0
    command_status: int = 0
    system_id: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class Outbind(Pdu):
    """section 4.1.7: the SMSC asks an ESME to bind_receiver; it has no response."""

    command_id: ClassVar[CommandId] = CommandId.OUTBIND
    _layout: ClassVar[tuple[F, ...]] = (
        _c("system_id", 16, S.ESME_RINVSYSID),
        _c("password", 9, S.ESME_RINVPASWD),
    )
    sequence_number: int = 0
    command_status: int = 0
    system_id: str = ""
    password: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class Unbind(Pdu):
    """section 4.2.1"""

    command_id: ClassVar[CommandId] = CommandId.UNBIND
    _layout: ClassVar[tuple[F, ...]] = ()
    sequence_number: int = 0
    command_status: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> UnbindResp:
        return UnbindResp(self.sequence_number, **fields)


@dataclass(slots=True)
class UnbindResp(Pdu):
    """section 4.2.2"""

    command_id: ClassVar[CommandId] = CommandId.UNBIND_RESP
    _layout: ClassVar[tuple[F, ...]] = ()
    sequence_number: int = 0
    command_status: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class GenericNack(Pdu):
    """section 4.3.1: the answer to a PDU whose header or body was unusable."""

    command_id: ClassVar[CommandId] = CommandId.GENERIC_NACK
    _layout: ClassVar[tuple[F, ...]] = ()
    sequence_number: int = 0
    command_status: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class EnquireLink(Pdu):
    """section 4.11.1"""

    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK
    _layout: ClassVar[tuple[F, ...]] = ()
    sequence_number: int = 0
    command_status: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> EnquireLinkResp:
        return EnquireLinkResp(self.sequence_number, **fields)


@dataclass(slots=True)
class EnquireLinkResp(Pdu):
    """section 4.11.2"""

    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK_RESP
    _layout: ClassVar[tuple[F, ...]] = ()
    sequence_number: int = 0
    command_status: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)


# --- Message submission and delivery (section 4.4 - 4.7) ---


@dataclass(slots=True)
class SubmitSm(Pdu):
    """section 4.4.1"""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM
    _layout: ClassVar[tuple[F, ...]] = _SUBMIT_SM
    sequence_number: int = 0
    command_status: int = 0
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> SubmitSmResp:
        return SubmitSmResp(self.sequence_number, **fields)


@dataclass(slots=True)
class SubmitSmResp(Pdu):
    """section 4.4.2. TLVs are accepted (SMPP 5.0 peers send them here)."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM_RESP
    _layout: ClassVar[tuple[F, ...]] = (_MESSAGE_ID,)
    sequence_number: int = 0
    command_status: int = 0
    message_id: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class SubmitMulti(Pdu):
    """section 4.5.1; ``dest_address`` holds SmeAddress / DistributionList entries."""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI
    _layout: ClassVar[tuple[F, ...]] = (
        _c("service_type", 6, S.ESME_RINVSERTYP),
        *_SRC21,
        F("dest_address", _Kind.DESTS, MAX_DESTS, S.ESME_RINVNUMDESTS),
        *_SM_TAIL,
    )
    sequence_number: int = 0
    command_status: int = 0
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_address: list[SmeAddress | DistributionList] = field(default_factory=list)
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> SubmitMultiResp:
        return SubmitMultiResp(self.sequence_number, **fields)


@dataclass(slots=True)
class SubmitMultiResp(Pdu):
    """section 4.5.2"""

    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI_RESP
    _layout: ClassVar[tuple[F, ...]] = (
        _MESSAGE_ID,
        F("unsuccess_sme", _Kind.UNSUCCESS, MAX_DESTS, S.ESME_RINVNUMDESTS),
    )
    sequence_number: int = 0
    command_status: int = 0
    message_id: str = ""
    unsuccess_sme: list[UnsuccessSme] = field(default_factory=list)
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class DeliverSm(Pdu):
    """section 4.6.1: same layout as submit_sm; receipts carry esm_class 0x04."""

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM
    _layout: ClassVar[tuple[F, ...]] = _SUBMIT_SM
    sequence_number: int = 0
    command_status: int = 0
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> DeliverSmResp:
        return DeliverSmResp(self.sequence_number, **fields)


@dataclass(slots=True)
class DeliverSmResp(Pdu):
    """section 4.6.2. message_id is "unused, set to NULL" (size 1), but some ESMEs
    fill it, so up to the general message_id maximum (65) is accepted."""

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM_RESP
    _layout: ClassVar[tuple[F, ...]] = (_MESSAGE_ID,)
    sequence_number: int = 0
    command_status: int = 0
    message_id: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class DataSm(Pdu):
    """section 4.7.1: addresses are up to 64 characters here (max 65)."""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM
    _layout: ClassVar[tuple[F, ...]] = (
        _c("service_type", 6, S.ESME_RINVSERTYP),
        _u8("source_addr_ton"),
        _u8("source_addr_npi"),
        _c("source_addr", 65, S.ESME_RINVSRCADR),
        _u8("dest_addr_ton"),
        _u8("dest_addr_npi"),
        _c("destination_addr", 65, S.ESME_RINVDSTADR),
        _u8("esm_class"),
        _u8("registered_delivery"),
        _u8("data_coding"),
    )
    sequence_number: int = 0
    command_status: int = 0
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> DataSmResp:
        return DataSmResp(self.sequence_number, **fields)


@dataclass(slots=True)
class DataSmResp(Pdu):
    """section 4.7.2"""

    command_id: ClassVar[CommandId] = CommandId.DATA_SM_RESP
    _layout: ClassVar[tuple[F, ...]] = (_MESSAGE_ID,)
    sequence_number: int = 0
    command_status: int = 0
    message_id: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)


# --- Message management (section 4.8 - 4.10) and alerts (4.12) ---


@dataclass(slots=True)
class QuerySm(Pdu):
    """section 4.8.1"""

    command_id: ClassVar[CommandId] = CommandId.QUERY_SM
    _layout: ClassVar[tuple[F, ...]] = (_MESSAGE_ID, *_SRC21)
    sequence_number: int = 0
    command_status: int = 0
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> QuerySmResp:
        return QuerySmResp(self.sequence_number, **fields)


@dataclass(slots=True)
class QuerySmResp(Pdu):
    """section 4.8.2"""

    command_id: ClassVar[CommandId] = CommandId.QUERY_SM_RESP
    _layout: ClassVar[tuple[F, ...]] = (
        _MESSAGE_ID,
        _c("final_date", 17, S.ESME_RINVPARLEN),
        _u8("message_state"),
        _u8("error_code"),
    )
    sequence_number: int = 0
    command_status: int = 0
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class CancelSm(Pdu):
    """section 4.9.1"""

    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM
    _layout: ClassVar[tuple[F, ...]] = (
        _c("service_type", 6, S.ESME_RINVSERTYP),
        _MESSAGE_ID,
        *_SRC21,
        *_DST21,
    )
    sequence_number: int = 0
    command_status: int = 0
    service_type: str = ""
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> CancelSmResp:
        return CancelSmResp(self.sequence_number, **fields)


@dataclass(slots=True)
class CancelSmResp(Pdu):
    """section 4.9.2"""

    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM_RESP
    _layout: ClassVar[tuple[F, ...]] = ()
    sequence_number: int = 0
    command_status: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class ReplaceSm(Pdu):
    """section 4.10.1"""

    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM
    _layout: ClassVar[tuple[F, ...]] = (
        _MESSAGE_ID,
        *_SRC21,
        _c("schedule_delivery_time", 17, S.ESME_RINVSCHED),
        _c("validity_period", 17, S.ESME_RINVEXPIRY),
        _u8("registered_delivery"),
        _u8("sm_default_msg_id"),
        F("short_message", _Kind.SM, MAX_SHORT_MESSAGE, S.ESME_RINVMSGLEN),
    )
    sequence_number: int = 0
    command_status: int = 0
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def make_resp(self, **fields: Any) -> ReplaceSmResp:
        return ReplaceSmResp(self.sequence_number, **fields)


@dataclass(slots=True)
class ReplaceSmResp(Pdu):
    """section 4.10.2"""

    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM_RESP
    _layout: ClassVar[tuple[F, ...]] = ()
    sequence_number: int = 0
    command_status: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class AlertNotification(Pdu):
    """section 4.12.1; ms_availability_status goes in ``tlvs``. No response."""

    command_id: ClassVar[CommandId] = CommandId.ALERT_NOTIFICATION
    _layout: ClassVar[tuple[F, ...]] = (
        _u8("source_addr_ton"),
        _u8("source_addr_npi"),
        _c("source_addr", 65, S.ESME_RINVSRCADR),
        _u8("esme_addr_ton"),
        _u8("esme_addr_npi"),
        _c("esme_addr", 65, S.ESME_RINVDSTADR),
    )
    sequence_number: int = 0
    command_status: int = 0
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""
    tlvs: dict[int, bytes] = field(default_factory=dict)


PDU_CLASSES: tuple[type[Pdu], ...] = (
    BindTransmitter, BindTransmitterResp, BindReceiver, BindReceiverResp,
    BindTransceiver, BindTransceiverResp, Outbind, Unbind, UnbindResp, GenericNack,
    SubmitSm, SubmitSmResp, SubmitMulti, SubmitMultiResp, DeliverSm, DeliverSmResp,
    DataSm, DataSmResp, QuerySm, QuerySmResp, CancelSm, CancelSmResp, ReplaceSm,
    ReplaceSmResp, EnquireLink, EnquireLinkResp, AlertNotification,
)  # fmt: skip
_BY_ID: dict[int, type[Pdu]] = {cls.command_id: cls for cls in PDU_CLASSES}


def pdu_class(command_id: int) -> type[Pdu] | None:
    """The PDU class for a command_id, or None if SMPP 3.4 defines none."""
    return _BY_ID.get(command_id)


def response_for(pdu: Pdu, command_status: int = 0, **fields: Any) -> Pdu:
    """The response to request ``pdu``: same sequence_number, given status and fields.

    Requests without a response of their own (outbind, alert_notification) and
    responses are answered with generic_nack, as section 4.3 prescribes for
    anything that cannot be answered in kind.
    """
    cls = _BY_ID.get(pdu.command_id | RESP_BIT)
    if pdu.is_response or cls is None:
        return GenericNack(pdu.sequence_number, command_status)
    return cls(pdu.sequence_number, command_status, **fields)


def generic_nack(sequence_number: int, command_status: int) -> GenericNack:
    """section 4.3.1; sequence_number is the offending PDU's, or 0 if unknown."""
    return GenericNack(sequence_number, command_status)


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------


def encode(pdu: Pdu) -> bytes:
    """The full PDU, header included. Raises SmppError for a value that cannot be sent."""
    fast = _FAST_ENCODERS.get(type(pdu))
    if fast is not None:
        try:
            return fast(pdu)
        except Exception:  # the generic path below says precisely what is wrong
            pass
    return _encode_generic(pdu)


def _encode_tlvs(tlvs: dict[int, bytes]) -> bytes:
    parts = []
    for tag, value in tlvs.items():
        if not isinstance(value, bytes):
            raise SmppError(S.ESME_RINVOPTPARAMVAL, f"TLV 0x{tag:04x} value must be bytes")
        if not 0 <= tag <= 0xFFFF:
            raise SmppError(S.ESME_RINVOPTPARSTREAM, f"TLV tag {tag} out of range")
        _check_tlv(tag, len(value))
        parts.append(_TL.pack(tag, len(value)))
        parts.append(value)
    return b"".join(parts)


def _u8_bytes(value: Any, name: str) -> bytes:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise SmppError(S.ESME_RINVPARLEN, f"{name} must be an int 0..255, not {value!r}")
    return bytes((value,))


def _cstr_bytes(value: Any, f: F) -> bytes:
    if not isinstance(value, str):
        raise SmppError(f.status, f"{f.name} must be str, not {type(value).__name__}")
    raw = _latin1(value, f.status, f.name)
    if len(raw) >= f.max:
        raise SmppError(f.status, f"{f.name} longer than {f.max - 1} characters")
    return raw + b"\0"


def _encode_generic(pdu: Pdu) -> bytes:
    cls = type(pdu)
    if _BY_ID.get(cls.command_id) is not cls:
        raise SmppError(S.ESME_RINVCMDID, f"{cls.__name__} is not an SMPP 3.4 PDU")
    status, seq = pdu.command_status, pdu.sequence_number
    if not isinstance(status, int) or not 0 <= status <= 0xFFFF_FFFF:
        raise SmppError(S.ESME_RSYSERR, f"command_status {status!r} out of range")
    if not isinstance(seq, int) or not 0 <= seq <= 0xFFFF_FFFF:
        raise SmppError(S.ESME_RSYSERR, f"sequence_number {seq!r} out of range")
    if _empty_error_body(pdu):
        return HEADER.pack(HEADER_LENGTH, cls.command_id, status, seq)
    parts: list[bytes] = []
    for f in cls._layout:
        value = getattr(pdu, f.name)
        kind = f.kind
        if kind is _Kind.CSTR:
            parts.append(_cstr_bytes(value, f))
        elif kind is _Kind.U8:
            parts.append(_u8_bytes(value, f.name))
        elif kind is _Kind.SM:
            if not isinstance(value, bytes | bytearray):
                raise SmppError(f.status, "short_message must be bytes")
            if len(value) > MAX_SHORT_MESSAGE:
                raise SmppError(
                    f.status, f"short_message of {len(value)} octets exceeds {MAX_SHORT_MESSAGE}"
                )
            parts.append(bytes((len(value),)))
            parts.append(bytes(value))
        elif kind is _Kind.DESTS:
            parts.append(_encode_dests(value, f))
        else:
            parts.append(_encode_unsuccess(value, f))
    parts.append(_encode_tlvs(pdu.tlvs))
    body = b"".join(parts)
    return HEADER.pack(HEADER_LENGTH + len(body), cls.command_id, status, seq) + body


_ADDR_F = _c("destination_addr", 21, S.ESME_RINVDSTADR)
_DL_F = _c("dl_name", 21, S.ESME_RINVDLNAME)


def _encode_dests(value: Any, f: F) -> bytes:
    if len(value) > f.max:
        raise SmppError(f.status, f"{len(value)} destinations exceed {f.max}")
    parts = [bytes((len(value),))]
    for d in value:
        if isinstance(d, SmeAddress):
            parts.append(b"\x01")  # dest_flag: SME Address
            parts.append(_u8_bytes(d.dest_addr_ton, "dest_addr_ton"))
            parts.append(_u8_bytes(d.dest_addr_npi, "dest_addr_npi"))
            parts.append(_cstr_bytes(d.destination_addr, _ADDR_F))
        elif isinstance(d, DistributionList):
            parts.append(b"\x02")  # dest_flag: Distribution List Name
            parts.append(_cstr_bytes(d.dl_name, _DL_F))
        else:
            raise SmppError(S.ESME_RINVDESTFLAG, f"not a dest_address: {d!r}")
    return b"".join(parts)


def _encode_unsuccess(value: Any, f: F) -> bytes:
    if len(value) > f.max:
        raise SmppError(f.status, f"{len(value)} unsuccess_sme entries exceed {f.max}")
    parts = [bytes((len(value),))]
    for u in value:
        if not isinstance(u, UnsuccessSme):
            raise SmppError(S.ESME_RSYSERR, f"not an UnsuccessSme: {u!r}")
        parts.append(_u8_bytes(u.dest_addr_ton, "dest_addr_ton"))
        parts.append(_u8_bytes(u.dest_addr_npi, "dest_addr_npi"))
        parts.append(_cstr_bytes(u.destination_addr, _ADDR_F))
        code = u.error_status_code
        if not isinstance(code, int) or not 0 <= code <= 0xFFFF_FFFF:
            raise SmppError(S.ESME_RSYSERR, f"error_status_code {code!r} out of range")
        parts.append(_U32.pack(code))
    return b"".join(parts)


def _empty_error_body(pdu: Pdu) -> bool:
    """An error response whose body says nothing is sent header-only.

    Section 4.4.2 (and the other responses): "The submit_sm_resp PDU Body is
    not returned if the command_status field contains a non-zero value."
    """
    if not pdu.command_status or not pdu.is_response or pdu.tlvs:
        return False
    return all(not getattr(pdu, f.name) for f in type(pdu)._layout)


# Fast encoders. One %-format call builds the whole PDU; anything unusual
# (bad types, out-of-range ints, over-long or non-Latin-1 strings, NULs)
# makes them raise, and encode() then reruns the generic path, which reports.

_SM_FMT = (
    b"%b"  # header
    b"%b\0%c%c%b\0%c%c%b\0"  # service_type, source, destination
    b"%c%c%c%b\0%b\0"  # esm_class, protocol_id, priority_flag, schedule, validity
    b"%c%c%c%c%c%b"  # registered_delivery .. sm_default_msg_id, sm_length, short_message
    b"%b"  # TLVs
)


class _Refuse(Exception):
    """Raised by a fast path to hand over to the generic path."""


def _encode_sm(p: Any) -> bytes:
    st = p.service_type.encode("latin-1")
    sa = p.source_addr.encode("latin-1")
    da = p.destination_addr.encode("latin-1")
    sd = p.schedule_delivery_time.encode("latin-1")
    vp = p.validity_period.encode("latin-1")
    sm = p.short_message
    if (
        len(st) > 5 or len(sa) > 20 or len(da) > 20 or len(sd) > 16 or len(vp) > 16
        or len(sm) > MAX_SHORT_MESSAGE or type(sm) is not bytes
        or 0 in st or 0 in sa or 0 in da or 0 in sd or 0 in vp  # `0 in` is 10x `b"\0" in`
    ):  # fmt: skip
        raise _Refuse
    tlvs = _encode_tlvs(p.tlvs) if p.tlvs else b""
    n = 33 + len(st) + len(sa) + len(da) + len(sd) + len(vp) + len(sm) + len(tlvs)
    return _SM_FMT % (
        _HEADER_PACK(n, p.command_id, p.command_status, p.sequence_number),
        st, p.source_addr_ton, p.source_addr_npi, sa,
        p.dest_addr_ton, p.dest_addr_npi, da,
        p.esm_class, p.protocol_id, p.priority_flag, sd, vp,
        p.registered_delivery, p.replace_if_present_flag, p.data_coding,
        p.sm_default_msg_id, len(sm), sm, tlvs,
    )  # fmt: skip


def _encode_msgid_resp(p: Any) -> bytes:
    status = p.command_status
    mid: bytes = p.message_id.encode("latin-1")
    if len(mid) > 64 or 0 in mid:
        raise _Refuse
    if status and not mid and not p.tlvs:
        return _HEADER_PACK(16, p.command_id, status, p.sequence_number)
    if p.tlvs:
        tlvs = _encode_tlvs(p.tlvs)
        return b"%b%b\0%b" % (
            _HEADER_PACK(17 + len(mid) + len(tlvs), p.command_id, status, p.sequence_number),
            mid,
            tlvs,
        )
    return _HEADER_PACK(17 + len(mid), p.command_id, status, p.sequence_number) + mid + b"\0"


_HEADER_PACK = HEADER.pack
_FAST_ENCODERS: dict[type[Pdu], Callable[[Any], bytes]] = {
    SubmitSm: _encode_sm,
    DeliverSm: _encode_sm,
    SubmitSmResp: _encode_msgid_resp,
    DeliverSmResp: _encode_msgid_resp,
}


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


def decode(data: bytes | bytearray | memoryview) -> Pdu:
    """Exactly one PDU, header included. Raises SmppError and nothing else."""
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n < HEADER_LENGTH:
        raise SmppError(S.ESME_RINVCMDLEN, f"{n} octets is shorter than a PDU header")
    length, command_id, status, seq = HEADER.unpack_from(data)
    if length != n:
        raise SmppError(
            S.ESME_RINVCMDLEN,
            f"command_length {length} but {n} octets given",
            command_id=command_id,
            sequence_number=seq,
        )
    return decode_body(data, command_id, status, seq)


def decode_body(data: bytes, command_id: int, status: int, seq: int) -> Pdu:
    """Decode a PDU whose header (already unpacked) says command_length == len(data)."""
    fast = _FAST_DECODERS.get(command_id)
    try:
        if fast is not None:
            try:
                return fast(data, status, seq)
            except (_Refuse, IndexError, ValueError):
                pass  # the generic path finds and names the problem
        cls = _BY_ID.get(command_id)
        if cls is None:
            raise SmppError(S.ESME_RINVCMDID, f"unknown command_id 0x{command_id:08x}")
        return _decode_generic(cls, data, status, seq)
    except SmppError as exc:
        exc.command_id = command_id
        exc.sequence_number = seq
        raise


def _truncated(name: str) -> SmppError:
    return SmppError(S.ESME_RINVCMDLEN, f"PDU body ends inside {name}")


def _cstr_at(data: bytes, p: int, n: int, f: F) -> tuple[str, int]:
    end = data.find(b"\0", p, min(n, p + f.max))
    if end < 0:
        if p + f.max <= n:
            raise SmppError(f.status, f"{f.name} longer than {f.max - 1} characters")
        raise _truncated(f.name)
    return data[p:end].decode("latin-1"), end + 1


def _decode_generic(cls: type[Pdu], data: bytes, status: int, seq: int) -> Pdu:
    n = len(data)
    if n == HEADER_LENGTH and status and cls.command_id & RESP_BIT:
        return cls(seq, status)  # error response without body (section 4.4.2 and siblings)
    values: list[Any] = [seq, status]
    p = HEADER_LENGTH
    for f in cls._layout:
        kind = f.kind
        if kind is _Kind.CSTR:
            value, p = _cstr_at(data, p, n, f)
            values.append(value)
        elif kind is _Kind.U8:
            if p >= n:
                raise _truncated(f.name)
            values.append(data[p])
            p += 1
        elif kind is _Kind.SM:
            if p >= n:
                raise _truncated("sm_length")
            sm_length = data[p]
            if sm_length > f.max:
                raise SmppError(f.status, f"sm_length {sm_length} exceeds {f.max}")
            p += 1
            if p + sm_length > n:
                raise _truncated(f.name)
            values.append(data[p : p + sm_length])
            p += sm_length
        elif kind is _Kind.DESTS:
            dests, p = _decode_dests(data, p, n, f)
            values.append(dests)
        else:
            unsuccess, p = _decode_unsuccess(data, p, n, f)
            values.append(unsuccess)
    values.append(_decode_tlvs(data, p, n) if p < n else {})
    return cls(*values)


def _decode_dests(data: bytes, p: int, n: int, f: F) -> tuple[list[Any], int]:
    if p >= n:
        raise _truncated("number_of_dests")
    count = data[p]
    p += 1
    if count > f.max:
        raise SmppError(f.status, f"number_of_dests {count} exceeds {f.max}")
    dests: list[Any] = []
    for _ in range(count):
        if p >= n:
            raise _truncated("dest_flag")
        flag = data[p]
        p += 1
        if flag == 1:
            if p + 2 > n:
                raise _truncated("dest_address")
            ton, npi = data[p], data[p + 1]
            addr, p = _cstr_at(data, p + 2, n, _ADDR_F)
            dests.append(SmeAddress(addr, ton, npi))
        elif flag == 2:
            name, p = _cstr_at(data, p, n, _DL_F)
            dests.append(DistributionList(name))
        else:
            raise SmppError(S.ESME_RINVDESTFLAG, f"dest_flag {flag}")
    return dests, p


def _decode_unsuccess(data: bytes, p: int, n: int, f: F) -> tuple[list[Any], int]:
    if p >= n:
        raise _truncated("no_unsuccess")
    count = data[p]
    p += 1
    if count > f.max:
        raise SmppError(f.status, f"no_unsuccess {count} exceeds {f.max}")
    out: list[Any] = []
    for _ in range(count):
        if p + 2 > n:
            raise _truncated("unsuccess_sme")
        ton, npi = data[p], data[p + 1]
        addr, p = _cstr_at(data, p + 2, n, _ADDR_F)
        if p + 4 > n:
            raise _truncated("error_status_code")
        (code,) = _U32.unpack_from(data, p)
        p += 4
        out.append(UnsuccessSme(addr, ton, npi, code))
    return out, p


def _decode_tlvs(data: bytes, p: int, n: int) -> dict[int, bytes]:
    """Optional parameters from ``p`` to ``n`` (section 3.2.4.1, 5.3)."""
    tlvs: dict[int, bytes] = {}
    types = TAG_TYPES
    while p < n:
        if p + 4 > n:
            raise SmppError(S.ESME_RINVOPTPARSTREAM, f"{n - p} stray octets after the last TLV")
        tag, length = _TL.unpack_from(data, p)
        p += 4
        if p + length > n:
            raise SmppError(
                S.ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04x} length {length} runs past the PDU"
            )
        spec = types.get(tag)
        if spec is not None and not spec.min_len <= length <= spec.max_len:
            raise SmppError(
                S.ESME_RINVPARLEN,
                f"TLV 0x{tag:04x} length {length} outside {spec.min_len}..{spec.max_len}",
            )
        if tag in tlvs:
            # A dict cannot keep both, and SMPP 3.4 never repeats a TLV.
            raise SmppError(S.ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04x} repeated")
        tlvs[tag] = data[p : p + length]
        p += length
    return tlvs


# Fast decoders: straight-line code for the four PDUs a gateway lives on. They
# raise _Refuse/IndexError/ValueError on anything irregular and decode_body()
# then runs the generic decoder, which raises the precise SmppError.


def _decode_sm(cls: Callable[..., Pdu]) -> Callable[[bytes, int, int], Pdu]:
    def decode_sm(data: bytes, status: int, seq: int) -> Pdu:
        find = data.find
        n = len(data)
        # service_type, schedule_delivery_time and validity_period are nearly
        # always empty: test the first octet before paying for find + decode.
        if data[16]:
            e = find(b"\0", 17, 22)
            if e < 0:
                raise _Refuse
            service_type = data[16:e].decode("latin-1")
        else:
            e, service_type = 16, ""
        p = e + 3
        e = find(b"\0", p, p + 21)
        if e < 0:
            raise _Refuse
        src_ton, src_npi = data[p - 2], data[p - 1]
        source_addr = data[p:e].decode("latin-1")
        p = e + 3
        e = find(b"\0", p, p + 21)
        if e < 0:
            raise _Refuse
        dst_ton, dst_npi = data[p - 2], data[p - 1]
        destination_addr = data[p:e].decode("latin-1")
        p = e + 4
        esm_class, protocol_id, priority_flag = data[p - 3], data[p - 2], data[p - 1]
        if data[p]:
            e = find(b"\0", p + 1, p + 17)
            if e < 0:
                raise _Refuse
            schedule = data[p:e].decode("latin-1")
        else:
            e, schedule = p, ""
        p = e + 1
        if data[p]:
            e = find(b"\0", p + 1, p + 17)
            if e < 0:
                raise _Refuse
            validity = data[p:e].decode("latin-1")
        else:
            e, validity = p, ""
        p = e + 6
        sm_length = data[p - 1]
        if sm_length > MAX_SHORT_MESSAGE or p + sm_length > n:
            raise _Refuse
        end = p + sm_length
        return cls(
            seq, status, service_type, src_ton, src_npi, source_addr,
            dst_ton, dst_npi, destination_addr, esm_class, protocol_id, priority_flag,
            schedule, validity, data[e + 1], data[e + 2], data[e + 3], data[e + 4],
            data[p:end], _decode_tlvs(data, end, n) if end < n else {},
        )  # fmt: skip

    return decode_sm


def _decode_msgid_resp(cls: Callable[..., Pdu]) -> Callable[[bytes, int, int], Pdu]:
    def decode_msgid_resp(data: bytes, status: int, seq: int) -> Pdu:
        n = len(data)
        if n == 16:
            if status:
                return cls(seq, status, "", {})
            raise _Refuse
        e = data.find(b"\0", 16, 81)
        if e < 0:
            raise _Refuse
        return cls(
            seq, status, data[16:e].decode("latin-1"),
            _decode_tlvs(data, e + 1, n) if e + 1 < n else {},
        )  # fmt: skip

    return decode_msgid_resp


_FAST_DECODERS: dict[int, Callable[[bytes, int, int], Pdu]] = {
    CommandId.SUBMIT_SM: _decode_sm(SubmitSm),
    CommandId.DELIVER_SM: _decode_sm(DeliverSm),
    CommandId.SUBMIT_SM_RESP: _decode_msgid_resp(SubmitSmResp),
    CommandId.DELIVER_SM_RESP: _decode_msgid_resp(DeliverSmResp),
}
