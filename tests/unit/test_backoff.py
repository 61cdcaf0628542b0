"""Retry backoff of a part: OTP and transactional overtake marketing when the
SMSC only says it is busy."""

from __future__ import annotations

import random

from gateway.core.config import RetrySettings
from gateway.dispatch.dispatcher import PRIORITY, backoff


def test_throttled_otp_and_transactional_retry_within_the_base_delay() -> None:
    retry = RetrySettings()
    random.seed(7)
    for msg_class in ("otp", "transactional"):
        delays = [backoff(retry, attempt, True, PRIORITY[msg_class])
                  for attempt in range(1, 11) for _ in range(50)]
        assert max(delays) <= retry.base_delay
        assert min(delays) >= 0


def test_throttled_marketing_and_other_failures_back_off_exponentially() -> None:
    retry = RetrySettings()
    random.seed(7)
    for throttled, priority in ((True, PRIORITY["marketing"]), (False, PRIORITY["otp"])):
        late = [backoff(retry, 6, throttled, priority) for _ in range(200)]
        assert max(late) > 4 * retry.base_delay  # up to 0.2 s × 2⁶ = 12.8 s
        assert max(late) <= retry.max_delay
