"""A token bucket per channel, for the platform's documented write limits. Pure arithmetic.

This limits one process. Limits shared by many workers are a database concern (issue 7).
"""

from __future__ import annotations


class RateLimiter:
    def __init__(self, requests: int, per_seconds: float) -> None:
        self.capacity = float(requests)
        self.rate = requests / per_seconds
        self.tokens = float(requests)
        self.last: float | None = None

    def acquire(self, now: float) -> float:
        """Take a token if there is one (returns 0), else return the seconds until there is."""
        if self.last is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate
