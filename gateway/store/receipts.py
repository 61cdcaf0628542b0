"""Receipts and correlation: a part acknowledged by the SMSC (its correlation
written, an early receipt taken), receipts matched to their message parts,
and a part's final state deciding the message's."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgpack
from redis.commands.core import AsyncScript

from gateway.store.base import StoreBase, _by_shard, _ts
from gateway.store.keys import (
    corr_key,
    name_shard,
    shard_of,
)
from gateway.store.scripts import PARKED

# An acknowledged part, as Store.parts_submitted takes it: connector, message
# id, part, SMSC id as written in submit_sm_resp, that id normalised (the
# correlation key's), ttl, parts in total. A plain tuple: the dispatcher builds
# one per part on its hot path.
AckedPart = tuple[str, str, int, str, str, int, int]


class Receipts(StoreBase):
    def _init_receipts(self) -> None:
        self._corr_write = self._register("corr_write")
        self._submitted = self._register("submitted")
        self._correlate = self._register("correlate")
        self._part_final = self._register("part_final")
        self._corr_read = self._register("corr_read")
        self._apply_receipts = self._register("apply_receipts")

    async def parts_submitted(self, parts: Sequence[AckedPart]) -> list[bytes | None]:
        """Record acknowledged parts, (connector, message id, part, smsc id as the
        SMSC wrote it, the same id normalised for correlation, ttl, parts in
        total) each: their correlations (one script call per correlation
        shard) and the messages (one per message shard), all in one round
        trip; then, only for parts whose receipt was there first (parked in its
        correlation key), the messages again with that receipt. The order of
        the two does not matter: a receipt that finds a message not yet knowing
        its submission records it (lib/part_final.lua). The message keeps the
        id as written (it is what the carrier's records show); receipts are
        matched on the normalised one. Per part: None, or what became of a
        receipt that arrived early: b"=<status>" / b"=" if it was applied, else
        its payload."""
        by_corr = _by_shard(parts, lambda p: name_shard(p[4], self.shards))
        calls: list[tuple[AsyncScript, list[str], list[str | bytes | int]]] = []
        for k, (_, group) in by_corr.items():
            flat: list[str] = []
            for connector, message_id, part, smsc, match_id, ttl, total in group:
                flat += (corr_key(k, connector, match_id),
                         f"{message_id}|{part}|{total}|{connector}|{smsc}",
                         str(max(ttl, 60)))
            # One packed argument: redis-py's per-argument packing was the cost.
            calls.append((self._corr_write, *self._in(
                k, (), [msgpack.packb(flat, use_bin_type=False)])))
        ts = _ts()
        by_msg = self._submitted_calls(parts, range(len(parts)), {}, ts)
        calls += [(self._submitted, *call) for call in by_msg.values()]
        replies = await self._scripts_calls(calls)
        early: dict[int, bytes] = {}
        for (positions, _), reply in zip(by_corr.values(), replies, strict=False):
            assert isinstance(reply, list)
            for pos, value in zip(positions, reply, strict=True):
                if value:
                    early[pos] = value
        out: list[bytes | None] = [None] * len(parts)
        parked = [i for i, value in early.items() if value[:1] == PARKED.encode()]
        if parked:  # the receipt came first: apply it (or hand it back) now
            again = self._submitted_calls(parts, parked, early, ts)
            for (_, group), reply in zip(
                    again, await self._script_calls(self._submitted, list(again.values())),
                    strict=True):
                assert isinstance(reply, list)
                for i, r in zip(group, reply, strict=True):
                    out[i] = r or None
        return out

    def _submitted_calls(self, parts: Sequence[AckedPart], which: Iterable[int],
                         early: dict[int, bytes], ts: str
                         ) -> dict[tuple[int, tuple[int, ...]], tuple[list[str],
                                                                       list[str | bytes | int]]]:
        """submitted.lua calls for parts[which], per message shard: (shard, the
        parts' indices) → call."""
        out = {}
        for k, (_, group) in _by_shard(which, lambda i: shard_of(parts[i][1])).items():
            flat: list[str | bytes] = []
            for i in group:
                connector, message_id, part, smsc_id, _match, _ttl, total = parts[i]
                flat += (message_id, str(part), smsc_id, connector, str(total),
                         early.get(i, b""))
            out[(k, tuple(group))] = self._in(k, (), [ts, msgpack.packb(flat, use_bin_type=False)])
        return out

    async def apply_receipts(
        self, receipts: Sequence[tuple[str, str, bytes]], ttl: int
    ) -> list[tuple[str, str | None] | None]:
        """Correlate and apply (connector, smsc id, "state|err|stat") receipts:
        per receipt None if parked until its submit_sm_resp, else (message id,
        the message's new final status if this receipt set one). One script
        call per correlation shard, then one per message shard."""
        by_corr = _by_shard(receipts, lambda r: name_shard(r[1], self.shards))
        calls = []
        for k, (_, group) in by_corr.items():
            flat: list[str | bytes] = []
            for connector, smsc_id, payload in group:
                flat += (corr_key(k, connector, smsc_id), payload)
            calls.append(self._in(k, (), [max(ttl, 60), msgpack.packb(flat, use_bin_type=False)]))
        # (position, message id, part, parts in total, connector, smsc id)
        found: list[tuple[int, str, str, str, str, str]] = []
        for (positions, _), reply in zip(by_corr.values(),
                                         await self._script_calls(self._corr_read, calls),
                                         strict=True):
            assert isinstance(reply, list)
            for pos, value in zip(positions, reply, strict=True):
                if value:
                    message_id, part, total, connector, smsc = _correlation(value)
                    found.append((pos, message_id, part, total, connector, smsc))
        out: list[tuple[str, str | None] | None] = [None] * len(receipts)
        if not found:
            return out
        by_msg = _by_shard(found, lambda f: shard_of(f[1]))
        ts, calls = _ts(), []
        for k, (_, group) in by_msg.items():
            flat = []
            for pos, message_id, part, total, connector, smsc in group:
                flat += (message_id, part, receipts[pos][2], total, connector, smsc)
            calls.append(self._in(k, (), [ts, msgpack.packb(flat, use_bin_type=False)]))
        for (_, group), reply in zip(by_msg.values(),
                                     await self._script_calls(self._apply_receipts, calls),
                                     strict=True):
            assert isinstance(reply, list)
            for (pos, message_id, *_), new in zip(group, reply, strict=True):
                out[pos] = (message_id, new.decode() or None)
        return out

    async def correlate(
        self, connector: str, smsc_id: str, receipt: bytes, ttl: int
    ) -> tuple[str, int] | None:
        k = name_shard(smsc_id, self.shards)
        value = await self._call(self._correlate, k, [corr_key(k, connector, smsc_id)],
                                 [receipt, max(ttl, 60)])
        if not value:
            return None
        assert isinstance(value, bytes)
        message_id, part, *_ = _correlation(value)
        return message_id, int(part)

    async def part_final(
        self, message_id: str, part: int, state: str, error_code: str, detail: str
    ) -> str | None:
        """Record a part's final state; returns the message's new final status, if it changed."""
        new = await self._call(self._part_final, shard_of(message_id), (),
                               [message_id, part, state, _ts(), error_code, detail])
        return new.decode() if isinstance(new, bytes) else None


def _correlation(value: bytes) -> tuple[str, str, str, str, str]:
    """A correlation's (message id, part, parts in total, connector, smsc id)."""
    message_id, part, total, connector, smsc = value.decode().split("|", 4)
    return message_id, part, total, connector, smsc
