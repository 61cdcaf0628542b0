"""Delivery receipts: a connector's Receipt → (message, part) → status machine.

Every part asks for its own receipt; the message is `delivered` when all its
parts are and takes the first failed part's state otherwise (Jasmin keeps only
the last part's receipt and Kannel asks only on the first; both lose failures).
A receipt that arrives before its submit_sm_resp is parked in Redis and
applied when the response is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.core import logs, metrics
from gateway.core.config import ConnectorSettings, ResendRule, RetrySettings
from gateway.core.events import Receipt
from gateway.store import Store
from protocols.receipt import normalize_message_id

log = logs.get("smsgw.receipts")

# Receipt stat → the state of that part. Intermediate states (ENROUTE,
# ACCEPTD) change nothing: a final receipt follows them.
STAT_TO_STATE = {
    "DELIVRD": "delivered",
    "UNDELIV": "undelivered",
    "EXPIRED": "expired",
    "REJECTD": "rejected",
    "DELETED": "undelivered",
    "UNKNOWN": "undelivered",
}
EARLY_RECEIPT_TTL = 24 * 3600


def error_number(err: str) -> int | None:
    """Receipt `err` as a number: "011" is 11, "0x0B" is 11; None if neither."""
    err = err.strip()
    try:
        return int(err, 16) if err[:2].lower() == "0x" else int(err, 10)
    except ValueError:
        return None


def resend_wanted(rules: list[ResendRule], stat: str, err: str) -> bool:
    code = error_number(err)
    return any(r.stat == stat and (not r.err or code in r.err) for r in rules)


class Receipts:
    def __init__(
        self,
        store: Store,
        connectors: Mapping[str, ConnectorSettings],
        retry: RetrySettings,
    ) -> None:
        self.store = store
        self.connectors = connectors
        self.resend_on = retry.resend_on
        self._receipt_counters: dict[tuple[str, str], object] = {}

    # An SMSC may write ids one way in submit_sm_resp and another in receipts
    # (hex vs decimal); each side is normalised by its own setting (the
    # receipt side by the connector, into Receipt.smsc_id_key).
    def normalize_resp(self, connector: str, smsc_id: str) -> str:
        return normalize_message_id(smsc_id, self.connectors[connector].resp_id_format)

    async def on_receipts(self, receipts: Sequence[Receipt]) -> None:
        """Correlate and apply receipts from any connector (or park those that
        beat their submit response). Ordinary `delivered` ones are applied in
        one script call; those a resend rule may catch go one by one."""
        batch: list[tuple[str, str, bytes]] = []
        for receipt in receipts:
            item = self._prepare(receipt)
            if item is None:
                continue
            if item[2].startswith(b"delivered|"):
                batch.append(item)
            else:
                await self._apply_one(item)
        if batch:
            for result in await self.store.apply_receipts(batch, EARLY_RECEIPT_TTL):
                if result is not None and result[1] is not None:
                    metrics.count_status(result[1])

    def _prepare(self, receipt: Receipt) -> tuple[str, str, bytes] | None:
        """(connector, normalised id, "state|err|stat"), or None for a receipt
        that changes nothing (ENROUTE, ACCEPTD, ...)."""
        connector, stat = receipt.connector, receipt.status
        counter = self._receipt_counters.get((connector, stat))
        if counter is None:
            counter = self._receipt_counters[(connector, stat)] = metrics.RECEIPTS.labels(
                connector, stat
            )
        counter.inc()
        state = STAT_TO_STATE.get(stat)
        if state is None:
            return None
        return connector, receipt.smsc_id_key, f"{state}|{receipt.error}|{stat}".encode()

    async def _apply_one(self, item: tuple[str, str, bytes]) -> None:
        connector, smsc_id, payload = item
        # Correlate first: a failed receipt may be resent on a fallback connector
        # instead of ending the message (see `apply`).
        found = await self.store.correlate(connector, smsc_id, payload, EARLY_RECEIPT_TTL)
        if found is None:
            log.debug("receipt_before_response", connector=connector, smsc_id=smsc_id)
        else:
            await self.apply(found[0], found[1], payload)

    async def early(self, message_id: str, part: int, outcome: bytes) -> None:
        """A receipt that beat its submit_sm_resp, as the store returned it."""
        if outcome[:1] == b"=":
            if outcome[1:]:
                metrics.count_status(outcome[1:].decode())
            return
        await self.apply(message_id, part, outcome)

    async def apply(self, message_id: str, part: int, payload: bytes) -> None:
        state, err, stat = payload.decode().split("|", 2)
        if (
            state != "delivered"
            and resend_wanted(self.resend_on, stat, err)
            and await self._resend_on_fallback(message_id, part, stat, err)
        ):
            return
        new = await self.store.part_final(message_id, part, state, err, f"{stat} err:{err}")
        if new:
            metrics.count_status(new)
            log.debug("final", message_id=message_id, status=new, stat=stat, err=err)

    async def _resend_on_fallback(self, message_id: str, part: int, stat: str, err: str) -> bool:
        """A failed receipt the operator listed: send the part once more on the
        next connector of the route, if there is one and it was not tried yet."""
        current = await self.store.get(message_id)
        if current is None or current.connector is None:
            return False
        route = current.message.connectors
        hop = route.index(current.connector) + 1 if current.connector in route else len(route)
        if hop >= len(route):
            return False
        detail = f"{stat} err:{err}; resend part {part} on {route[hop]}"
        resent = await self.store.resend_part(current.message, part, hop, detail)
        if resent:
            log.info("resend_on_fallback", message_id=message_id, part=part,
                     to_connector=route[hop], stat=stat, err=err)
        return resent
