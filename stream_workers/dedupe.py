"""Deterministic deduplication within a time window of the partition's own log.

A key (``agent_id`` + ``request_id``, or ``app_id`` + ``report_id``) is a duplicate when the same key
appeared in an earlier record of the same partition at most ``window_ms`` before this record, where
a record's time is the partition's watermark at that record: the largest Kafka timestamp of the log
up to and including it (every record counts, also one whose entries were all invalid). Every sighting
counts, duplicates included, so the decision depends on that one window of the log only ("first
accepted" would depend on the whole history).

The watermark, not the record's own timestamp, is what makes the decision independent of memory
and restarts: Kafka timestamps are the gateways' clocks, so a record can be stamped a little
earlier than the one before it. Judged by its own stamp, such a late record would be a duplicate of
a sighting that a rebuild starting one window before the last stamp may not have. Judged at the
watermark, a sighting more than a window behind the watermark can never make a later record a
duplicate, so forgetting it changes nothing.

The decision never depends on wall clocks, crashes, batch boundaries, how the state is stored or how
often it is compacted, so a replay after a crash, a rebalance or a restart re-forms exactly the same
deduplicated batches.

**What is held.** Keys are 128-bit BLAKE2b fingerprints: with ``n`` keys held and ``m`` lookups, the
chance that any new key is taken for a duplicate is at most ``n·m / 2^128`` — for 10^8 keys in a window
and 10^8 lookups about 3·10^-23, far below the rate of undetected memory or disk errors; that is the
sense in which the deduplication is exact. The fingerprints and the watermark of each key's latest
sighting live in a ``SightingTable`` (packed numpy arrays, 20 bytes per slot): **at most 50 bytes per key
held, typically 24-33**, against ~150 for the dict of strings it replaces (worst case: a partition whose
live keys fell to 40 % of its table before the shrink at the next slice; plus per partition a minimum
table of 80 KiB and, with slice files on, the current slice's sightings at 18 bytes each). A whole fetch
is decided with a few numpy operations (``decide``): its keys are looked up at once, repeats inside the
fetch are ordered by sorting, and the new sightings are stored at once.

**Restarts.** Every ``slice_ms`` of watermark the finished slice's sightings are written once to disk
(``dedupe_store``); a new owner loads them and re-reads only the log after the newest one instead of the
whole window (``recovery``). The slices are only a record of the log: which one a restart may trust is
decided there, and without them the state is rebuilt from the log as before.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from stream_workers.dedupe_store import SliceMeta, SliceStore, record_digest
from stream_workers.dedupe_table import MIN_BUCKETS, NONE, SightingTable
from stream_workers.errors import StreamWorkerError

__all__ = ["NONE", "Fingerprint", "LogRecord", "WindowDeduper", "fingerprints"]

log = logging.getLogger(__name__)

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
#: One record of a partition as the deduper reads it: offset, Kafka timestamp (ms), value, its valid keys.
LogRecord = tuple[int, int, bytes | None, Sequence[str]]
Fingerprint = Callable[[Sequence[str]], tuple[U64, U64]]

#: Slices a file is kept beyond one window: a restart a little behind the newest commit still finds them.
KEEP_SLICES: Final = 2
_blake2b = hashlib.blake2b


def fingerprints(keys: Sequence[str]) -> tuple[U64, U64]:
    """The 128-bit BLAKE2b digests of ``keys`` as two ``uint64`` halves."""
    blob = b"".join([_blake2b(key.encode(), digest_size=16).digest() for key in keys])
    words = np.frombuffer(blob, "<u8").reshape(-1, 2).astype(np.uint64)
    return words[:, 0].copy(), words[:, 1].copy()


class WindowDeduper:
    """Decides duplicates for one partition, record batch by record batch, in log order."""

    def __init__(self, window_ms: int, *, store: SliceStore | None = None, slice_ms: int = 60_000,
                 floor: int = NONE, prev: str | None = None, fingerprint: Fingerprint = fingerprints,
                 buckets: int = MIN_BUCKETS) -> None:
        """``floor``: every record before the first one this deduper reads has a watermark at most this
        (``NONE``: none matters, the state starts with the log); ``prev``: digest of that record."""
        if not 0 < slice_ms <= 65_535:
            raise StreamWorkerError(f"slice of {slice_ms} ms: offsets in a slice are 16-bit milliseconds")
        self._window = window_ms
        self._slice_ms = slice_ms
        self._table = SightingTable(buckets)
        self._fingerprint = fingerprint
        self._store = store
        self.floor = floor
        self.watermark = NONE
        self.position: int | None = None  # the offset after the last record read
        # The open slice: its first offset and bucket, what it links to, its sightings so far.
        self._first: int | None = None
        self._bucket = 0
        self._next_floor, self._next_prev = floor, prev
        self._slice_floor, self._slice_prev = floor, prev
        self._parts: list[tuple[U64, U64, npt.NDArray[np.uint16]]] = []  # the open slice's, as written
        self._last: tuple[int, int, bytes | None] | None = None
        self._files: deque[SliceMeta] = deque()

    def __len__(self) -> int:
        """Keys seen within one window of the watermark (those that can still make a key a duplicate)."""
        return self._table.live(self.watermark - self._window)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held (the table and the open slice's sightings)."""
        return self._table.nbytes + sum(h.nbytes + lo.nbytes + o.nbytes for h, lo, o in self._parts)

    def complete(self) -> bool:
        """Whether every sighting not held is more than a window behind the watermark (a valid rebuild)."""
        return self.floor == NONE or self.floor + self._window < self.watermark

    # -- deciding ------------------------------------------------------------------------------------
    def decide(self, records: Sequence[LogRecord]) -> list[bool]:
        """Per key of ``records`` (in order): True for a duplicate. Records come in log order, once each."""
        if not records:
            return []
        if self.position is not None and records[0][0] < self.position:
            raise StreamWorkerError(f"record {records[0][0]} decided again (the deduper is at {self.position})")
        stamps = np.fromiter((r[1] for r in records), np.int64, len(records))
        counts = np.fromiter((len(r[3]) for r in records), np.intp, len(records))
        keys = [key for r in records for key in r[3]]
        marks = np.maximum.accumulate(np.maximum(stamps, self.watermark))
        horizon = int(marks[-1]) - self._window
        seen = np.repeat(marks, counts)
        hi, lo = self._fingerprint(keys) if keys else (np.empty(0, np.uint64), np.empty(0, np.uint64))
        duplicate = self._judge(hi, lo, seen, horizon)
        self._slices(records, marks, counts, hi, lo, seen)
        self.watermark = int(marks[-1])
        self.position = records[-1][0] + 1
        flags: list[bool] = duplicate.tolist()
        return flags

    def _judge(self, hi: U64, lo: U64, seen: I64, horizon: int) -> npt.NDArray[np.bool_]:
        """Decide every sighting against the table and the ones before it in the same call; store them."""
        if not len(hi):
            return np.zeros(0, np.bool_)
        slot, before = self._table.lookup(hi, lo)
        order, same = _repeats(hi, lo)
        before[order[1:][same]] = seen[order[:-1][same]]  # a repeat inside the call: its previous sighting
        duplicate: npt.NDArray[np.bool_] = seen - before <= self._window
        last = order[np.r_[~same, True]]  # each fingerprint's latest sighting is what the table keeps
        self._table.store(hi[last], lo[last], seen[last], slot[last], horizon)
        return duplicate

    # -- slices ----------------------------------------------------------------------------------------
    def _slices(self, records: Sequence[LogRecord], marks: I64, counts: npt.NDArray[np.intp], hi: U64, lo: U64,
                seen: I64) -> None:
        """Cut the records into slices of watermark time; seal (and write) each finished slice."""
        buckets = marks // self._slice_ms
        edges = np.flatnonzero(np.r_[self._first is None or buckets[0] != self._bucket, buckets[1:] != buckets[:-1]])
        ends = np.r_[0, np.cumsum(counts)]  # sightings of record i: ends[i]:ends[i + 1]
        taken = 0
        for i in edges.tolist():
            self._keep(hi, lo, seen, int(ends[taken]), int(ends[i]))
            last = records[i - 1][:3] if i else self._last
            if self._first is not None and last is not None:
                self._seal(self._first, records[i][0], int(marks[i - 1]) if i else self.watermark, last)
            self._first, self._bucket = records[i][0], int(buckets[i])
            self._slice_floor, self._slice_prev = self._next_floor, self._next_prev
            taken = i
        self._keep(hi, lo, seen, int(ends[taken]), len(hi))
        self._last = records[-1][:3]

    def _keep(self, hi: U64, lo: U64, seen: I64, start: int, stop: int) -> None:
        """Add sightings to the open slice (copies: 18 bytes each, not the whole fetch's arrays)."""
        if self._store is not None and stop > start:
            offsets = (seen[start:stop] - self._bucket * self._slice_ms).astype(np.uint16)
            self._parts.append((hi[start:stop].copy(), lo[start:stop].copy(), offsets))

    def _seal(self, first: int, end: int, wm_end: int, last: tuple[int, int, bytes | None]) -> None:
        """The open slice ``[first, end)`` is finished: write it, expire old files, resize the table."""
        digest = record_digest(*last)
        if self._store is not None:
            parts = self._parts
            self._parts = []
            hi = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.uint64)
            lo = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.uint64)
            offsets = np.concatenate([p[2] for p in parts]) if parts else np.empty(0, np.uint16)
            meta = self._store.write(first=first, end=end, floor=self._slice_floor, wm_end=wm_end,
                                     base=self._bucket * self._slice_ms, prev=self._slice_prev, last=digest,
                                     last_offset=last[0], hi=hi, lo=lo, offsets=offsets)
            if meta is not None:
                self._files.append(meta)
            expired = wm_end - self._window - KEEP_SLICES * self._slice_ms
            while self._files and self._files[0].wm_end < expired:
                self._store.delete(self._files.popleft().path)
        self._next_floor, self._next_prev = wm_end, digest
        self._table.maintain(wm_end - self._window)

    # -- restoring ---------------------------------------------------------------------------------------
    @classmethod
    def from_slices(cls, window_ms: int, store: SliceStore, chain: Sequence[SliceMeta], *, slice_ms: int = 60_000,
                    fingerprint: Fingerprint = fingerprints, buckets: int = MIN_BUCKETS) -> WindowDeduper:
        """The state after the chain's last record, from its files (``CorruptSlice`` if one is damaged).

        Sightings already more than a window behind the chain's watermark are skipped: they cannot
        make any later key a duplicate.
        """
        last = chain[-1]
        deduper = cls(window_ms, store=store, slice_ms=slice_ms, floor=chain[0].floor, prev=last.last,
                      fingerprint=fingerprint, buckets=buckets)
        deduper._next_floor = last.wm_end
        horizon = last.wm_end - window_ms
        deduper._table.reserve(sum(m.count for m in chain if m.wm_end >= horizon))
        for meta in chain:
            hi, lo, seen = store.load(meta)
            if meta.wm_end >= horizon and len(hi):
                deduper._judge(hi, lo, seen, horizon)
        deduper.watermark = last.wm_end
        deduper.position = last.end
        deduper._files.extend(chain)
        return deduper


def _repeats(hi: U64, lo: U64) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """A stable order that groups equal fingerprints, and which neighbours in it are equal."""
    order = np.argsort(hi, kind="stable")
    h, lo_sorted = hi[order], lo[order]
    equal_hi = h[1:] == h[:-1]
    same = equal_hi & (lo_sorted[1:] == lo_sorted[:-1])
    if (equal_hi & ~same).any():  # two fingerprints share a half: order by both (stable, so log order stays)
        order = np.lexsort((lo, hi))
        h, lo_sorted = hi[order], lo[order]
        same = (h[1:] == h[:-1]) & (lo_sorted[1:] == lo_sorted[:-1])
    return order, same
