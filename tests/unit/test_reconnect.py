"""Reconnects after a carrier outage: jittered exponential backoff, so many
binds do not come back in lockstep (a reconnect storm)."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

from gateway.connectors.smpp import SmppConnector
from gateway.core.backoff import backoff
from gateway.core.config import ConnectorSettings

RECONNECT_CAP = ConnectorSettings(system_id="t").reconnect_max


def reconnect_delay(attempt: int, rng: random.Random) -> float:
    # What SmppConnector.reconnect_delay computes with the default settings.
    s = ConnectorSettings(system_id="t")
    return backoff(attempt, s.reconnect_base, s.reconnect_max, rng=rng)


def test_delays_grow_with_attempts_up_to_the_cap() -> None:
    rng = random.Random(1)
    for attempt in range(1, 30):
        ceiling = min(RECONNECT_CAP, 0.25 * 2 ** attempt)
        delays = [reconnect_delay(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # the whole interval is used


def test_binds_reconnecting_together_spread_out() -> None:
    # 100 binds lost at the same moment, each on its 5th attempt: their next
    # reconnects are spread over the interval, not stacked at one instant.
    rng = random.Random(2)
    delays = sorted(reconnect_delay(5, rng) for _ in range(100))
    assert statistics.pstdev(delays) > 2.0  # interval 0..8 s: uniform spread ~2.3 s
    busiest_second = max(sum(1 for d in delays if s <= d < s + 1) for s in range(8))
    assert busiest_second < 30



def test_a_window_of_throttled_answers_is_one_pause_not_an_escalation() -> None:
    """An SMSC at its per-second cap refuses a whole window at once: that is one
    pause, and only a refusal after the pause lengthens the next one."""

    async def scenario() -> list[int]:
        settings = ConnectorSettings(kind="smpp", system_id="t", password="p")
        connector = SmppConnector("t", settings, inbound=None)  # type: ignore[arg-type]
        hits = []
        for _ in range(200):
            connector._slow_down()
            hits.append(connector._throttle_hits)
        assert 0.025 <= connector._paused_until - time.monotonic() <= 0.05 * 2
        connector._paused_until = 0.0  # the pause is over, and the SMSC refuses again
        connector._slow_down()
        hits.append(connector._throttle_hits)
        return hits

    hits = asyncio.run(scenario())
    assert hits[:200] == [1] * 200 and hits[200] == 2
