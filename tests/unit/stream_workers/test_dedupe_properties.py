"""Property tests of ``WindowDeduper`` against a naive model that keeps every sighting.

The model reads the rule of ``stream_workers.dedupe`` literally over the whole log, with unbounded
memory. The deduper must decide the same for every record: with its sweeps of expired keys running
often, with late (out-of-order) record timestamps, and when a worker stops at any batch boundary and
the next one rebuilds the window from the log the way ``stream_workers.recovery.Recovery`` does
(the records from the first one stamped at or after ``last - window``, where ``last`` is the stamp of
the record before the committed offset).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_workers.dedupe import WindowDeduper


@dataclass(frozen=True)
class Record:
    """One Kafka record of a partition: its timestamp and the dedupe keys of its entries."""

    ts: int
    keys: tuple[str, ...]


def naive_decisions(log: list[Record], window: int) -> list[list[bool]]:
    """Per record and key: an earlier sighting of the key (duplicates included) within the window.

    A record's dedupe time is the partition's watermark, the largest timestamp up to and including
    it, so a late record is judged at the log's progress; a sighting counts when its dedupe time is
    at most ``window`` before this one's.
    """
    sightings: dict[str, list[int]] = {}
    watermark = 0
    out = []
    for rec in log:
        watermark = max(watermark, rec.ts)
        row = []
        for key in rec.keys:
            row.append(any(watermark - seen <= window for seen in sightings.get(key, [])))
            sightings.setdefault(key, []).append(watermark)
        out.append(row)
    return out


def feed(deduper: WindowDeduper, records: list[Record]) -> list[list[bool]]:
    return [[deduper.is_duplicate(key, rec.ts) for key in rec.keys] for rec in records]


def rebuild_start(log: list[Record], committed: int, window: int) -> int:
    """Where ``Recovery._rebuild`` starts reading: Kafka's offsets_for_times(last - window)."""
    horizon = max(0, log[committed - 1].ts - window)
    return next(i for i, rec in enumerate(log) if rec.ts >= horizon)


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[Record], int]:
    """A partition log: mostly rising stamps, some late ones, keys from a small set (many repeats)."""
    window = draw(st.integers(1, 60))
    keys = st.lists(st.integers(0, draw(st.integers(0, 11))), min_size=1, max_size=3)
    late = st.sampled_from([0, 0, 1, window // 2, window, window + 1, 3 * window])
    steps = draw(st.lists(st.tuples(st.integers(0, 30), late, keys), min_size=1, max_size=40))
    ts = draw(st.integers(0, 50))
    log = []
    for step, behind, ids in steps:
        ts += step
        log.append(Record(max(0, ts - behind), tuple(f"ag\x1fr{i}" for i in ids)))
    return log, window


@settings(max_examples=300, deadline=None)
@given(logs(), st.integers(1, 7))
def test_decides_like_the_naive_model_with_frequent_sweeps(case: tuple[list[Record], int], evict_every: int) -> None:
    log, window = case
    deduper = WindowDeduper(window, evict_every=evict_every)
    assert feed(deduper, log) == naive_decisions(log, window)


@settings(max_examples=300, deadline=None)
@given(logs(), st.data())
def test_any_batch_split_with_rebuilds_at_boundaries_decides_the_same(case: tuple[list[Record], int],
                                                                     data: st.DataObject) -> None:
    """Batches of any size; at each boundary the owner may change (the window rebuilt from the log)."""
    log, window = case
    want = naive_decisions(log, window)
    got: list[list[bool]] = []
    evict_every = data.draw(st.integers(1, 9), label="evict_every")
    deduper = WindowDeduper(window, evict_every=evict_every)
    pos = 0
    while pos < len(log):
        size = data.draw(st.integers(1, len(log) - pos), label="batch size")
        got += feed(deduper, log[pos:pos + size])
        pos += size
        if pos < len(log) and data.draw(st.booleans(), label="new owner"):
            deduper = WindowDeduper(window, evict_every=evict_every)
            feed(deduper, log[rebuild_start(log, pos, window):pos])
    assert got == want


@settings(max_examples=150, deadline=None)
@given(logs())
def test_a_sweep_keeps_exactly_the_keys_of_the_last_window(case: tuple[list[Record], int]) -> None:
    """Memory: after a sweep only the keys sighted within one window of the watermark stay."""
    log, window = case
    deduper = WindowDeduper(window, evict_every=1)
    feed(deduper, log)
    last_seen: dict[str, int] = {}
    watermark = 0
    for rec in log:
        watermark = max(watermark, rec.ts)
        last_seen.update(dict.fromkeys(rec.keys, watermark))
    assert len(deduper) == sum(watermark - seen <= window for seen in last_seen.values())


@settings(max_examples=150, deadline=None)
@given(logs(), st.integers(1, 7))
def test_sweeps_never_change_a_decision(case: tuple[list[Record], int], evict_every: int) -> None:
    """Whatever the rule, how often expired keys are swept must not matter (no model involved)."""
    log, window = case
    assert feed(WindowDeduper(window, evict_every=evict_every), log) == feed(
        WindowDeduper(window, evict_every=len(log) * 4 + 1), log)
