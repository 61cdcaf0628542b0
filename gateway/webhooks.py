"""Webhooks: status callbacks and MO messages, POSTed durably from Redis.

Two loops per worker:

- the **mover** reads status events from the store's `smsgw:events` stream
  (consumer group ``webhooks``; entries a dead worker read but never handled
  are taken over with XAUTOCLAIM), renders each into its JSON body and moves it,
  in one script call with the acknowledgement, onto its message's webhook queue;
- the **sender** claims queues whose head is due and POSTs the head. Only the
  head of a queue is ever in flight, so one message's statuses arrive in order.
  A claim is a lease: if the worker dies mid-request, the lease lapses and any
  worker sends the head again (at least once; receivers dedupe on
  ``X-Smsgw-Event-Id``).

A failed attempt (no 2xx, connection error, timeout) is retried after
``min(retry_max, retry_base * 2**(attempt-1))`` seconds with equal jitter (a
random point in the upper half of that step), until the delivery is older than
``max_age`` (24 h by default); then it goes to the dead-letter stream and the
queue moves on. The schedule is a Redis sorted set, so it survives restarts.

Isolation: requests run with bounded concurrency and a per-request timeout, and
one receiver host may hold at most ``per_host`` of the slots, so a slow or dead
receiver delays only its own deliveries.

Each request carries ``X-Smsgw-Signature: sha256=<hex HMAC-SHA256 of the raw
body, keyed with the account's callback_secret>`` and ``X-Smsgw-Timestamp``
(Unix seconds of the attempt).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgpack
import orjson

from gateway import logs, metrics
from gateway.config import AccountSettings, Settings
from gateway.model import FINAL_STATUSES, MessageState, new_id
from gateway.store import Store
from protocols.smpp import DeliverSm, Tag
from protocols.text import Udh, decode_short_message, join_parts

log = logs.get("smsgw.webhooks")

USER_AGENT = "smsgw-webhooks/1"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def status_body(state: MessageState, status: str, ts: float, event_id: str) -> bytes:
    """The callback for one status change, as the receiver gets it."""
    m = state.message
    timestamps: dict[str, str] = {}
    for at, s, _detail in state.history:
        if at <= ts and s not in timestamps:
            timestamps[s] = _iso(at)
        if s == status:
            break
    timestamps.setdefault(status, _iso(ts))
    final = status in FINAL_STATUSES
    return orjson.dumps({
        "type": "status",
        "event_id": event_id,
        "id": m.id,
        "client_ref": m.client_ref,
        "batch_id": m.batch_id,
        "status": status,
        "error_code": state.error_code if final else None,
        "parts": m.parts,
        "connector": state.connector if status not in ("accepted", "queued", "scheduled")
        else None,
        "carrier": m.carrier,
        "timestamps": timestamps,
    })


def backoff(attempt: int, base: float, cap: float) -> float:
    step = min(cap, base * 2 ** min(attempt - 1, 40))
    return random.uniform(step / 2, step)


def _concat(pdu: DeliverSm, udh: Udh | None) -> tuple[int, int, int] | None:
    """(reference, parts in total, this part's number) of a concatenated MO,
    from its UDH or its SAR TLVs; None for a message of one part."""
    if udh is not None and udh.concat is not None:
        return udh.concat
    ref, total, seq = (pdu.get(Tag.SAR_MSG_REF_NUM), pdu.get(Tag.SAR_TOTAL_SEGMENTS),
                       pdu.get(Tag.SAR_SEGMENT_SEQNUM))
    if isinstance(ref, int) and isinstance(total, int) and isinstance(seq, int):
        return ref, total, seq
    return None


def _joined(parts: dict[int, bytes]) -> str:
    """The text of the parts that came, as stored by `on_mo`."""
    return join_parts({k: v.decode("utf-8", "surrogatepass") for k, v in parts.items()})


class Webhooks:
    def __init__(self, settings: Settings, store: Store, consumer: str) -> None:
        self.settings = settings
        self.conf = settings.webhooks
        self.store = store
        self.consumer = consumer
        self.accounts: dict[str, AccountSettings] = dict(settings.accounts)
        self.mo_routes: dict[str, str] = {
            number.lstrip("+"): name
            for name, account in settings.accounts.items()
            for number in account.mo_numbers
        }
        self.per_host = max(1, self.conf.concurrency // 4)
        self._stopping = False
        # How long the parts of an MO message (and then the mark that it was
        # sent) are kept: a day past the give-up time.
        self._mo_ttl = int(self.conf.mo_combine_timeout) + 24 * 3600
        self._inflight = 0
        self._hosts: dict[str, int] = {}
        self._slot = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def stop(self) -> None:
        self._stopping = True
        self._slot.set()

    async def run(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.conf.timeout),
            limits=httpx.Limits(max_connections=self.conf.concurrency + 8),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )
        try:
            await self.store.ensure_events_group()
            loops = [self._mover(), self._sender()]
            if any(account.mo_url for account in self.accounts.values()):
                loops.append(self._overdue())  # no MO webhooks, nothing to give up on
            await asyncio.gather(*loops)
        finally:
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self.conf.timeout)
            await self._client.aclose()

    # --- events → queues ----------------------------------------------------

    async def _mover(self) -> None:
        idle_ms = int((self.conf.timeout + 30) * 1000)
        while not self._stopping:
            try:
                await self.move_once(block_ms=500, idle_ms=idle_ms)
            except Exception as exc:  # Redis away: try again, nothing is lost
                log.error("webhook_mover_error", error=repr(exc))
                await asyncio.sleep(1.0)

    async def move_once(self, block_ms: int, idle_ms: int) -> int:
        events = await self.store.read_events(self.consumer, 256, block_ms, idle_ms)
        if not events:
            return 0
        ids = list(dict.fromkeys(mid for _, mid, _, _ in events))
        states = dict(zip(ids, await self.store.get_many(ids), strict=True))
        items: list[tuple[str, bytes]] = []
        for eid, mid, status, ts in events:
            state = states.get(mid)
            url = state.message.callback_url if state is not None else None
            if state is None or not url:
                continue
            event_id = eid.decode()
            body = status_body(state, status, ts, event_id)
            entry = msgpack.packb([url, state.message.account, body, ts, event_id])
            items.append((mid, entry))
        await self.store.webhook_queue(items, ack=[eid for eid, *_ in events])
        return len(items)

    # --- MO messages ----------------------------------------------------------

    async def on_mo(self, connector: str, pdu: DeliverSm) -> None:
        """Queue an MO message for its account's mo_url (routed by destination).
        The parts of a concatenated one (UDH or SAR) are kept in Redis until all
        have come, then go as one message."""
        target = self._mo_target(pdu.destination_addr)
        if target is None:
            log.info("mo_unrouted", connector=connector, number=pdu.destination_addr)
            return
        name, url = target
        payload = pdu.get(Tag.MESSAGE_PAYLOAD)
        data = payload if isinstance(payload, bytes) and payload else pdu.short_message
        text, udh = decode_short_message(data, pdu.data_coding, pdu.esm_class)
        source = pdu.source_addr
        if pdu.source_addr_ton == 1 and source.isdigit():
            source = "+" + source
        concat = _concat(pdu, udh)
        if concat is None or concat[1] <= 1:
            await self._queue_mo(name, url, connector, source, pdu.destination_addr, text, 1,
                                 True, None)
            return
        ref, total, seq = concat
        if not 1 <= seq <= total:
            log.warning("mo_part_out_of_range", connector=connector, seq=seq, total=total)
            return
        # JSON: addresses may hold any character, "|" included
        conversation = orjson.dumps([connector, source, pdu.destination_addr, ref, total]).decode()
        parts = await self.store.mo_part(
            conversation, seq, total, text.encode("utf-8", "surrogatepass"),
            time.time() + self.conf.mo_combine_timeout, self._mo_ttl,
        )
        if parts is not None:
            await self._queue_mo(name, url, connector, source, pdu.destination_addr,
                                 _joined(parts), total, True, conversation)

    def _mo_target(self, number: str) -> tuple[str, str] | None:
        """(account, mo_url) of the account whose mo_numbers has `number`."""
        name = self.mo_routes.get(number.lstrip("+"))
        account = self.accounts.get(name) if name else None
        if name is None or account is None or not account.mo_url:
            return None
        return name, account.mo_url

    async def _queue_mo(self, account: str, url: str, connector: str, source: str, dest: str,
                        text: str, parts: int, complete: bool, conversation: str | None) -> None:
        now = time.time()
        mo_id = new_id()
        body: dict[str, Any] = {
            "type": "mo", "event_id": mo_id, "id": mo_id, "from": source, "to": dest,
            "text": text, "parts": parts, "connector": connector, "received_at": _iso(now),
        }
        if not complete:
            body["complete"] = False
        entry = msgpack.packb([url, account, orjson.dumps(body), now, mo_id])
        if conversation is None:
            await self.store.webhook_queue([(f"mo:{mo_id}", entry)], now=now)
        elif not await self.store.mo_done(conversation, f"mo:{mo_id}", entry, self._mo_ttl, now):
            return  # another bind or worker completed it first
        log.info("mo_queued", connector=connector, mo_id=mo_id, account=account, parts=parts,
                 complete=complete)

    async def give_up_overdue(self, now: float | None = None) -> int:
        """Concatenated MO messages still missing parts after `mo_combine_timeout`
        go with the parts that came, marked `"complete": false`."""
        count = 0
        for conversation, parts in await self.store.mo_overdue(time.time() if now is None
                                                               else now):
            connector, source, dest, _ref, total = orjson.loads(conversation)
            target = self._mo_target(dest)
            if target is None:
                continue  # the number moved away meanwhile; the TTL clears the parts
            await self._queue_mo(*target, connector, source, dest, _joined(parts), int(total),
                                 False, conversation)
            count += 1
        return count

    async def _overdue(self) -> None:
        while not self._stopping:
            try:
                await self.give_up_overdue()
            except Exception as exc:  # Redis away: the parts wait in Redis
                log.error("mo_overdue_error", error=repr(exc))
            await asyncio.sleep(1.0)

    # --- queues → receivers ---------------------------------------------------

    async def _sender(self) -> None:
        lease = self.conf.timeout + 30
        while not self._stopping:
            free = self.conf.concurrency - self._inflight
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            try:
                claimed = await self.store.webhook_claim(time.time(), lease, free)
            except Exception as exc:
                log.error("webhook_claim_error", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for queue, head, attempts in claimed:
                url, account, body, created, event_id = msgpack.unpackb(head)
                host = urlsplit(url).netloc
                if self._hosts.get(host, 0) >= self.per_host:
                    # This receiver already holds its share of slots: try later,
                    # without counting an attempt against it.
                    await self.store.webhook_retry(queue, head, time.time() + 1.0, count=False)
                    continue
                self._hosts[host] = self._hosts.get(host, 0) + 1
                self._inflight += 1
                task = asyncio.create_task(
                    self._deliver(queue, head, attempts, url, account, body, created, event_id)
                )
                self._tasks.add(task)
                task.add_done_callback(lambda t, h=host: self._done(t, h))
            if not claimed:
                await asyncio.sleep(self.conf.poll_interval)

    def _done(self, task: asyncio.Task[None], host: str) -> None:
        self._tasks.discard(task)
        self._inflight -= 1
        left = self._hosts.get(host, 1) - 1
        if left:
            self._hosts[host] = left
        else:
            self._hosts.pop(host, None)
        self._slot.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook_task_failed", error=repr(task.exception()))

    async def _deliver(
        self, queue: str, head: bytes, attempts: int, url: str, account_name: str,
        body: bytes, created: float, event_id: str,
    ) -> None:
        assert self._client is not None
        account = self.accounts.get(account_name)
        secret = account.callback_secret if account is not None else ""
        headers: dict[str, Any] = {
            "Content-Type": "application/json",
            "X-Smsgw-Signature": sign(secret, body),
            "X-Smsgw-Timestamp": str(int(time.time())),
            "X-Smsgw-Event-Id": event_id,
            "X-Smsgw-Attempt": str(attempts + 1),
        }
        reason = ""
        try:
            resp = await self._client.post(url, content=body, headers=headers)
            if not 200 <= resp.status_code < 300:
                reason = f"http_{resp.status_code}"
        except httpx.TimeoutException:
            reason = "timeout"
        except (httpx.HTTPError, OSError) as exc:
            reason = type(exc).__name__.lower()
        if not reason:
            await self.store.webhook_done(queue, head)
            metrics.WEBHOOKS.labels("delivered").inc()
            return
        metrics.WEBHOOK_FAILURES.labels(reason).inc()
        now = time.time()
        if now - created >= self.conf.max_age:
            await self.store.webhook_done(queue, head, dead_reason=f"max_age {reason}")
            metrics.WEBHOOKS.labels("dead").inc()
            log.warning("webhook_dead", queue=queue, event_id=event_id, reason=reason,
                        attempts=attempts + 1)
            return
        delay = backoff(attempts + 1, self.conf.retry_base, self.conf.retry_max)
        await self.store.webhook_retry(queue, head, now + delay)
        log.info("webhook_retry", queue=queue, event_id=event_id, reason=reason,
                 attempt=attempts + 1, retry_in=round(delay, 3))
