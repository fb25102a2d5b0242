"""Repeated client errors once per window, with a count, instead of hundreds of lines a second.

While Kafka is down, every aiokafka client of ``meterline up`` (gateway producer, key registry,
worker consumers and producers) logs ``Unable connect to node with id 1`` and its kin on every
retry: about 190 ERROR lines a second here, which buried the lines that say what happens (the
supervisor restarting Kafka). ``RepeatLimiter`` lets the first record of each kind through, holds
back the same kind for ``window`` seconds, and notes on the next one how many it held back. No
kind of error disappears: each still shows at least once per window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["RepeatLimiter"]


class RepeatLimiter(logging.Filter):
    """A handler filter for the loggers named by ``prefixes`` (and their children)."""

    def __init__(self, window: float = 10.0, prefixes: tuple[str, ...] = ("aiokafka",),
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.prefixes = prefixes
        self.clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, int, str], tuple[float, int]] = {}  # kind -> (shown at, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            shown_at, held = self._kinds.get(kind, (None, 0))
            if shown_at is not None and now - shown_at < self.window:
                self._kinds[kind] = (shown_at, held + 1)
                return False
            self._kinds[kind] = (now, 0)
        if held:
            record.msg = f"{record.msg} [and {held} more like this, not shown]"
        return True
