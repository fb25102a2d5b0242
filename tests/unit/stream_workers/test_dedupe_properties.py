"""Property tests of ``WindowDeduper`` against a naive model that keeps every sighting.

The model (``dedupe_model.naive_decisions``) reads the rule of ``stream_workers.dedupe`` literally over
the whole log, with unbounded memory. The deduper must decide the same for every record: fed in fetches
of any size, with late (out-of-order) timestamps and keyless records, in tables small enough to grow,
shrink and reuse expired slots all the time, with fingerprints that share halves, and when an owner
crashes at any point and the next one restores the state at the last commit — from the slice files the
crashed owner wrote (some of them for records it never committed) or from the log.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_workers.dedupe import LogRecord, WindowDeduper, fingerprints
from tests.unit.stream_workers.dedupe_model import ListLog, feed, naive_decisions, restored, store_in


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[LogRecord], int]:
    """A partition log: mostly rising stamps, some late ones, keys from a small set (many repeats)."""
    window = draw(st.integers(1, 60))
    keys = st.lists(st.integers(0, draw(st.sampled_from([0, 2, 11, 1000]))), min_size=0, max_size=3)
    late = st.sampled_from([0, 0, 1, window // 2, window, window + 1, 3 * window])
    steps = draw(st.lists(st.tuples(st.integers(0, 30), late, keys), min_size=1, max_size=40))
    ts = draw(st.integers(0, 50))
    log: list[LogRecord] = []
    for offset, (step, behind, ids) in enumerate(steps):
        ts += step
        log.append((offset, max(0, ts - behind), f"v{offset}".encode(), tuple(f"ag\x1fr{i}" for i in ids)))
    return log, window


def weak(keys: list[str] | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys, distinct fingerprints, but many sharing one half (and (0, 0), an empty slot's)."""
    ids = [int(k.rsplit("r", 1)[1]) for k in keys]
    return np.array([i % 3 for i in ids], np.uint64), np.array([i // 3 for i in ids], np.uint64)


def chunks(data: st.DataObject, n: int) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos < n:
        size = data.draw(st.integers(1, n - pos), label="fetch size")
        out.append((pos, pos + size))
        pos += size
    return out


@settings(max_examples=300, deadline=None)
@given(logs(), st.data())
def test_decides_like_the_naive_model_in_fetches_of_any_size(case: tuple[list[LogRecord], int],
                                                              data: st.DataObject) -> None:
    log, window = case
    fingerprint = data.draw(st.sampled_from([fingerprints, weak]), label="fingerprint")
    deduper = WindowDeduper(window, buckets=data.draw(st.sampled_from([1, 2, 256])), fingerprint=fingerprint,
                            slice_ms=data.draw(st.integers(1, 40), label="slice ms"))
    got = []
    for start, end in chunks(data, len(log)):
        got += feed(deduper, log[start:end])
    assert got == naive_decisions(log, window)


@settings(max_examples=300, deadline=None)
@given(logs(), st.data())
def test_a_crash_anywhere_then_a_restore_at_the_last_commit_decides_the_same(case: tuple[list[LogRecord], int],
                                                                           data: st.DataObject) -> None:
    """Each owner decides fetches; it may crash having decided past its last commit (and written slice
    files for records it never committed); the next restores at that commit and decides them again."""
    log, window = case
    want = naive_decisions(log, window)
    slice_ms = data.draw(st.integers(1, 40), label="slice ms")
    files = data.draw(st.booleans(), label="slice files")
    with tempfile.TemporaryDirectory() as tmp:
        store = store_in(Path(tmp)) if files else None
        source = ListLog(log, chunk=data.draw(st.integers(1, 5), label="read chunk"))
        owner = restored(source, None, window, slice_ms, store)
        pos = commit = 0
        while pos < len(log):
            size = data.draw(st.integers(1, len(log) - pos), label="fetch size")
            assert feed(owner, log[pos:pos + size]) == want[pos:pos + size]
            pos += size
            if pos < len(log) and data.draw(st.booleans(), label="crash"):
                commit = data.draw(st.integers(commit, pos), label="last commit")
                if store is not None:
                    damage(store.directory, data)
                owner = restored(source, commit, window, slice_ms, store)
                pos = commit


def damage(directory: Path, data: st.DataObject) -> None:
    """Lose or damage some slice files (a disk error, a partial copy): the restore must notice."""
    files = sorted(directory.glob("*.slice"))
    how = data.draw(st.sampled_from(["intact", "intact", "lose", "corrupt"]), label="files")
    if not files or how == "intact":
        return
    victims = data.draw(st.lists(st.sampled_from(files), min_size=1, unique=True), label="victims")
    for path in victims:
        if how == "lose":
            path.unlink()
        else:
            raw = bytearray(path.read_bytes())
            raw[data.draw(st.integers(0, len(raw) - 1), label="byte")] ^= 0x40
            path.write_bytes(bytes(raw))


@settings(max_examples=150, deadline=None)
@given(logs(), st.sampled_from([1, 256]))
def test_len_is_the_keys_seen_within_a_window_of_the_watermark(case: tuple[list[LogRecord], int],
                                                                buckets: int) -> None:
    """Memory: what the table counts as live is exactly the keys sighted within one window."""
    log, window = case
    deduper = WindowDeduper(window, buckets=buckets, slice_ms=7)
    last_seen: dict[str, int] = {}
    watermark = None
    for rec in log:
        feed(deduper, [rec])
        watermark = rec[1] if watermark is None else max(watermark, rec[1])
        last_seen.update(dict.fromkeys(rec[3], watermark))
        assert len(deduper) == sum(watermark - seen <= window for seen in last_seen.values())


@settings(max_examples=150, deadline=None)
@given(logs(), st.data())
def test_table_size_and_slicing_never_change_a_decision(case: tuple[list[LogRecord], int],
                                                        data: st.DataObject) -> None:
    """Whatever the rule, how the state is stored must not matter (no model involved)."""
    log, window = case
    tiny = WindowDeduper(window, buckets=1, slice_ms=data.draw(st.integers(1, 9)), fingerprint=weak)
    roomy = WindowDeduper(window, buckets=4096, slice_ms=60_000)
    tiny_got = []
    for start, end in chunks(data, len(log)):
        tiny_got += feed(tiny, log[start:end])
    assert tiny_got == feed(roomy, log)
