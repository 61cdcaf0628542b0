"""Messages and their statuses: the enqueue of admitted messages (lane entry,
expiry, batch counts, idempotency key, in one script call per chunk), reading
them back, and status changes outside delivery."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import msgpack

from gateway.core.model import Message, MessageState
from gateway.store.base import StoreBase, _by_shard, _ts
from gateway.store.keys import (
    batch_key,
    batch_owner_key,
    key_shard,
    lane_key,
    msg_key,
    optout_key,
    shard_of,
)

# id, packed Message, lane key, parts, callback spec (`w`), expiry time, send_at or ''
Record = tuple[str, bytes, str, int, str, float, str]


class Messages(StoreBase):
    """Admission writes and message reads (the opt-out lists are read before
    an enqueue of single messages)."""

    receipt_grace: float

    def _init_messages(self) -> None:
        self._set_status = self._register("set_status")
        self._dispatch_view = self._register("dispatch_view")
        self._chunk = self._register("enqueue_chunk")

    async def enqueue(self, messages: Sequence[Message]) -> None:
        """Persist records and append them to their first connector's lane: one
        script call per (account, batch, shard) group, all in one round trip."""
        groups: dict[tuple[str, str | None], list[Record]] = {}
        for m in messages:
            groups.setdefault((m.account, m.batch_id), []).append(self.record(m))
        for (account, batch_id), records in groups.items():
            await self.enqueue_api(account, [records], batch_id=batch_id)

    def record(self, m: Message) -> Record:
        """A message as the enqueue script takes it: id, packed record, lane,
        parts, its callback spec, when it expires (validity + receipt grace), and
        its send_at if that is still ahead."""
        due = f"{m.send_at:.3f}" if m.send_at and m.send_at > time.time() + 0.5 else ""
        return (m.id, m.pack(), lane_key(shard_of(m.id), m.connectors[0], m.msg_class),
                m.parts, m.webhook, m.expires_at + self.receipt_grace, due)

    # --- state -----------------------------------------------------------

    async def get(self, message_id: str) -> MessageState | None:
        raw = await self.redis.hgetall(msg_key(message_id))
        return _state_from_hash(raw) if raw else None

    async def dispatch_view(self, ids: Sequence[str]) -> list[MessageState | None]:
        """What the dispatcher needs of each message — status, record, and which
        parts the SMSC already acknowledged — in one script call per shard (a
        pipeline of HGETALLs cost a fifth of the dispatcher's CPU in redis-py's
        packing)."""
        by_shard = _by_shard(ids, shard_of)
        calls = [self._in(k, (), list(group)) for k, (_, group) in by_shard.items()]
        replies = await self._script_calls(self._dispatch_view, calls)
        out: list[MessageState | None] = [None] * len(ids)
        for (positions, _), raw in zip(by_shard.values(), replies, strict=True):
            assert isinstance(raw, list)
            for pos, status, record, acked in zip(positions, raw[::3], raw[1::3], raw[2::3],
                                                  strict=True):
                if not status:
                    continue
                parts = {int(k): "" for k in acked.split(b",") if k} if acked else {}
                out[pos] = MessageState(Message.unpack(record), status.decode(), [], None,
                                        None, parts, {})
        return out

    async def get_many(self, ids: Iterable[str]) -> list[MessageState | None]:
        pipe = self.redis.pipeline(transaction=False)
        for message_id in ids:
            pipe.hgetall(msg_key(message_id))
        return [_state_from_hash(raw) if raw else None for raw in await pipe.execute()]

    async def set_status(
        self, message_id: str, status: str, detail: str = "", **fields: str
    ) -> bool:
        args: list[str] = [status, _ts(), detail]
        for name, value in fields.items():
            args += [name, value]
        return bool(await self._call(self._set_status, shard_of(message_id),
                                     [msg_key(message_id)], args))


    async def batch_counts(self, batch_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(batch_key(batch_id))
        return {k.decode(): int(v) for k, v in raw.items()}


    # --- admission: chunks, idempotency, batches ----------------------------

    def _chunk_args(
        self,
        account: str,
        records: Sequence[Record],
        batch_id: str | None,
        idem: tuple[str, str, str, bytes, bytes, int] | None,
        ts: str,
        shard: int,
    ) -> tuple[list[str], list[str | bytes | int]]:
        mode, key, token, body_hash, response, ttl = idem or ("", "", "", b"", b"", 0)
        args: list[str | bytes | int] = [
            mode, token, body_hash, response, ttl,
            batch_key(batch_id) if batch_id else "",
            batch_owner_key(batch_id) if batch_id and mode != "next" else "",
            account, ts,
        ]
        flat: list[str | bytes] = []
        for message_id, packed, lane, _parts, webhook, expiry, due in records:
            flat += (message_id, packed, lane, webhook, f"{expiry:.3f}", due)
        # use_bin_type=False: Lua's cmsgpack reads every string type as a Lua string.
        args.append(msgpack.packb(flat, use_bin_type=False))
        return self._in(shard, [key] if mode else [], args)

    async def enqueue_api(
        self,
        account: str,
        chunks: Sequence[Sequence[Record]],
        *,
        batch_id: str | None = None,
        idem: tuple[str, str, bytes, bytes, int] | None = None,
        ts: float | None = None,
    ) -> tuple[bytes, bytes] | None:
        """Persist chunks of `Store.record`s in one pipelined round trip, one
        enqueue_chunk.lua call per chunk. A batch's messages are of the batch's
        shard, and a request with an idempotency key has its messages in the
        key's shard (`keys.idem_shard`): the ingress makes their ids so.

        idem is (key, token, body hash, response, ttl). Returns None when this
        request's messages were queued, or (body hash, response) of the earlier
        request that owns the idempotency key — then nothing was queued.
        """
        stamp = _ts(ts)
        if idem is not None:
            shard = key_shard(idem[0])
        elif batch_id is not None:
            shard = shard_of(batch_id)
        else:
            shard = -1  # each record's own
        calls = []
        for i, chunk in enumerate(chunks or [[]]):
            spec = None
            if idem is not None:
                key, token, body_hash, response, ttl = idem
                spec = ("first" if i == 0 else "next", key, token, body_hash,
                        response if i == 0 else b"", ttl)
            if shard >= 0:
                if any(shard_of(r[0]) != shard for r in chunk):
                    raise ValueError("a batch's or idempotent request's messages must be of "
                                     "its shard (ids from new_id/id_sequence of that shard)")
                calls.append(self._chunk_args(account, chunk, batch_id, spec, stamp, shard))
            else:
                for k, (_, group) in _by_shard(chunk, lambda r: shard_of(r[0])).items():
                    calls.append(self._chunk_args(account, group, None, None, stamp, k))
        if not calls:
            return None
        first = (await self._script_calls(self._chunk, calls))[0]
        if isinstance(first, list):
            return first[0], first[1]
        return None


    async def enqueue_records(
        self, records: Sequence[Record], optouts: Sequence[tuple[int, str, str]] = ()
    ) -> set[int]:
        """Persist messages without a batch or an idempotency key, of any accounts
        and shards, in one enqueue_chunk.lua call per shard: the script's account
        argument only names a batch's owner, so single messages of several
        accounts can share a call.

        optouts: (index in records, account, number) of marketing messages; each
        whose number is on its account's opt-out list is left out. Returns the
        indices left out. The lists are read first, one SMISMEMBER per account
        in one round trip (an opt-out added meanwhile counts as after the
        submission)."""
        left_out: set[int] = set()
        if optouts:
            by_account: dict[str, list[tuple[int, str]]] = {}
            for index, account, number in optouts:
                by_account.setdefault(account, []).append((index, number))
            pipe = self.redis.pipeline(transaction=False)
            for account, checks in by_account.items():
                pipe.smismember(optout_key(account), [n for _, n in checks])
            for checks, listed in zip(by_account.values(), await pipe.execute(), strict=True):
                left_out.update(i for (i, _), out in zip(checks, listed, strict=True) if out)
        kept = [r for i, r in enumerate(records) if i not in left_out]
        if kept:
            await self.enqueue_api("", [kept])
        return left_out

    async def idempotent_response(self, key: str) -> tuple[bytes, bytes] | None:
        """(body hash, response) stored under an idempotency key, if any."""
        body_hash, response = await self.redis.hmget(key, "h", "r")
        return (body_hash, response) if body_hash is not None else None

    async def batch_owner(self, batch_id: str) -> str | None:
        owner = await self.redis.get(batch_owner_key(batch_id))
        return owner.decode() if owner else None


def _state_from_hash(raw: dict[bytes, bytes]) -> MessageState:
    first = raw.get(b"h", b"").decode()
    if first and "\t" not in first:  # a bare ts: accepted and queued then (enqueue_chunk.lua)
        lines = [f"{first}\taccepted\t", f"{first}\tqueued\t"]
    else:
        lines = first.splitlines()
    later: list[tuple[int, int, str]] = []  # (status rank, note number or 0, line)
    smsc_ids, part_states = {}, {}
    for name, value in raw.items():
        kind, number = name[:1], name[1:]
        if kind == b"h" and number:
            rank, _, note = number.partition(b".")
            later.append((int(rank), int(note or 0), value.decode()))
        elif not number.isdigit():
            continue
        elif kind == b"i":
            smsc_ids[int(number)] = value.decode()
        elif kind == b"p":
            part_states[int(number)] = value.decode()
    history = []
    for line in lines + [line for *_, line in sorted(later)]:
        ts, status, detail = line.split("\t", 2)
        history.append((float(ts), status, detail))
    error = raw.get(b"e")
    connector = raw.get(b"c")
    return MessageState(
        message=Message.unpack(raw[b"r"]),
        status=raw[b"s"].decode(),
        history=history,
        connector=connector.decode() if connector else None,
        error_code=error.decode() if error else None,
        smsc_ids=smsc_ids,
        part_states=part_states,
    )


