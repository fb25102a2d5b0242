"""The window deduper decides from the log only; its state stays small; slice files restore it safely."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from meterline import faults
from stream_workers.dedupe import LogRecord, WindowDeduper
from stream_workers.dedupe_store import CorruptSlice, SliceMeta, record_digest, select_chain
from stream_workers.dedupe_table import MIN_BUCKETS, NONE, SLOTS, SightingTable
from stream_workers.errors import StreamWorkerError
from tests.unit.stream_workers.dedupe_model import ListLog, feed, naive_decisions, restored, store_in


def rec(offset: int, ts: int, *keys: str) -> LogRecord:
    return (offset, ts, f"v{offset}".encode(), keys)


def test_duplicate_within_window_and_new_after_it() -> None:
    d = WindowDeduper(window_ms=1000)
    assert feed(d, [rec(0, 0, "a"), rec(1, 999, "a"), rec(2, 1999, "a")]) == [[False], [True], [True]]
    assert feed(d, [rec(3, 3000, "a", "a", "b"), rec(4, 3500, "a", "b")]) == [[False, True, False], [True, True]]


def test_a_record_without_valid_keys_still_moves_the_watermark() -> None:
    """The rule counts every record's stamp; a rebuild starts from the last record's stamp, keyed or not."""
    d = WindowDeduper(window_ms=1000)
    assert feed(d, [rec(0, 0, "a"), rec(1, 5000), rec(2, 100, "a")]) == [[False], [], [False]]


def test_a_record_decided_twice_is_a_bug() -> None:
    d = WindowDeduper(window_ms=1000)
    d.decide([rec(0, 0, "a"), rec(1, 0, "b")])
    with pytest.raises(StreamWorkerError, match="decided again"):
        d.decide([rec(1, 0, "b")])


def test_memory_follows_the_keys_of_one_window() -> None:
    """Keys expire in place; a table grown for a burst shrinks at the next slice once the burst expired."""
    d = WindowDeduper(window_ms=10_000, slice_ms=1000)
    burst = [rec(i, i // 100, *(f"burst-{i}-{j}" for j in range(10))) for i in range(10_000)]  # 100k keys in 100 ms
    d.decide(burst)
    assert len(d) == 100_000
    assert d.nbytes <= 50 * len(d) + 18 * 100_000  # the table, and the open slice's sightings
    trickle = [rec(10_000 + i, 200 + i, f"k{i}") for i in range(30_000)]  # 1 key per ms for 30 s
    for start in range(0, len(trickle), 1000):
        d.decide(trickle[start:start + 1000])
    assert len(d) == 10_001
    assert d.nbytes <= 50 * len(d)


def test_the_table_holds_a_key_in_at_most_fifty_bytes_at_its_fullest_and_emptiest() -> None:
    rng = np.random.default_rng(7)
    table = SightingTable()
    n = 200_000
    hi, lo = rng.integers(0, 2**63, n, dtype=np.uint64), rng.integers(0, 2**63, n, dtype=np.uint64)
    seen = np.arange(n, dtype=np.int64)
    table.store(hi, lo, seen, np.full(n, -1, np.int64), horizon=0)
    assert table.live(0) == n
    assert table.nbytes / n <= 50
    slot, found = table.lookup(hi, lo)
    assert (slot >= 0).all() and (found == seen).all()
    table.maintain(horizon=n - n * 2 // 5)  # 40 % still live: no shrink yet, the worst case
    assert table.nbytes / table.live(n - n * 2 // 5) <= 50
    table.maintain(horizon=n - 1000)
    assert table.capacity <= max(MIN_BUCKETS * SLOTS, 2 * 1000 / 0.55)
    slot, found = table.lookup(hi[-1000:], lo[-1000:])
    assert (found == seen[-1000:]).all()
    assert (table.lookup(hi[:10], lo[:10])[1] < n - 1000).all()  # expired ones may stay or go, never revive


def test_an_empty_slot_is_not_the_fingerprint_zero() -> None:
    table = SightingTable(buckets=1)
    zero = np.zeros(1, np.uint64)
    assert table.lookup(zero, zero)[1][0] == NONE
    table.store(zero, zero, np.array([5]), np.array([-1]), horizon=0)
    assert table.lookup(zero, zero)[1][0] == 5


# -- slice files ----------------------------------------------------------------------------------------

def traffic(n: int, step_ms: int = 10) -> list[LogRecord]:
    """One new key per record, a repeat of a key from 4 s earlier every third record."""
    return [rec(i, i * step_ms, f"k{i}", *([f"k{i - 400}"] if i % 3 == 0 and i >= 400 else [])) for i in range(n)]


def run_owner(log: list[LogRecord], upto: int, directory: Path, window: int = 5000, slice_ms: int = 500) -> None:
    owner = WindowDeduper(window, store=store_in(directory), slice_ms=slice_ms)
    for start in range(0, upto, 37):
        owner.decide(log[start:min(start + 37, upto)])


def decisions_after(deduper: WindowDeduper, log: list[LogRecord], start: int) -> list[list[bool]]:
    return feed(deduper, log[start:])


def test_a_restart_loads_the_slices_and_re_reads_one_slice_of_the_log(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    log = traffic(3000)
    want = naive_decisions(log, 5000)
    run_owner(log, 2000, tmp_path)
    caplog.set_level(logging.INFO, "stream_workers")
    from_files = ListLog(log, chunk=50)
    d = restored(from_files, 2000, 5000, 500, store_in(tmp_path))
    assert "restored dedupe state from" in caplog.text
    assert decisions_after(d, log, 2000) == want[2000:]
    from_log = ListLog(log, chunk=50)
    d = restored(from_log, 2000, 5000, 500, None)
    assert decisions_after(d, log, 2000) == want[2000:]
    assert from_log.records_read() >= 500  # the window: 5 s of 10 ms records
    assert from_files.records_read() <= 50 + 2  # at most one slice (500 ms), the anchor, the last record


def test_slices_written_beyond_the_commit_are_not_trusted_and_would_double_drop(tmp_path: Path) -> None:
    """The owner died after sealing slices of records it never committed; negative control: trusting them."""
    log = traffic(3000)
    want = naive_decisions(log, 5000)
    run_owner(log, 2600, tmp_path)  # slices up to ~2500 written, commit at 2000
    assert max(m.end for m in store_in(tmp_path).scan()) > 2000
    d = restored(ListLog(log), 2000, 5000, 500, store_in(tmp_path))
    assert decisions_after(d, log, 2000) == want[2000:]
    run_owner(log, 2600, tmp_path)
    with faults.arm("dedupe.trust_uncommitted_slices", "on"):
        d = restored(ListLog(log), 2000, 5000, 500, store_in(tmp_path))
    wrong = decisions_after(d, log, 2000)
    # Every new key of the records the dead owner had sliced is now a "duplicate" of itself: lost.
    flipped = [a and not b for got, exp in zip(wrong, want[2000:], strict=True) for a, b in zip(got, exp, strict=True)]
    assert sum(flipped) >= 400


@pytest.mark.parametrize("damage", ["missing", "corrupt", "truncated", "another log", "a gap"])
def test_untrusted_files_fall_back_to_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    log = traffic(3000)
    want = naive_decisions(log, 5000)
    run_owner(log, 2000, tmp_path)
    files = sorted(tmp_path.glob("*.slice"))
    if damage == "missing":
        for path in files:
            path.unlink()
    elif damage in ("corrupt", "truncated"):
        raw = files[-3].read_bytes()
        files[-3].write_bytes(raw[:-1] if damage == "truncated" else raw[:100] + b"\x00" + raw[101:])
    elif damage == "another log":  # a topic deleted and created again: same offsets, other records
        log = [(o, ts, b"other " + (v or b""), keys) for o, ts, v, keys in log]
        want = naive_decisions(log, 5000)
    else:
        files[len(files) // 2].unlink()
    caplog.set_level(logging.INFO, "stream_workers")
    d = restored(ListLog(log), 2000, 5000, 500, store_in(tmp_path))
    assert "re-reading the window of the log instead" in caplog.text
    assert "restored dedupe state from" not in caplog.text
    assert decisions_after(d, log, 2000) == want[2000:]


def test_a_new_group_position_clears_the_partitions_files(tmp_path: Path) -> None:
    run_owner(traffic(1000), 1000, tmp_path)
    assert list(tmp_path.glob("*.slice"))
    restored(ListLog(traffic(1000)), None, 5000, 500, store_in(tmp_path))
    assert not list(tmp_path.glob("*.slice"))


def test_expired_slice_files_are_deleted(tmp_path: Path) -> None:
    run_owner(traffic(6000), 6000, tmp_path)  # 60 s of log, a 5 s window, 0.5 s slices
    metas = store_in(tmp_path).scan()
    assert 10 <= len(metas) <= 5000 // 500 + 2 + 2
    assert min(m.first for m in metas) > 0


def test_a_slice_file_round_trips_and_fires_its_fault_point(tmp_path: Path) -> None:
    store = store_in(tmp_path / "p")
    written: list[dict[str, object]] = []
    hi, lo = np.array([1, 2**64 - 1], np.uint64), np.array([3, 4], np.uint64)
    with faults.arm("dedupe.after_slice_write", lambda **ctx: written.append(ctx)):
        meta = store.write(first=10, end=20, floor=NONE, wm_end=123_456, base=120_000, prev=None, last="ab",
                           last_offset=19, hi=hi, lo=lo, offsets=np.array([0, 3456], np.uint16))
    assert meta is not None and written == [{"slice": "t.requests/0/10-20"}]
    [scanned] = store.scan()
    assert scanned == meta
    got_hi, got_lo, seen = store.load(scanned)
    assert (got_hi == hi).all() and (got_lo == lo).all() and seen.tolist() == [120_000, 123_456]
    (tmp_path / "p" / ".00000000000000000020-00000000000000000030.slice.1.ab.tmp").write_bytes(b"half")
    (tmp_path / "p" / "00000000000000000030-00000000000000000040.slice").write_bytes(b"not a slice")
    assert store.scan() == [meta]
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [meta.path.name]
    data = meta.path.read_bytes()
    meta.path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # a changed last byte, whatever it was
    with pytest.raises(CorruptSlice, match="checksum"):
        store.load(meta)


def test_files_of_another_partition_or_group_are_ignored(tmp_path: Path) -> None:
    run_owner(traffic(1000), 1000, tmp_path)
    from stream_workers.dedupe_store import SliceStore

    assert SliceStore(tmp_path, "g.process", "t.requests", 1).scan() == []
    assert SliceStore(tmp_path, "other.process", "t.requests", 0).scan() == []


def meta(first: int, end: int, prev: str | None, last: str, floor: int = 0, wm_end: int = 0) -> SliceMeta:
    return SliceMeta(Path(f"{first}-{end}"), first, end, floor, wm_end, 0, 0, prev, last, end - 1, "g", "t", 0)


def test_the_chain_ends_at_the_commit_and_follows_the_digests_back() -> None:
    metas = [meta(0, 10, None, "a", floor=NONE, wm_end=100), meta(10, 20, "a", "b", floor=100, wm_end=200),
             meta(15, 20, None, "b", floor=50, wm_end=200),  # a rebuild's first slice: same end, shorter
             meta(20, 30, "b", "c", floor=200, wm_end=300), meta(20, 30, "x", "c", floor=200, wm_end=300)]
    assert [m.path.name for m in select_chain(metas, 25, 1000, 250)] == ["0-10", "10-20"]
    assert [m.path.name for m in select_chain(metas, 30, 1000, 300)][-2:] == ["10-20", "20-30"]
    assert [m.path.name for m in select_chain(metas, 30, 150, 300)] == ["10-20", "20-30"]  # a window back: enough
    assert select_chain(metas, 9, 1000, 100) == []
    assert select_chain(metas, 9, 1000, 100, trust_uncommitted=True)[-1].end == 30


def test_a_record_digest_names_offset_stamp_and_value() -> None:
    assert record_digest(1, 2, b"x") != record_digest(1, 3, b"x") != record_digest(2, 2, b"x")
    assert record_digest(1, 2, None) == record_digest(1, 2, b"")
