"""Per-key token buckets for the ingest rate limit (429 with Retry-After)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens per second refill, at most ``burst`` tokens.

    Memory is bounded: past ``max_keys`` buckets the oldest half (by creation) is dropped, which
    only ever makes a dropped key's bucket full again.
    """

    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; return 0.0 when allowed, else the seconds until it would be."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                for old in list(self._buckets)[: self.max_keys // 2]:
                    del self._buckets[old]
            bucket = self._buckets[key] = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= cost:
            bucket[0] = tokens - cost
            return 0.0
        bucket[0] = tokens
        return (cost - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> int:
        """``Retry-After`` header value (whole seconds, at least 1) for a wait."""
        return max(1, math.ceil(wait))


__all__ = ["TokenBuckets"]
