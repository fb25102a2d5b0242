"""ClickHouse really unavailable under a worker process: its embedded engine's disk is full.

The worker's chDB directory lives on a small tmpfs; the test fills the filesystem, so every insert
fails inside the engine (``NOT_ENOUGH_SPACE``), with no wrapper around the client. Meanwhile a backlog
several times the stated memory bound arrives in Kafka. The worker must pause consumption (log line
and the paused gauge on its /metrics), keep its resident memory within the stated bounds (below),
commit nothing it did not write, and store everything exactly once after space is freed.

The negative control (``sink.drop_on_error``: a sink that logs a failed batch and moves on) keeps
consuming through the outage and loses the batches it could not write.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterline.local.ports import free_port
from schemas.topics import Topics
from tests.integration.stream_workers.procs import WorkerProcess, wait_processed
from tests.integration.stream_workers.test_crash_windows import stored
from tests.integration.stream_workers.test_scale_out import scrape
from tests.integration.stream_workers.workload import committed_total, produce, request_traffic

pytestmark = pytest.mark.timeout(120)

#: Resident memory the worker may add from before the outage to its peak: per partition one open and
#: one unwritten batch (1000 entries of ~2 KiB), Kafka fetch buffers, and the engine's buffers for the
#: inserts it keeps retrying (measured: 55-80 MiB, most of it the engine's).
RSS_GROWTH_BOUND_MB = 128
#: ... and once consumption is paused, while a backlog of ~47 MiB arrives (measured: < 1 MiB).
RSS_PAUSED_GROWTH_MB = 12
_BODY = b'"request_body":"' + b"b" * 2000 + b'"'


@pytest.fixture
def small_disk(tmp_dir: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs (mounting needs root; a full disk fails writes for root too, unlike chmod)."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk for real needs a tmpfs mount, which needs root")
    mount = tmp_dir / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem is full (ENOSPC); removing it frees the space."""
    path = disk / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return path


def _padded(records: list[tuple[str, bytes]], prefix: str) -> list[tuple[str, bytes]]:
    return [(k, v.replace(b'"req-', f'"{prefix}-'.encode()).replace(b'"request_body":"{}"', _BODY))
            for k, v in records]


def _retries(port: int) -> float:
    return scrape(port).get("meterline_worker_sink_retries_total", 0.0)


@pytest.mark.parametrize("sink", ["retrying", "drop-on-error"])
def test_full_disk_pauses_consumption_bounds_memory_and_loses_nothing(
        kafka_bootstrap: str, topics: Topics, tmp_dir: Path, small_disk: Path, sink: str) -> None:
    dsn = f"chdb://{small_disk / 'chdb'}?database=outage"
    port = free_port()
    group = f"{topics.prefix}workers.process"
    worker = WorkerProcess(kafka_bootstrap, topics, tmp_dir / "worker.log", dsn, METERLINE_WORKER_WEB_PORT=str(port),
                           METERLINE_SINK_BATCH_SIZE="1000", METERLINE_SINK_RETRY_MAX_S="0.5",
                           METERLINE_FAULTS="sink.drop_on_error=on" if sink == "drop-on-error" else "")
    before, exp1 = request_traffic(3000, agents=4, dup_rate=0.1, seed=71)
    first, exp2 = request_traffic(3000, agents=4, dup_rate=0.1, seed=72)
    backlog, exp3 = request_traffic(20_000, agents=4, dup_rate=0.1, seed=73)
    first, backlog = _padded(first, "first"), _padded(backlog, "backlog")
    backlog_mb = sum(len(v) for _, v in backlog) / 2**20
    assert backlog_mb > 3 * RSS_PAUSED_GROWTH_MB  # what would have to fit in memory without backpressure
    worker.start()
    worker.wait_log("assigned [(", 40)
    asyncio.run(produce(kafka_bootstrap, topics.requests, before))
    wait_processed(kafka_bootstrap, group, topics, timeout=30, proc=worker)
    baseline = worker.rss_mb()

    filler = fill(small_disk)  # from here the engine refuses every insert
    asyncio.run(produce(kafka_bootstrap, topics.requests, first))
    deadline = time.monotonic() + 30
    while _retries(port) < 3 and "batch dropped" not in worker.log():
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.1)
    paused_at = worker.rss_mb()
    retries = _retries(port)
    asyncio.run(produce(kafka_bootstrap, topics.requests, backlog))
    peak = max(baseline, paused_at)
    while _retries(port) < retries + 10 and "batch dropped" not in worker.log():  # ~5 s more of outage
        peak = max(peak, worker.rss_mb())
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.1)
    metrics = scrape(port)
    done, end = asyncio.run(committed_total(kafka_bootstrap, group, topics.requests, topics.partitions))
    if sink == "retrying":
        assert "pausing consumption and retrying" in worker.log()
        assert "NOT_ENOUGH_SPACE" in worker.log()  # the engine itself refused: the disk is full
        assert metrics["meterline_worker_consumption_paused"] == 1
        assert end - done >= len(backlog)  # the backlog waits in Kafka, not in the worker
        assert peak - baseline < RSS_GROWTH_BOUND_MB, (baseline, paused_at, peak)
        assert peak - paused_at < RSS_PAUSED_GROWTH_MB, (baseline, paused_at, peak)

    filler.unlink()
    wait_processed(kafka_bootstrap, group, topics, timeout=60, proc=worker)
    if sink == "retrying":
        assert "ClickHouse is back; resuming consumption" in worker.log()
        assert scrape(port)["meterline_worker_consumption_paused"] == 0
    assert worker.stop() == 0
    rows, distinct, rollup = stored(dsn)
    total = exp1.distinct + exp2.distinct + exp3.distinct
    if sink == "retrying":
        assert rows == distinct == rollup == total
    else:  # it committed past the batches it could not write: they are gone
        assert "batch dropped" in worker.log() and "pausing consumption" not in worker.log()
        assert rows == distinct == rollup < total
