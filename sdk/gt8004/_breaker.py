"""Circuit breaker for the ingest endpoint: closed → open after N failed flushes → half-open probe."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts consecutive failed flushes; while open, nothing is sent until a probe is due.

    After ``threshold`` consecutive failures the breaker opens for ``cooldown`` seconds; then one
    probe batch is allowed (half-open). A successful probe closes it; a failed probe reopens it
    with the cooldown doubled, up to ``max_cooldown``.
    """

    def __init__(self, threshold: int = 3, cooldown: float = 10.0, max_cooldown: float = 120.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max(max_cooldown, cooldown)
        self._clock = clock
        self._failures = 0
        self._state: BreakerState = "closed"
        self._cooldown = cooldown
        self._open_until = 0.0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May a batch be sent now? Moves an open breaker whose cooldown is over to half-open."""
        if self._state == "open":
            if self._clock() < self._open_until:
                return False
            self._state = "half_open"
        return True

    def seconds_until_probe(self) -> float:
        if self._state != "open":
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def record_success(self) -> None:
        self._failures = 0
        self._state = "closed"
        self._cooldown = self.base_cooldown

    def record_failure(self) -> None:
        self._failures += 1
        if self._state == "half_open":
            self._cooldown = min(self._cooldown * 2, self.max_cooldown)
            self._open()
        elif self._failures >= self.threshold:
            self._open()

    def _open(self) -> None:
        self._state = "open"
        self._open_until = self._clock() + self._cooldown
