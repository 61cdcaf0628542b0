"""What connectors report back, in no protocol's terms: delivery receipts and
MO (mobile-originated) messages.

A connector translates its wire format (SMPP deliver_sm now, CMPP_DELIVER
later, an HTTP provider's JSON) into these; gateway/receipts/ correlates the
receipts and routes the MO. Nothing downstream sees a PDU.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from protocols.receipt import normalize_message_id


@dataclass(frozen=True, slots=True)
class Receipt:
    connector: str
    smsc_id: str  # as the carrier wrote it in the receipt
    smsc_id_key: str  # normalised by the connector's receipt_id_format: the correlation key
    # The carrier's word for the outcome, the 7-letter form SMPP and CMPP share:
    # DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED, UNKNOWN, ACCEPTD, ENROUTE.
    status: str
    error: str = ""  # the carrier's error code, as written ("" for none)
    done_at: datetime | None = None  # SMSC-local time, when the receipt says

    @classmethod
    def of(cls, connector: str, smsc_id: str, id_format: str, status: str, error: str = "",
           done_at: datetime | None = None) -> Receipt:
        return cls(connector, smsc_id, normalize_message_id(smsc_id, id_format), status, error,
                   done_at)


@dataclass(frozen=True, slots=True)
class Concatenation:
    reference: int
    total: int
    part: int  # 1-based


@dataclass(frozen=True, slots=True)
class Mo:
    connector: str
    source: str  # "+<digits>" for an international number, else as sent
    destination: str  # the service number, as sent
    text: str  # decoded; one part of a concatenated message may hold half a surrogate pair
    concat: Concatenation | None = None


Event = Receipt | Mo
# A connector's sink for what arrived together: per event, True once it is
# stored (acknowledge it), False to have the carrier send it again later.
Inbound = Callable[[Sequence[Event]], Awaitable[list[bool]]]
