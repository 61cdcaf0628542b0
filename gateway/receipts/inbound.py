"""What a connector received, to the stage that owns it: receipts to
gateway.receipts.dlr, MO to gateway.receipts.mo. Everything is stored before
this returns, so a connector acknowledges only what is durable."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.events import Event, Mo, Receipt
from gateway.receipts.dlr import Receipts
from gateway.receipts.mo import MoRouter


class Inbound:
    def __init__(self, receipts: Receipts, mo: MoRouter) -> None:
        self.receipts = receipts
        self.mo = mo

    async def __call__(self, events: Sequence[Event]) -> list[bool]:
        receipts: list[Receipt] = []
        for event in events:
            if isinstance(event, Mo):
                await self.mo.on_mo(event)
            else:
                receipts.append(event)
        if receipts:
            await self.receipts.on_receipts(receipts)
        return [True] * len(events)
