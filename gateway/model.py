"""The one representation of a message, from admission to the final receipt.

The immutable part (who, what, where to) is packed once with msgpack at
admission and stored beside the mutable state (status, history, per-part SMSC
ids) that the store's Lua scripts update atomically.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import msgpack

# Statuses of the product contract. A final status never changes again.
ACCEPTED = "accepted"
SCHEDULED = "scheduled"
QUEUED = "queued"
SUBMITTED = "submitted"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
EXPIRED = "expired"
REJECTED = "rejected"
FAILED = "failed"
FINAL_STATUSES = frozenset({DELIVERED, UNDELIVERED, EXPIRED, REJECTED, FAILED})
STATUSES = (ACCEPTED, SCHEDULED, QUEUED, SUBMITTED, *sorted(FINAL_STATUSES))


def new_id() -> str:
    """Time-ordered unique id: 12 hex digits of milliseconds + 16 random hex digits.

    Sorts by creation time, fits SMPP's 65-octet message_id, and needs no
    coordination between gateway processes.
    """
    return f"{int(time.time() * 1000):012x}{os.urandom(8).hex()}"


@dataclass(slots=True)
class Message:
    id: str
    account: str
    to: str  # E.164 with the leading "+"
    sender: str
    text: str
    msg_class: str
    encoding: str
    parts: int
    created_at: float
    expires_at: float
    connectors: list[str]
    carrier: str = ""
    callback_url: str | None = None
    client_ref: str | None = None
    batch_id: str | None = None
    send_at: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def pack(self) -> bytes:
        return msgpack.packb(
            (
                self.id, self.account, self.to, self.sender, self.text, self.msg_class,
                self.encoding, self.parts, self.created_at, self.expires_at, self.connectors,
                self.carrier, self.callback_url, self.client_ref, self.batch_id, self.send_at,
                self.extra,
            ),
            use_bin_type=True,
        )

    @classmethod
    def unpack(cls, data: bytes) -> Message:
        return cls(*msgpack.unpackb(data, raw=False))


@dataclass(slots=True)
class MessageState:
    """What the store knows about a message now (the record plus its mutable state)."""

    message: Message
    status: str
    history: list[tuple[float, str, str]]
    connector: str | None
    error_code: str | None
    smsc_ids: dict[int, str]
    part_states: dict[int, str]
