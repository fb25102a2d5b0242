"""The report queue: bound with counted drops, inflight back to the front on loss, spool across restarts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from billing_sdk._queue import QueuedReport, ReportQueue


def _report(i: int) -> QueuedReport:
    return QueuedReport(f"r{i}", f'{{"n":{i}}}'.encode())


def _publisher(start: int = 1):
    mids = iter(range(start, 10_000))
    return lambda report: next(mids)


def test_bound_counts_drops_and_calls_back() -> None:
    drops: list[int] = []
    queue = ReportQueue(3, on_drop=drops.append)
    assert [queue.put(_report(i)) for i in range(5)] == [True, True, True, False, False]
    assert drops == [1, 2]
    stats = queue.stats()
    assert (stats.pending, stats.accepted, stats.dropped) == (3, 3, 2)


def test_bound_includes_inflight() -> None:
    queue = ReportQueue(2)
    queue.put(_report(1))
    queue.put(_report(2))
    queue.take(_publisher())
    assert not queue.put(_report(3))
    assert queue.ack(1) is not None
    assert queue.put(_report(3))


def test_failing_drop_callback_does_not_raise() -> None:
    def boom(count: int) -> None:
        raise RuntimeError("callback bug")

    queue = ReportQueue(1, on_drop=boom)
    queue.put(_report(1))
    assert queue.put(_report(2)) is False


def test_take_ack_and_requeue_keep_order() -> None:
    queue = ReportQueue(10)
    for i in range(5):
        queue.put(_report(i))
    publish = _publisher()
    taken = [queue.take(publish) for _ in range(3)]
    assert [r.report_id for r in taken if r] == ["r0", "r1", "r2"]
    assert queue.ack(2) is not None and queue.ack(2) is None  # second PUBACK of the same mid is ignored
    assert queue.requeue_inflight() == 2
    order = []
    while (report := queue.take(publish)) is not None:
        order.append(report.report_id)
    assert order == ["r0", "r2", "r3", "r4"]
    assert queue.stats().resent == 2


def test_publish_failure_keeps_report_pending() -> None:
    queue = ReportQueue(10)
    queue.put(_report(1))

    def broken(report: QueuedReport) -> int:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        queue.take(broken)
    assert (queue.pending, queue.inflight) == (1, 0)


def test_spool_survives_a_restart(tmp_path: Path) -> None:
    spool = tmp_path / "billing" / "spool.db"
    first = ReportQueue(10, spool)
    for i in range(4):
        first.put(_report(i))
    first.take(_publisher())
    first.ack(1)  # r0 acknowledged: gone from the spool
    first.close()
    assert stat.S_IMODE(os.stat(spool).st_mode) == 0o600  # it holds raw API keys
    second = ReportQueue(10, spool)
    assert second.stats().spooled_at_start == 3
    ids = []
    while (report := second.take(_publisher())) is not None:
        ids.append(report.report_id)
    assert ids == ["r1", "r2", "r3"]


def test_spool_larger_than_bound_loads_only_the_bound(tmp_path: Path) -> None:
    spool = tmp_path / "spool.db"
    first = ReportQueue(10, spool)
    for i in range(6):
        first.put(_report(i))
    first.close()
    second = ReportQueue(4, spool)
    assert (second.pending, second.stats().spooled_at_start) == (4, 6)
