"""The one representation of a message, from admission to the final receipt.

The immutable part (who, what, where to) is packed once with msgpack at
admission and stored beside the mutable state (status, history, per-part SMSC
ids) that the store's Lua scripts update atomically.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, get_args

import msgpack

# The message classes, in the order a dispatcher reads their lanes: OTP first,
# so a marketing backlog never delays OTP or transactional traffic.
MessageClass = Literal["otp", "transactional", "marketing"]
CLASSES: tuple[MessageClass, ...] = get_args(MessageClass)

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
CANCELED = "canceled"
FINAL_STATUSES = frozenset({DELIVERED, UNDELIVERED, EXPIRED, REJECTED, FAILED, CANCELED})
STATUSES = (ACCEPTED, SCHEDULED, QUEUED, SUBMITTED, *sorted(FINAL_STATUSES))
# A status's bit in a message's callback mask (the `w` field in Redis): stored,
# so never renumber.
EVENT_BITS = {
    status: 1 << i for i, status in enumerate((
        ACCEPTED, SCHEDULED, QUEUED, SUBMITTED, DELIVERED, UNDELIVERED, EXPIRED, REJECTED,
        FAILED, CANCELED,
    ))
}


_random_hex = ""
_random_pos = 0
# Shards of the store's key layout (`redis.shards`, set by Store): ids made
# without a shard take one of them by their millisecond.
_shards = 1


def use_shards(shards: int) -> None:
    global _shards
    _shards = shards


def new_id(shard: int | None = None) -> str:
    """Time-ordered unique id: 12 hex digits of milliseconds, 2 of the store
    shard the message's keys live in (docs/cluster.md; default: the
    millisecond's, so consecutive ids spread over the shards) and 14 random
    hex digits.

    Sorts by creation time, fits SMPP's 65-octet message_id, and needs no
    coordination between gateway processes. The random digits come from
    os.urandom 4 KiB at a time (one getrandom call per 585 ids, not per id: a
    10,000-recipient batch spent a tenth of its admission time in the syscall).
    """
    global _random_hex, _random_pos
    pos = _random_pos
    if pos + 14 > len(_random_hex):
        _random_hex, pos = os.urandom(4096).hex(), 0
    _random_pos = pos + 14
    ms = int(time.time() * 1000)
    return f"{ms:012x}{ms % _shards if shard is None else shard:02x}{_random_hex[pos : pos + 14]}"


def shard_of(name: str) -> int:
    """The shard new_id wrote into an id (hex digits 12..13); a name of
    another shape (a test's batch "r1") is of shard 0. One slice and one dict
    lookup: it runs several times per message (it was 4 % of the gateway's
    CPU with int() and a guard)."""
    return _HEX_PAIRS.get(name[12:14], 0)


_HEX_PAIRS = {f"{n:02{case}}": n for n in range(256) for case in "xX"}


def id_sequence(shard: int | None = None) -> Callable[[], str]:
    """Ids for one batch, all of one shard: the batch's millisecond, the
    shard, 8 random hex digits drawn once, and a 6-digit counter — same shape
    and order as new_id, without a clock read and a slice of randomness per
    recipient."""
    head = new_id(shard)[:22]
    counter = itertools.count()

    def next_id() -> str:
        n = next(counter) & 0xFFFFFF
        return head + (_SUFFIXES[n] if n < len(_SUFFIXES) else f"{n:06x}")

    return next_id


# The counter digits of a batch's ids, formatted once (a batch has at most
# `http.batch_max_recipients`, 10,000 by default).
_SUFFIXES = [f"{n:06x}" for n in range(10_000)]


_PACKER = msgpack.Packer(use_bin_type=True)


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
    # Which status callbacks go where (gateway.admission.callbacks.Receivers.spec); "" none.
    # Last, so records packed before it existed still unpack.
    webhook: str = ""

    def pack(self) -> bytes:
        # One reused Packer: msgpack.packb builds a new one on every call.
        return _PACKER.pack(
            (
                self.id, self.account, self.to, self.sender, self.text, self.msg_class,
                self.encoding, self.parts, self.created_at, self.expires_at, self.connectors,
                self.carrier, self.callback_url, self.client_ref, self.batch_id, self.send_at,
                self.extra, self.webhook,
            )
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
