"""Deterministic deduplication within a time window of the partition's own log.

A key (``agent_id`` + ``request_id``, or ``app_id`` + ``report_id``) is a duplicate when the same key
was accepted from an earlier record of the same partition whose Kafka timestamp lies at most
``window_ms`` before this record's timestamp. The decision depends only on the partition's log, never
on wall clocks, crashes or batch boundaries, so a replay after a crash, a rebalance or a restart
re-forms exactly the same deduplicated batches. State is rebuilt on assignment by re-reading the
window of the log before the committed offset (``Processor._rebuild``); memory is one dict entry per
distinct key seen within the window.
"""

from __future__ import annotations

__all__ = ["WindowDeduper"]


class WindowDeduper:
    """Remembers first-seen record timestamps of keys; forgets them one window later."""

    __slots__ = ("_seen", "_window_ms", "_max_ts", "_ops")

    def __init__(self, window_ms: int) -> None:
        self._seen: dict[str, int] = {}
        self._window_ms = window_ms
        self._max_ts = 0
        self._ops = 0

    def __len__(self) -> int:
        return len(self._seen)

    def is_duplicate(self, key: str, ts_ms: int) -> bool:
        """Return True for a duplicate; otherwise remember ``key`` as first seen at ``ts_ms``."""
        seen = self._seen.get(key)
        if seen is not None and ts_ms - seen <= self._window_ms:
            return True
        if seen is not None:
            del self._seen[key]  # expired: re-insert at the end to keep insertion order ~ time order
        self._seen[key] = ts_ms
        if ts_ms > self._max_ts:
            self._max_ts = ts_ms
        self._ops += 1
        if self._ops >= 4096:
            self._ops = 0
            self._evict()
        return False

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
