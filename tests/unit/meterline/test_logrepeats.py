"""Repeated client errors show once per window with a count; nothing else is held back."""

from __future__ import annotations

import logging

from meterline.local.logrepeats import RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_the_same_error_shows_once_per_window_then_with_a_count() -> None:
    clock = Clock()
    limiter = RepeatLimiter(window=10, clock=clock)
    template = "Unable connect to node with id %s: %s"
    shown = [r for r in (_record("aiokafka", template, 1, f"try {i}") for i in range(200)) if limiter.filter(r)]
    assert [r.getMessage() for r in shown] == ["Unable connect to node with id 1: try 0"]
    clock.now = 10.0
    later = _record("aiokafka", template, 1, "try 200")
    assert limiter.filter(later)
    assert later.getMessage() == "Unable connect to node with id 1: try 200 [and 199 more like this, not shown]"


def test_other_kinds_and_other_loggers_pass() -> None:
    limiter = RepeatLimiter(window=10, clock=Clock())
    assert limiter.filter(_record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s", 1, "x"))
    assert limiter.filter(_record("aiokafka", "Unable to update metadata from %s", [1]))
    assert limiter.filter(_record("aiokafka", "Unable to update metadata from %s", [1], level=logging.WARNING))
    for _ in range(3):  # our own lines are never held back
        assert limiter.filter(_record("stream_workers.processor", "fetch failed: %s", "x"))
