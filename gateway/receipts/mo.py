"""MO (mobile-originated) messages: routed by destination to the account that
owns the number, the parts of a concatenated one reassembled in Redis, then
handed to gateway.notify.webhooks for the account's `mo_url`.

Any connector's `Mo` comes here (gateway.receipts.inbound). The parts of a
concatenated message (UDH or SAR on SMPP) are kept in Redis until all have
come, on whichever bind or worker they arrive, then go as one message; one
still missing parts after `webhooks.mo_combine_timeout` goes with what came,
marked `"complete": false` (Kannel's sms-combine-concatenated-mo-timeout).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import orjson

from gateway.core import logs
from gateway.core.config import AccountSettings, WebhookSettings
from gateway.core.events import Mo
from gateway.notify.webhooks import Webhooks
from gateway.store import Store
from protocols.text import join_parts

log = logs.get("smsgw.mo")


def _joined(parts: dict[int, bytes]) -> str:
    """The text of the parts that came, as stored by `MoRouter.on_mo`."""
    return join_parts({k: v.decode("utf-8", "surrogatepass") for k, v in parts.items()})


class MoRouter:
    def __init__(self, conf: WebhookSettings, accounts: Mapping[str, AccountSettings],
                 store: Store, webhooks: Webhooks) -> None:
        self.conf = conf
        self.accounts = dict(accounts)
        self.store = store
        self.webhooks = webhooks
        self.routes: dict[str, str] = {
            number.lstrip("+"): name
            for name, account in accounts.items()
            for number in account.mo_numbers
        }
        # How long the parts of an MO message (and then the mark that it was
        # sent) are kept: a day past the give-up time.
        self._ttl = int(conf.mo_combine_timeout) + 24 * 3600
        self._stopping = False

    def wanted(self) -> bool:
        """Whether any account takes MO (else nothing is ever overdue)."""
        return any(account.mo_url for account in self.accounts.values())

    def stop(self) -> None:
        self._stopping = True

    async def on_mo(self, mo: Mo) -> None:
        """Queue an MO message for its account's mo_url, or keep its part until
        the message is whole. Durable when it returns (the SMSC may then be
        told it arrived)."""
        log.info("mo_received", connector=mo.connector, source_addr=mo.source)
        target = self._target(mo.destination)
        if target is None:
            log.info("mo_unrouted", connector=mo.connector, number=mo.destination)
            return
        name, url = target
        concat = mo.concat
        if concat is None or concat.total <= 1:
            await self.webhooks.queue_mo(name, url, mo.connector, mo.source, mo.destination,
                                         mo.text, 1, True)
            return
        if not 1 <= concat.part <= concat.total:
            log.warning("mo_part_out_of_range", connector=mo.connector, seq=concat.part,
                        total=concat.total)
            return
        # JSON: addresses may hold any character, "|" included
        conversation = orjson.dumps([mo.connector, mo.source, mo.destination, concat.reference,
                                     concat.total]).decode()
        parts = await self.store.mo_part(
            conversation, concat.part, concat.total, mo.text.encode("utf-8", "surrogatepass"),
            time.time() + self.conf.mo_combine_timeout, self._ttl,
        )
        if parts is not None:
            await self.webhooks.queue_mo(name, url, mo.connector, mo.source, mo.destination,
                                         _joined(parts), concat.total, True, conversation,
                                         self._ttl)

    def _target(self, number: str) -> tuple[str, str] | None:
        """(account, mo_url) of the account whose mo_numbers has `number`."""
        name = self.routes.get(number.lstrip("+"))
        account = self.accounts.get(name) if name else None
        if name is None or account is None or not account.mo_url:
            return None
        return name, account.mo_url

    async def give_up_overdue(self, now: float | None = None) -> int:
        """Concatenated MO messages still missing parts after `mo_combine_timeout`
        go with the parts that came, marked `"complete": false`."""
        count = 0
        for conversation, parts in await self.store.mo_overdue(time.time() if now is None
                                                               else now):
            connector, source, dest, _ref, total = orjson.loads(conversation)
            target = self._target(dest)
            if target is None:
                continue  # the number moved away meanwhile; the TTL clears the parts
            await self.webhooks.queue_mo(*target, connector, source, dest, _joined(parts),
                                         int(total), False, conversation, self._ttl)
            count += 1
        return count

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self.give_up_overdue()
            except Exception as exc:  # Redis away: the parts wait in Redis
                log.error("mo_overdue_error", error=repr(exc))
            await asyncio.sleep(1.0)
