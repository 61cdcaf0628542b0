"""Retry backoff of a part: OTP and transactional overtake marketing when the
SMSC only says it is busy."""

from __future__ import annotations

import random

from gateway.core.backoff import backoff
from gateway.core.config import RetrySettings
from gateway.dispatch.dispatcher import PRIORITY, retry_delay


def test_throttled_otp_and_transactional_retry_within_the_base_delay() -> None:
    retry = RetrySettings()
    random.seed(7)
    for msg_class in ("otp", "transactional"):
        delays = [retry_delay(retry, attempt, True, PRIORITY[msg_class])
                  for attempt in range(1, 11) for _ in range(50)]
        assert max(delays) <= retry.base_delay
        assert min(delays) >= 0


def test_throttled_marketing_and_other_failures_back_off_exponentially() -> None:
    retry = RetrySettings()
    random.seed(7)
    for throttled, priority in ((True, PRIORITY["marketing"]), (False, PRIORITY["otp"])):
        late = [retry_delay(retry, 6, throttled, priority) for _ in range(200)]
        assert max(late) > 4 * retry.base_delay  # up to 0.2 s × 2⁶ = 12.8 s
        assert max(late) <= retry.max_delay


def test_full_jitter_spans_zero_to_the_doubled_step_up_to_the_cap() -> None:
    rng = random.Random(3)
    for exponent in range(0, 12):
        step = min(30.0, 0.25 * 2 ** exponent)
        delays = [backoff(exponent, 0.25, 30.0, rng=rng) for _ in range(300)]
        assert all(0 <= d <= step for d in delays)
        assert min(delays) < step * 0.2 and max(delays) > step * 0.8


def test_equal_jitter_keeps_half_the_step_as_a_floor() -> None:
    # The webhook retry: attempt n waits within [step/2, step], step = base * 2**(n-1).
    rng = random.Random(4)
    for attempt, step in ((1, 2.0), (2, 4.0), (12, 3600.0), (500, 3600.0)):
        delays = [backoff(attempt - 1, 2.0, 3600.0, jitter="equal", rng=rng)
                  for _ in range(300)]
        assert all(step / 2 <= d <= step for d in delays)
