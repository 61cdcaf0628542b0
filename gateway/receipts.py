"""Delivery receipts: SMSC deliver_sm → (message, part) → status machine.

Every part asks for its own receipt; the message is `delivered` when all its
parts are and takes the first failed part's state otherwise (Jasmin keeps only
the last part's receipt and Kannel asks only on the first; both lose failures).
A receipt that arrives before its submit_sm_resp is parked in Redis and
applied when the response is recorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway import logs, metrics
from gateway.config import ConnectorSettings
from gateway.store import Store
from protocols.receipt import merge_receipt_tlvs, normalize_message_id, parse_receipt
from protocols.smpp import CommandStatus, DeliverSm, Tag

log = logs.get("smsgw.receipts")

ESM_RECEIPT = 0x04  # esm_class bits 2-5 = 0001: SMSC delivery receipt (SMPP 3.4 §5.2.12)
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


class Receipts:
    def __init__(
        self,
        store: Store,
        connectors: dict[str, ConnectorSettings],
        on_mo: Callable[[str, DeliverSm], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.connectors = connectors
        self.on_mo = on_mo  # MO messages: gateway.webhooks.Webhooks.on_mo

    def normalize(self, connector: str, smsc_id: str) -> str:
        return normalize_message_id(smsc_id, self.connectors[connector].message_id_format)

    async def on_deliver(self, connector: str, pdu: DeliverSm) -> int:
        """Handle one deliver_sm from an SMSC; returns the command_status to answer with."""
        if not pdu.esm_class & ESM_RECEIPT:
            log.info("mo_received", connector=connector, source_addr=pdu.source_addr)
            if self.on_mo is not None:
                await self.on_mo(connector, pdu)  # durable before the deliver_sm_resp
            return CommandStatus.ESME_ROK
        state_tlv = pdu.get(Tag.MESSAGE_STATE)
        id_tlv = pdu.get(Tag.RECEIPTED_MESSAGE_ID)
        receipt = merge_receipt_tlvs(
            parse_receipt(pdu.short_message),
            id_tlv if isinstance(id_tlv, str) else None,
            state_tlv if isinstance(state_tlv, int) else None,
        )
        if receipt is None or not receipt.id:
            log.warning("receipt_unreadable", connector=connector)
            return CommandStatus.ESME_ROK
        metrics.RECEIPTS.labels(connector, receipt.stat).inc()
        state = STAT_TO_STATE.get(receipt.stat)
        if state is None:
            return CommandStatus.ESME_ROK
        payload = f"{state}|{receipt.err or ''}|{receipt.stat}".encode()
        smsc_id = self.normalize(connector, receipt.id)
        found = await self.store.correlate(connector, smsc_id, payload, EARLY_RECEIPT_TTL)
        if found is None:
            log.info("receipt_before_response", connector=connector, smsc_id=smsc_id)
        else:
            await self.apply(found[0], found[1], payload)
        return CommandStatus.ESME_ROK

    async def apply(self, message_id: str, part: int, payload: bytes) -> None:
        state, err, stat = payload.decode().split("|", 2)
        new = await self.store.part_final(message_id, part, state, err, f"{stat} err:{err}")
        if new:
            metrics.MESSAGES.labels(new).inc()
            log.info("final", message_id=message_id, status=new, stat=stat, err=err)
