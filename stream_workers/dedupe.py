"""Deterministic deduplication within a time window of the partition's own log.

A key (``agent_id`` + ``request_id``, or ``app_id`` + ``report_id``) is a duplicate when the same key
appeared in an earlier record of the same partition whose Kafka timestamp lies at most ``window_ms``
before this record's timestamp (every sighting counts, duplicates included, so the decision depends on
that one window of the log only — "first accepted" would depend on the whole history). It never
depends on wall clocks, crashes or batch boundaries, so a replay after a crash, a rebalance or a restart
re-forms exactly the same deduplicated batches. State is rebuilt on assignment by re-reading the
window of the log before the committed offset (``recovery.Recovery.rebuild``); memory is one dict entry per
distinct key seen within the window.
"""

from __future__ import annotations

__all__ = ["WindowDeduper"]


class WindowDeduper:
    """Remembers the last record timestamp each key was seen at; forgets keys one window later."""

    __slots__ = ("_seen", "_window_ms", "_max_ts", "_ops")

    def __init__(self, window_ms: int) -> None:
        self._seen: dict[str, int] = {}
        self._window_ms = window_ms
        self._max_ts = 0
        self._ops = 0

    def __len__(self) -> int:
        return len(self._seen)

    def is_duplicate(self, key: str, ts_ms: int) -> bool:
        """Return True for a duplicate; either way remember ``key`` as seen at ``ts_ms``."""
        seen = self._seen.pop(key, None)  # re-inserted at the end: insertion order stays ~ time order
        self._seen[key] = ts_ms if seen is None else max(seen, ts_ms)
        duplicate = seen is not None and ts_ms - seen <= self._window_ms
        if ts_ms > self._max_ts:
            self._max_ts = ts_ms
        self._ops += 1
        if self._ops >= 4096:
            self._ops = 0
            self._evict()
        return duplicate

    def _evict(self) -> None:
        horizon = self._max_ts - self._window_ms
        seen = self._seen
        expired = []
        for key, ts in seen.items():
            if ts >= horizon:
                break
            expired.append(key)
        for key in expired:
            del seen[key]
