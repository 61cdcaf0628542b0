"""Webhooks: status callbacks and MO messages, POSTed durably from Redis.

What to send comes ready: the store scripts queue status events, and
gateway.receipts.mo hands over MO messages already reassembled and routed to
their account; this module queues those and POSTs.

A status change that a message's callback spec asks for is queued by the
store script that makes the change, on one lane (queue) of the message's
receiver (gateway.admission.callbacks). Each worker's sender leases due queues in one
script call, reads with them the message fields their callbacks need, and
POSTs:

- to a receiver taking single events, each event as its own JSON object, the
  queue's entries one after another (up to SINGLE_RUN per lease);
- to a batching receiver, up to its batch size as ``{"results": [...]}`` in
  one request, one signature over the whole body.

A lane has one request in flight at a time and a message's events share a
lane, so they arrive in order; a receiver takes as many requests at once as
it has lanes. Leases are handed back (delivered entries dropped, a failure
scheduled) in one script call per event-loop turn for all queues that
finished in it. A lease lapses if its worker dies, and another worker sends
the same entries again: at least once, receivers dedupe on each event's
``event_id``.

A failed attempt (no 2xx, connection error, timeout) is retried after
``min(retry_max, retry_base * 2**(attempt-1))`` seconds with equal jitter, the
whole batch again for a batching receiver, until the head is older than
``max_age`` (24 h by default); then it goes to the dead-letter stream and the
queue moves on.

Isolation: a worker has ``concurrency`` requests in flight at most; a healthy
receiver may take ``receiver_share`` of them (half by default), one whose last
request timed out or could not connect ``slow_share`` until a request
succeeds again.

Each request carries ``X-Smsgw-Timestamp`` (Unix seconds) and
``X-Smsgw-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>", keyed
with the account's callback_secret>``: the timestamp is signed, so a receiver
that rejects old timestamps cannot be fed a recorded request again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import time
from collections.abc import Mapping
from typing import Any

import msgpack
import orjson

from gateway.admission.callbacks import Receivers, target_policy
from gateway.core import logs, metrics
from gateway.core.backoff import backoff
from gateway.core.coalesce import Coalescer
from gateway.core.config import AccountSettings, WebhookSettings
from gateway.core.model import FINAL_STATUSES, Message, new_id
from gateway.core.targets import RefusedTarget
from gateway.notify.client import HttpFailure, WebhookClient
from gateway.store import (
    HISTORY_RANK,
    WH_FIELDS,
    WH_RENDERED,
    Claim,
    Settle,
    Store,
)
from gateway.store.keys import wh_queue_receiver

log = logs.get("smsgw.webhooks")

USER_AGENT = "smsgw-webhooks/1"
# Bytes of a receiver's answer read (and ignored).
MAX_ANSWER = 64 * 1024
# Entries of a single-event queue sent one after another under one lease.
SINGLE_RUN = 32
# The reason of a callback the target rules refused (gateway.admission.callbacks):
# dead-lettered at once, never retried.
REFUSED = "refused_target"
_DELIVERED = metrics.WEBHOOKS.labels("delivered")
_BEFORE_ROUTING = frozenset({"accepted", "queued", "scheduled"})
# Where a claim's fields hold the later history lines, and the SMSC ids (part
# 0, 1, then 2.. as the claim appended them).
_LATER_LINES = slice(WH_FIELDS.index("h2"), WH_FIELDS.index("h4") + 1)
_FIRST_ID = WH_FIELDS.index("i0")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _iso(ts: float) -> str:
    # A callback carries up to five timestamps, mostly of the same second.
    sec = int(ts)
    if sec != _second[0]:
        _second[0], _second[1] = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_second[1]}.{int(ts * 1000) % 1000:03d}Z"


class Callback:
    """One callback, ready to send."""

    __slots__ = ("body", "created", "event_id", "url")

    def __init__(self, url: str, body: bytes, created: float, event_id: str) -> None:
        self.url, self.body, self.created, self.event_id = url, body, created, event_id


def _history(fields: list[bytes | None]) -> list[tuple[str, str]]:
    """(status, ts) of a message's status lines, from the claim's WH_FIELDS."""
    first = fields[3]
    out: list[tuple[str, str]] = []
    if first:
        text = first.decode()
        if "\t" not in text:  # a bare ts: accepted and queued then (enqueue_chunk.lua)
            out += [("accepted", text), ("queued", text)]
        else:
            for line in text.splitlines():
                ts, status, _ = line.split("\t", 2)
                out.append((status, ts))
    for raw in fields[_LATER_LINES]:
        if raw:
            ts, status, _ = raw.decode().split("\t", 2)
            out.append((status, ts))
    return out


def render(entry: bytes, fields: list[bytes | None] | None) -> Callback | None:
    """The callback a queue entry stands for; None if its message is gone (past
    `messages.retention`)."""
    if fields is None:  # rendered when queued (MO)
        url, _account, body, created, event_id = msgpack.unpackb(entry[1:])
        return Callback(url, body, created, event_id)
    record = fields[0]
    if record is None:
        return None
    mid, status, ts_raw = entry.decode().split("|")
    m = Message.unpack(record)
    if not m.callback_url:
        return None
    ts = float(ts_raw)
    rank = HISTORY_RANK.get(status, 99)
    timestamps: dict[str, str] = {}
    for s, at in _history(fields):
        if HISTORY_RANK.get(s, 99) <= rank and s not in timestamps:
            timestamps[s] = _iso(float(at))
    timestamps.setdefault(status, _iso(ts))
    connector, error = fields[1], fields[2]
    routed = status not in _BEFORE_ROUTING
    smsc_ids: dict[str, str] = {}
    if routed:  # as the SMSC wrote them in submit_sm_resp, by part (as GET shows them)
        smsc_ids = {str(k): raw.decode() for k, raw in enumerate(fields[_FIRST_ID:]) if raw}
    event_id = f"{mid}.{status}"
    body = orjson.dumps({
        "type": "status",
        "event_id": event_id,
        "id": mid,
        "client_ref": m.client_ref,
        "batch_id": m.batch_id,
        "status": status,
        "error_code": error.decode() if error and status in FINAL_STATUSES else None,
        "parts": m.parts,
        "connector": connector.decode() if connector and routed else None,
        "carrier": m.carrier,
        "smsc_message_ids": smsc_ids,
        "timestamps": timestamps,
    })
    return Callback(m.callback_url, body, ts, event_id)


class Webhooks:
    def __init__(self, conf: WebhookSettings, accounts: Mapping[str, AccountSettings],
                 store: Store, consumer: str) -> None:
        self.conf = conf
        self.store = store
        self.consumer = consumer
        self.accounts: dict[str, AccountSettings] = dict(accounts)
        self.receivers = Receivers()
        self.healthy_share = self.conf.receiver_share or max(1, self.conf.concurrency // 2)
        self._stopping = False
        self._inflight = 0
        self._busy: dict[str, int] = {}  # receiver ("<rid>:<account>") -> requests here
        self._slow: set[str] = set()  # receivers whose last request timed out / failed
        self._slot = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tokens = itertools.count()
        self._settles: Coalescer[Settle, None] = Coalescer(self._settle_many)
        # One client per account: its resolver applies that account's
        # callback_allow, and a pooled connection one account's allowlist let
        # through is never reused for another's callbacks.
        self._clients: dict[str, WebhookClient] = {}

    def stop(self) -> None:
        self._stopping = True
        self._slot.set()

    async def run(self) -> None:
        try:
            await self._sender()
        finally:
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self.conf.timeout)
            await self._settles.idle()
            for client in self._clients.values():
                await client.close()

    def _client(self, account_name: str) -> WebhookClient:
        client = self._clients.get(account_name)
        if client is None:
            account = self.accounts.get(account_name)
            policy = target_policy(account if account is not None
                                   else AccountSettings(api_keys=["-"]))
            client = self._clients[account_name] = WebhookClient(
                policy, USER_AGENT, self.conf.timeout, MAX_ANSWER,
                max_idle=self.conf.concurrency + 8)
        return client

    # --- MO messages (reassembled and routed by gateway.receipts.mo) ---------------

    async def queue_mo(self, account: str, url: str, connector: str, source: str, dest: str,
                       text: str, parts: int, complete: bool, once: str | None = None,
                       ttl: int = 0) -> None:
        """Queue one MO webhook for `account` at `url`. With `once` (a
        reassembled message's conversation), only if no one queued it before:
        the mark is kept `ttl` seconds."""
        now = time.time()
        mo_id = new_id()
        body: dict[str, Any] = {
            "type": "mo", "event_id": mo_id, "id": mo_id, "from": source, "to": dest,
            "text": text, "parts": parts, "connector": connector, "received_at": _iso(now),
        }
        if not complete:
            body["complete"] = False
        entry = WH_RENDERED + msgpack.packb([url, account, orjson.dumps(body), now, mo_id])
        queue = self.receivers.queue(account, self.accounts[account], url, mo_id)
        if once is None:
            await self.store.webhook_push(queue, entry, now)
        elif not await self.store.mo_done(once, queue, entry, ttl, now):
            return  # another bind or worker completed it first
        log.info("mo_queued", connector=connector, mo_id=mo_id, account=account, parts=parts,
                 complete=complete)

    # --- queues → receivers ---------------------------------------------------

    def _cap(self, receiver: str) -> int:
        return self.conf.slow_share if receiver in self._slow else self.healthy_share

    async def _sender(self) -> None:
        lease = 2 * self.conf.timeout + 5
        while not self._stopping:
            free = self.conf.concurrency - self._inflight
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            skip = [r for r, n in self._busy.items() if n >= self._cap(r)]
            token = f"{self.consumer}:{next(self._tokens)}"
            now = time.time()
            try:
                claims, next_due = await self.store.webhook_claim(
                    now, lease, min(free, 256), token, SINGLE_RUN, skip
                )
            except Exception as exc:
                log.error("webhook_claim_error", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for claim in claims:
                _size, rid, account = wh_queue_receiver(claim.queue)
                receiver = f"{rid}:{account}"
                self._busy[receiver] = self._busy.get(receiver, 0) + 1
                self._inflight += 1
                task = asyncio.create_task(self._deliver(claim, token, receiver, now + lease))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not claims:
                wait = self.conf.poll_interval
                if next_due is not None:
                    wait = min(wait, max(0.0, next_due - time.time()))
                if wait > 0:
                    # A lease handed back wakes the loop at once (a queue with
                    # more entries is due again then).
                    self._slot.clear()
                    try:
                        await asyncio.wait_for(self._slot.wait(), wait)
                    except TimeoutError:
                        pass

    async def _settle_many(self, settles: list[Settle]) -> list[None]:
        await self.store.webhook_settle(settles)
        return [None] * len(settles)

    def _release(self, receiver: str) -> None:
        self._inflight -= 1
        left = self._busy.get(receiver, 1) - 1
        if left > 0:
            self._busy[receiver] = left
        else:
            self._busy.pop(receiver, None)
        self._slot.set()

    async def _deliver(self, claim: Claim, token: str, receiver: str, lease_end: float
                       ) -> None:
        settle = Settle(claim.queue, claim.shard, token, 0)
        try:
            settle = await self._send(claim, token, receiver, lease_end)
        except Exception as exc:  # a bug must not strand the lease: it lapses, and is retried
            log.error("webhook_task_failed", error=repr(exc), exc_info=exc)
            settle = Settle(claim.queue, claim.shard, token, settle.delivered,
                            retry_at=time.time() + self.conf.retry_base)
        finally:
            self._settles.push(settle, lambda _result: self._release(receiver))

    async def _send(self, claim: Claim, token: str, receiver: str, lease_end: float
                    ) -> Settle:
        size, _rid, account_name = wh_queue_receiver(claim.queue)
        account = self.accounts.get(account_name)
        secret = account.callback_secret if account is not None else ""
        events = [render(entry, fields) for entry, fields in claim.entries]
        if size > 1:
            sendable = [e for e in events if e is not None]
            if not sendable:
                return Settle(claim.queue, claim.shard, token, len(events))
            body = b'{"results":[' + b",".join(e.body for e in sendable) + b"]}"
            reason = await self._post(sendable[0].url, body, secret, claim.attempts + 1, None,
                                      receiver, account_name)
            if not reason:
                _DELIVERED.inc(len(sendable))
                return Settle(claim.queue, claim.shard, token, len(events))
            return self._failed(claim, token, 0, events, claim.attempts + 1, reason)
        delivered = 0
        # Each request may take `timeout`: stop in time to hand the lease back.
        last_start = lease_end - self.conf.timeout - 5
        for i, event in enumerate(events):
            if event is None:  # the message is gone: nothing to tell
                delivered += 1
                continue
            if i and time.time() > last_start:
                break
            attempt = claim.attempts + 1 if i == 0 else 1
            reason = await self._post(event.url, event.body, secret, attempt, event.event_id,
                                      receiver, account_name)
            if reason:
                return self._failed(claim, token, delivered, events[i:], attempt, reason)
            _DELIVERED.inc()
            delivered += 1
        return Settle(claim.queue, claim.shard, token, delivered)

    def _failed(self, claim: Claim, token: str, delivered: int,
                rest: list[Callback | None], attempt: int, reason: str) -> Settle:
        """The request for `rest` failed: what is older than max_age goes to the
        dead letters, the rest is tried again after a backoff."""
        now = time.time()
        dead = 0
        for i, event in enumerate(rest):
            # A refused target is refused again on every retry: the event it
            # stopped at is given up at once, not after max_age.
            permanent = reason.startswith(REFUSED) and i == 0
            if event is not None and now - event.created < self.conf.max_age and not permanent:
                break
            dead += 1
        if dead:
            metrics.WEBHOOKS.labels("dead").inc(dead)
            log.warning("webhook_dead", queue=claim.queue, events=dead, reason=reason,
                        attempts=attempt)
        if dead == len(rest):
            why = reason if reason.startswith(REFUSED) else f"max_age {reason}"
            return Settle(claim.queue, claim.shard, token, delivered, dead, why)
        if reason.startswith(REFUSED):  # the next entries try on their own at once
            return Settle(claim.queue, claim.shard, token, delivered, dead, reason, now)
        delay = backoff(attempt - 1, self.conf.retry_base, self.conf.retry_max, jitter="equal")
        log.info("webhook_retry", queue=claim.queue, reason=reason, attempt=attempt,
                 retry_in=round(delay, 3))
        return Settle(claim.queue, claim.shard, token, delivered, dead, f"max_age {reason}",
                      now + delay)

    async def _post(self, url: str, body: bytes, secret: str, attempt: int,
                    event_id: str | None, receiver: str, account_name: str) -> str:
        """POST one signed body; "" if the receiver took it, else why not."""
        account = self.accounts.get(account_name)
        refused = target_policy(account if account is not None
                                else AccountSettings(api_keys=["-"])).refused_url(url)
        if refused:  # the scheme, or a literal address in a refused range
            return self._refused(url, refused, event_id)
        timestamp = str(int(time.time()))
        headers = (f"Content-Type: application/json\r\nX-Smsgw-Timestamp: {timestamp}\r\n"
                   f"X-Smsgw-Signature: {sign(secret, timestamp, body)}\r\n"
                   f"X-Smsgw-Attempt: {attempt}\r\n")
        if event_id is not None:
            headers += f"X-Smsgw-Event-Id: {event_id}\r\n"
        reason = ""
        try:
            status = await self._client(account_name).post(url, headers.encode(), body)
            if not 200 <= status < 300:
                reason = f"http_{status}"
        except RefusedTarget as exc:
            return self._refused(url, str(exc), event_id)
        except HttpFailure as exc:
            reason = exc.reason
        if reason:
            metrics.WEBHOOK_FAILURES.labels(reason).inc()
            if not reason.startswith("http_"):
                self._slow.add(receiver)
        else:
            self._slow.discard(receiver)
        return reason

    def _refused(self, url: str, why: str, event_id: str | None) -> str:
        metrics.WEBHOOK_FAILURES.labels(REFUSED).inc()
        log.warning("webhook_target_refused", url=url, reason=why, event_id=event_id)
        return f"{REFUSED}: {why}"
