"""Deterministic deduplication within a time window of the partition's own log.

A key (``agent_id`` + ``request_id``, or ``app_id`` + ``report_id``) is a duplicate when the same key
appeared in an earlier record of the same partition at most ``window_ms`` before this record, where
a record's time is the partition's watermark at that record: the largest Kafka timestamp of the log
up to and including it. Every sighting counts, duplicates included, so the decision depends on that
one window of the log only ("first accepted" would depend on the whole history).

The watermark, not the record's own timestamp, is what makes the decision independent of memory
and restarts: Kafka timestamps are the gateways' clocks, so a record can be stamped a little
earlier than the one before it. Judged by its own stamp, such a late record would be a duplicate of
a sighting that the sweep of expired keys, or a rebuild that starts one window before the last
stamp, may already have dropped. Judged at the watermark, a sighting more than a window behind the
watermark can never make a later record a duplicate, so dropping it changes nothing.

The decision never depends on wall clocks, crashes or batch boundaries, so a replay after a crash, a
rebalance or a restart re-forms exactly the same deduplicated batches. State is rebuilt on assignment
by re-reading the window of the log before the committed offset (``recovery.Recovery.rebuild``: the
records from the first one stamped at or after ``last stamp - window``; every record before those is
stamped, so watermarked, more than a window before the watermark). Memory is one dict entry per
distinct key seen within one window of the watermark.
"""

from __future__ import annotations

__all__ = ["WindowDeduper"]


class WindowDeduper:
    """Remembers the watermark each key was last seen at; forgets keys one window behind it."""

    __slots__ = ("_seen", "_window_ms", "_max_ts", "_ops", "_evict_every")

    def __init__(self, window_ms: int, *, evict_every: int = 4096) -> None:
        self._seen: dict[str, int] = {}
        self._window_ms = window_ms
        self._max_ts = 0  # the watermark: largest record timestamp so far
        self._ops = 0
        self._evict_every = evict_every  # calls between sweeps of expired keys (tests sweep often)

    def __len__(self) -> int:
        return len(self._seen)

    def is_duplicate(self, key: str, ts_ms: int) -> bool:
        """Return True for a duplicate; either way remember ``key`` as seen at the current watermark."""
        if ts_ms > self._max_ts:
            self._max_ts = ts_ms
        now = self._max_ts
        seen = self._seen.pop(key, None)  # re-inserted at the end: insertion order is watermark order
        self._seen[key] = now
        duplicate = seen is not None and now - seen <= self._window_ms
        self._ops += 1
        if self._ops >= self._evict_every:
            self._ops = 0
            self._evict()
        return duplicate

    def _evict(self) -> None:
        """Drop the keys last seen more than a window behind the watermark (the oldest come first)."""
        horizon = self._max_ts - self._window_ms
        seen = self._seen
        expired = []
        for key, ts in seen.items():
            if ts >= horizon:
                break
            expired.append(key)
        for key in expired:
            del seen[key]
