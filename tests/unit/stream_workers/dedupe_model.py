"""The rule of ``stream_workers.dedupe`` read literally (unbounded memory), and a partition log in a list.

Shared by the deduplication unit tests: ``naive_decisions`` is the model every structure is checked
against; ``ListLog`` is the ``recovery.LogSource`` a restore reads, over a list instead of Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

from stream_workers.dedupe import LogRecord, WindowDeduper
from stream_workers.dedupe_store import SliceStore
from stream_workers.recovery import restore


def naive_decisions(log: Sequence[LogRecord], window: int) -> list[list[bool]]:
    """Per record and key: an earlier sighting of the key (duplicates included) within the window.

    A record's dedupe time is the partition's watermark, the largest timestamp up to and including
    it (keyless records count too), so a late record is judged at the log's progress; a sighting counts
    when its dedupe time is at most ``window`` before this one's.
    """
    sightings: dict[str, list[int]] = {}
    watermark: int | None = None
    out = []
    for _offset, ts, _value, keys in log:
        watermark = ts if watermark is None else max(watermark, ts)
        row = []
        for key in keys:
            row.append(any(watermark - seen <= window for seen in sightings.get(key, [])))
            sightings.setdefault(key, []).append(watermark)
        out.append(row)
    return out


def feed(deduper: WindowDeduper, records: Sequence[LogRecord]) -> list[list[bool]]:
    """``deduper.decide`` over ``records``, regrouped per record."""
    flat = deduper.decide(records)
    out, at = [], 0
    for rec in records:
        out.append(flat[at:at + len(rec[3])])
        at += len(rec[3])
    return out


class ListLog:
    """A partition log in a list (record i has offset i); ``first``: records before it were deleted."""

    def __init__(self, log: Sequence[LogRecord], first: int = 0, chunk: int = 3) -> None:
        self.log, self.first, self.chunk = log, first, chunk
        self.read_ranges: list[tuple[int, int]] = []

    async def beginning(self) -> int:
        return self.first

    async def offset_for_time(self, timestamp: int) -> int | None:
        return next((r[0] for r in self.log[self.first:] if r[1] >= timestamp), None)

    async def read(self, start: int, end: int) -> AsyncGenerator[list[LogRecord], None]:
        self.read_ranges.append((start, end))
        records = self.log[max(start, self.first):end]
        for i in range(0, len(records), self.chunk):
            yield list(records[i:i + self.chunk])

    def records_read(self) -> int:
        """Records re-read by restores (the anchor reads of one record included)."""
        return sum(max(0, min(e, len(self.log)) - max(s, self.first)) for s, e in self.read_ranges)


def restored(log: ListLog, committed: int | None, window: int, slice_ms: int, store: SliceStore | None,
             ) -> WindowDeduper:
    return asyncio.run(restore(log, committed, window_ms=window, slice_ms=slice_ms, store=store))


def store_in(directory: Path) -> SliceStore:
    return SliceStore(directory, "g.process", "t.requests", 0)
