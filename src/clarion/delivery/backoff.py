"""Retry timing. Pure."""

from __future__ import annotations

import random

BASE_SECONDS = 5.0
CAP_SECONDS = 3600.0
MAX_ATTEMPTS = 12


def backoff_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = BASE_SECONDS,
    cap: float = CAP_SECONDS,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt `attempt + 1`.

    Capped exponential backoff with "equal jitter" (half fixed, half random), so many deliveries
    failing together do not retry together; never sooner than the platform's Retry-After.
    """
    r = rng or random
    exp = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = exp / 2 + r.uniform(0, exp / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return float(delay)
