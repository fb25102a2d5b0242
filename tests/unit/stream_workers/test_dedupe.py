"""The window deduper decides from record timestamps only, so a replay decides the same way."""

from __future__ import annotations

import random

from stream_workers.dedupe import WindowDeduper


def test_duplicate_within_window_and_new_after_it() -> None:
    d = WindowDeduper(window_ms=1000)
    assert not d.is_duplicate("a", 0)
    assert d.is_duplicate("a", 999)
    assert d.is_duplicate("a", 1999)  # within a window of the last sighting (999)
    assert not d.is_duplicate("a", 3000)  # more than a window after the last sighting: counted again
    assert d.is_duplicate("a", 3500)
    assert not d.is_duplicate("b", 3500)


def test_eviction_bounds_memory_without_changing_decisions() -> None:
    d = WindowDeduper(window_ms=100)
    for i in range(20_000):
        assert not d.is_duplicate(f"k{i}", i)
    assert len(d) < 4096 + 200


def test_replay_from_any_rebuild_point_decides_like_the_first_run() -> None:
    rng = random.Random(1)
    log = [(f"k{rng.randrange(3000)}", t * 10) for t in range(20_000)]
    window = 5_000
    first = WindowDeduper(window)
    decisions = [first.is_duplicate(k, ts) for k, ts in log]
    for cut in (1, 777, 10_000, 19_999):
        # A new owner rebuilds from the records within one window before the cut, then continues.
        start = next(i for i, (_, ts) in enumerate(log) if ts >= log[cut - 1][1] - window)
        replay = WindowDeduper(window)
        for k, ts in log[start:cut]:
            replay.is_duplicate(k, ts)
        assert [replay.is_duplicate(k, ts) for k, ts in log[cut:]] == decisions[cut:]
