"""The one backoff of the gateway: a step doubling from `base` up to `cap`,
jittered so that many retrying peers spread out instead of arriving together.

Full jitter (uniform in [0, step]) is the AWS architecture blog's choice for
contended resources: part retries and SMSC reconnects. Equal jitter (uniform in
[step/2, step]) keeps a floor, for webhook receivers that should not be
retried almost at once after a failure.
"""

from __future__ import annotations

import random
from typing import Literal

# 2**62 times any sane base is past any cap; the bound only keeps the power finite.
_MAX_EXPONENT = 62


def backoff(exponent: int, base: float, cap: float, *,
            jitter: Literal["full", "equal"] = "full",
            rng: random.Random | None = None) -> float:
    """Seconds to wait: step = min(cap, base * 2**exponent), then jittered."""
    step = min(cap, base * 2 ** min(max(exponent, 0), _MAX_EXPONENT))
    uniform = (rng or random).uniform
    return uniform(step / 2, step) if jitter == "equal" else uniform(0, step)
