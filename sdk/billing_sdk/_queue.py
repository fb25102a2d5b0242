"""The bounded report queue: a report stays here from ``report_usage`` until the broker's PUBACK.

``pending`` reports wait to be published; ``inflight`` ones were published on the current connection and
wait for their PUBACK. When a connection drops, its inflight reports go back to the front of ``pending``
and are published again on the next connection, with the same ``report_id`` (the server dedupes on it).
The bound covers pending + inflight; a report beyond it is refused, counted and passed to ``on_drop``.

With ``spool_path`` every queued report is also written to a small SQLite file (deleted on PUBACK), so
reports survive a process restart: a new process with the same spool path sends them. The spool holds
raw API keys (the protocol sends them), so the file is created with mode 0600.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["QueueStats", "QueuedReport", "ReportQueue"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuedReport:
    report_id: str
    payload: bytes


@dataclass(frozen=True)
class QueueStats:
    pending: int
    inflight: int
    accepted: int
    acknowledged: int
    dropped: int
    resent: int
    spooled_at_start: int


class _Spool:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self._acked: list[str] = []
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS reports "
                         "(seq INTEGER PRIMARY KEY AUTOINCREMENT, report_id TEXT UNIQUE, payload BLOB)")

    def load(self) -> list[QueuedReport]:
        rows = self._db.execute("SELECT report_id, payload FROM reports ORDER BY seq").fetchall()
        return [QueuedReport(str(rid), bytes(payload)) for rid, payload in rows]

    def add(self, report: QueuedReport) -> None:
        self._db.execute("INSERT OR IGNORE INTO reports (report_id, payload) VALUES (?, ?)",
                         (report.report_id, report.payload))

    def remove(self, report_id: str, *, now: bool = False) -> None:
        # Deletes are batched (one transaction per 100): a crash before the batch commits only means a
        # few acknowledged reports are sent again, with their ids, which the server counts once.
        self._acked.append(report_id)
        if now or len(self._acked) >= 100:
            self.commit_removals()

    def commit_removals(self) -> None:
        if self._acked:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("DELETE FROM reports WHERE report_id = ?", [(r,) for r in self._acked])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._acked.clear()

    def close(self) -> None:
        self.commit_removals()
        self._db.close()


class ReportQueue:
    """Pending + inflight reports, bounded by ``maxsize``; not thread-safe (event-loop use only)."""

    def __init__(self, maxsize: int, spool_path: str | os.PathLike[str] | None = None,
                 on_drop: Callable[[int], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("queue_size must be at least 1")
        self.maxsize = maxsize
        self._pending: deque[QueuedReport] = deque()
        self._inflight: OrderedDict[int, QueuedReport] = OrderedDict()
        self._on_drop = on_drop
        self._accepted = self._acked = self._dropped = self._resent = 0
        self._spool = _Spool(Path(spool_path)) if spool_path is not None else None
        self._spooled_at_start = 0
        if self._spool is not None:
            saved = self._spool.load()
            self._pending.extend(saved[:maxsize])
            self._spooled_at_start = len(saved)
            if len(saved) > maxsize:
                logger.warning("billing spool holds %d reports, over queue_size %d: sending the first %d now",
                               len(saved), maxsize, maxsize)
            elif saved:
                logger.info("billing spool: %d unsent reports from a previous run queued", len(saved))

    def __len__(self) -> int:
        return len(self._pending) + len(self._inflight)

    @property
    def spooled(self) -> bool:
        """Whether reports are mirrored to the on-disk spool."""
        return self._spool is not None

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def put(self, report: QueuedReport) -> bool:
        """Queue a report; False (counted, ``on_drop`` called) when the queue is full."""
        if len(self) >= self.maxsize:
            self._dropped += 1
            logger.warning("billing report queue full (%d): report dropped, %d dropped so far",
                           self.maxsize, self._dropped)
            if self._on_drop is not None:
                try:
                    self._on_drop(self._dropped)
                except Exception:
                    logger.exception("billing on_drop callback failed")
            return False
        if self._spool is not None:
            self._spool.add(report)
        self._pending.append(report)
        self._accepted += 1
        return True

    def take(self, mid_for: Callable[[QueuedReport], int]) -> QueuedReport | None:
        """Publish the oldest pending report through ``mid_for`` and track it as inflight under that mid."""
        if not self._pending:
            return None
        report = self._pending[0]
        mid = mid_for(report)
        self._pending.popleft()
        self._inflight[mid] = report
        return report

    def ack(self, mid: int) -> QueuedReport | None:
        report = self._inflight.pop(mid, None)
        if report is not None:
            self._acked += 1
            if self._spool is not None:
                self._spool.remove(report.report_id, now=not self._inflight and not self._pending)
        return report

    def requeue_inflight(self) -> int:
        """Connection lost: every inflight report goes back to the front of the queue, in order."""
        reports = list(self._inflight.values())
        self._inflight.clear()
        self._pending.extendleft(reversed(reports))
        self._resent += len(reports)
        return len(reports)

    def stats(self) -> QueueStats:
        return QueueStats(len(self._pending), len(self._inflight), self._accepted, self._acked,
                          self._dropped, self._resent, self._spooled_at_start)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
