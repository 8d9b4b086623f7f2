"""A token bucket for one-by-one events: bursts up to ``burst``, ``rate`` per second sustained; what it refuses
is counted, never silently lost."""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst if burst is not None else rate, clock
        self.tokens = self.burst
        self.last = clock()
        self.refused = 0

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.refused += 1
        return False
