"""The deduplication state in packed arrays: 128-bit key fingerprints and the watermark each was last seen at.

A Python dict of ``str`` keys costs about 150 bytes per key; at one hour of 27k entries/s that is ~15 GB.
This table holds a key in 20 bytes per slot (two ``uint64`` halves of the fingerprint and a ``uint32``
watermark offset) and looks up or stores a whole fetch of keys with a few numpy operations.

Layout: ``buckets x 16`` slots; a fingerprint lives in one of two buckets, chosen from its two halves
through a random multiplier per table (so inputs cannot be aimed at one bucket), and a lookup compares
exactly those 32 slots. Nothing is ever deleted: a slot whose sighting lies more than a window behind the
watermark is free for the next insert, and since the watermark only grows, an expired sighting can never
make a later key a duplicate, so overwriting it changes no decision. An insert takes the bucket with more
free slots; when both are full of live sightings the table grows. ``maintain`` shrinks it when less than
``MIN_LOAD`` of it is live and moves the offset base before ``uint32`` milliseconds (49 days) run out.

Memory: 20 bytes per slot, with live sightings filling ``MIN_LOAD`` (0.4) to ~0.85 of the slots (a
rebuild aims at ``TARGET_LOAD``) — at most 50 bytes per key held, typically 24-33 — and never less than
``MIN_BUCKETS`` buckets (80 KiB). A rebuild briefly holds the old and the new arrays.
"""

from __future__ import annotations

import math
import secrets
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["NONE", "SightingTable"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

#: "No sighting": below any watermark (Kafka timestamps are milliseconds since 1970).
NONE: Final = -(1 << 62)
SLOTS: Final = 16
MIN_BUCKETS: Final = 256
TARGET_LOAD: Final = 0.55
MIN_LOAD: Final = 0.4
_AGE_MAX: Final = (1 << 32) - 1
_CHUNK: Final = 1 << 18  # keys per insert round trip (bounds the temporaries of a bulk load)


class SightingTable:
    """Fingerprint (hi, lo) -> watermark of its latest sighting; at most one slot per fingerprint."""

    __slots__ = ("_buckets", "_min", "_hi", "_lo", "_age", "_base", "_m1", "_m2", "rebuilds")

    def __init__(self, buckets: int = MIN_BUCKETS) -> None:
        """``buckets``: the initial and smallest size (tests use tiny tables to make them grow often)."""
        self._min = max(1, buckets)
        self._allocate(self._min)
        self._base: int | None = None  # watermark of age 1; age 0 marks an empty slot
        self.rebuilds = 0

    def _allocate(self, buckets: int) -> None:
        self._buckets = buckets
        self._hi = np.zeros((buckets, SLOTS), np.uint64)
        self._lo = np.zeros((buckets, SLOTS), np.uint64)
        self._age = np.zeros((buckets, SLOTS), np.uint32)
        self._m1 = np.uint64(secrets.randbits(64) | 1)
        self._m2 = np.uint64(secrets.randbits(64) | 1)

    @property
    def capacity(self) -> int:
        return self._buckets * SLOTS

    @property
    def nbytes(self) -> int:
        return self._hi.nbytes + self._lo.nbytes + self._age.nbytes

    def live(self, horizon: int) -> int:
        """Sightings at or after ``horizon`` (the keys that can still make a key a duplicate)."""
        return int(np.count_nonzero(self._age >= self._age_of(horizon)))

    # -- lookup -------------------------------------------------------------------------------------
    def lookup(self, hi: U64, lo: U64) -> tuple[I64, I64]:
        """Per key: its slot (flat index, -1 if absent) and the watermark it was last seen at (``NONE``)."""
        slot = np.full(len(hi), -1, np.int64)
        for bucket in self._bucket_pair(hi, lo):
            rows, cols = np.nonzero(np.take(self._hi, bucket, axis=0) == hi[:, None])
            if not len(rows):
                continue
            at = bucket[rows] * SLOTS + cols
            hit = (np.take(self._lo.reshape(-1), at) == lo[rows]) & (np.take(self._age.reshape(-1), at) > 0)
            slot[rows[hit]] = at[hit]
        seen = np.full(len(hi), NONE, np.int64)
        found = slot >= 0
        seen[found] = np.take(self._age.reshape(-1), slot[found]).astype(np.int64) + ((self._base or 0) - 1)
        return slot, seen

    def _bucket_pair(self, hi: U64, lo: U64) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        shift = np.uint64(32)
        b1 = ((hi * self._m1) >> shift) % np.uint64(self._buckets)
        b2 = ((lo * self._m2) >> shift) % np.uint64(self._buckets)
        return b1.astype(np.intp), b2.astype(np.intp)

    def _age_of(self, watermark: int) -> int:
        if self._base is None:
            return 1
        return min(max(watermark - self._base + 1, 1), _AGE_MAX)

    # -- store ----------------------------------------------------------------------------------------
    def store(self, hi: U64, lo: U64, seen: I64, slot: I64, horizon: int) -> None:
        """Record sightings of distinct fingerprints (``slot`` from ``lookup``); before ``horizon``: expired.

        A found fingerprint is updated where it lies; a new one takes a slot that is empty or holds a
        sighting before ``horizon``. Updates go first, so a slot a fingerprint of this call still needs
        is live again before any insert looks for room. Sightings that are already expired are not kept
        (so the offsets of one call span at most a window).
        """
        keep = seen >= horizon
        if not keep.all():
            hi, lo, seen, slot = hi[keep], lo[keep], seen[keep], slot[keep]
        if not len(hi):
            return
        if self._base is None:
            self._base = int(seen.min())
        elif int(seen.max()) - self._base + 1 > _AGE_MAX:
            self._rebuild(self._buckets, horizon, low=int(seen.min()))
            slot = self.lookup(hi, lo)[0]
        base = self._base
        found = slot >= 0
        self._age.reshape(-1)[slot[found]] = (seen[found] - (base - 1)).astype(np.uint32)
        new = ~found
        if new.any():
            self._insert(hi[new], lo[new], seen[new], horizon)

    def _insert(self, hi: U64, lo: U64, seen: I64, horizon: int) -> None:
        for start in range(0, len(hi), _CHUNK):
            part = slice(start, start + _CHUNK)
            h, low, s = hi[part], lo[part], seen[part]
            while (rest := self._insert_chunk(h, low, s, horizon)) is not None:
                # Both buckets of some keys are full of live sightings.
                self._grow(len(rest), horizon, low=int(s[rest].min()))
                h, low, s = h[rest], low[rest], s[rest]

    def _insert_chunk(self, hi: U64, lo: U64, seen: I64, horizon: int) -> npt.NDArray[np.intp] | None:
        """Insert new fingerprints; the indices of those that found no room (None: all placed)."""
        free_below = self._age_of(horizon)
        b1, b2 = self._bucket_pair(hi, lo)
        pending = np.arange(len(hi))
        ages = (seen - ((self._base or 0) - 1)).astype(np.uint32)
        while len(pending):
            p1, p2 = b1[pending], b2[pending]
            free1 = np.take(self._age, p1, axis=0) < free_below
            free2 = np.take(self._age, p2, axis=0) < free_below
            f1, f2 = _count_rows(free1), _count_rows(free2)
            # The freer bucket (a tie by a fingerprint bit); a bucket takes at most half its free slots per
            # round, so the keys it turns away can still pick their other bucket when it is freer.
            first_choice = (f1 > f2) | (f1 == f2) & (hi[pending] & np.uint64(1) == 0)
            room = np.where(first_choice, f1, f2)
            if not room.all():
                return pending
            choice = np.where(first_choice, p1, p2)
            order = np.argsort(choice)
            chosen = choice[order]
            starts = np.flatnonzero(np.r_[True, chosen[1:] != chosen[:-1]])
            rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            fits = rank < np.maximum(1, room[order] // 2)
            taking = order[fits]
            free = np.where(first_choice[taking][:, None], np.take(free1, taking, axis=0),
                            np.take(free2, taking, axis=0))
            col = np.argmax(free, axis=1)  # the first free slot; a bucket's n-th key skips n - 1 more
            skip = rank[fits]
            for step in range(1, int(skip.max()) + 1):
                again = np.flatnonzero(skip >= step)
                free.reshape(-1)[again * SLOTS + col[again]] = False
                col[again] = np.argmax(np.take(free, again, axis=0), axis=1)
            at = chosen[fits] * SLOTS + col
            placed = pending[taking]
            self._hi.reshape(-1)[at] = hi[placed]
            self._lo.reshape(-1)[at] = lo[placed]
            self._age.reshape(-1)[at] = ages[placed]
            pending = pending[order[~fits]]
        return None

    # -- size and base --------------------------------------------------------------------------------
    def maintain(self, horizon: int) -> None:
        """Shrink a table that is mostly expired; move the base while offsets still fit (seal time)."""
        live = self.live(horizon)
        if self._buckets > self._min and live < MIN_LOAD * self.capacity:
            self._rebuild(self._buckets_for(live), horizon)
        elif self._base is not None and horizon - self._base > _AGE_MAX // 2:
            self._rebuild(self._buckets, horizon)

    def _grow(self, extra: int, horizon: int, low: int) -> None:
        live = self.live(horizon)
        self._rebuild(max(self._buckets_for(live + extra), self._buckets * 3 // 2), horizon, low)

    def _buckets_for(self, keys: int) -> int:
        return max(self._min, math.ceil(keys / (TARGET_LOAD * SLOTS)))

    def reserve(self, keys: int) -> None:
        """Size an empty table for ``keys`` (a bulk load), instead of growing through every size."""
        if self._base is None and self._buckets_for(keys) > self._buckets:
            self._allocate(self._buckets_for(keys))

    def _rebuild(self, buckets: int, horizon: int, low: int | None = None) -> None:
        """Re-insert the live sightings into ``buckets`` fresh buckets (new multipliers, new base)."""
        keep = self._age >= self._age_of(horizon)
        hi, lo = self._hi[keep], self._lo[keep]
        seen = self._age[keep].astype(np.int64) + ((self._base or 0) - 1)
        self._allocate(buckets)
        lows = [int(seen.min())] if len(seen) else []
        self._base = min([*lows, *([low] if low is not None else [])], default=None)
        self.rebuilds += 1
        if len(hi):
            self._insert(hi, lo, seen, horizon)


def _count_rows(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.intp]:
    """True slots per row of a (n, 16) mask: bools are bytes of 0 or 1, so a popcount of 8 at a time."""
    counts: npt.NDArray[np.intp] = np.bitwise_count(mask.view(np.uint64)).sum(axis=1, dtype=np.intp)
    return counts
