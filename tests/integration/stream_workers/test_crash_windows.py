"""A worker process SIGKILLed exactly inside the two crash windows of the exactly-once protocol.

``stream_workers.processor`` records a batch's range as commit metadata, writes the batch under the
token ``topic/partition/start-end``, then commits ``end``. The worker is armed through
``METERLINE_FAULTS`` (``meterline.faults``) to SIGKILL itself at a named point, and the test proves
from its log that it died there. The restarted worker cuts batches elsewhere (a smaller batch size
stands in for the time-based cut, which depends on when records arrive), so only the recorded range
can make it rebuild the same batch. Its written batches are probed with ``processor.after_write=log``.

Negative controls, in the test ids, turn one protection off in both runs (test-only switches):
``random-token`` writes every batch under a fresh token, ``unrecorded`` skips recording the range.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from meterline.clickhouse import get_client
from schemas.topics import Topics
from tests.integration.stream_workers.procs import WorkerProcess, committed_metadata, fired, wait_processed
from tests.integration.stream_workers.workload import request_traffic

pytestmark = pytest.mark.timeout(120)

_QUICK = {"METERLINE_SINK_INTERVAL_S": "5"}
_SWITCHES = {"protected": [], "random-token": ["sink.random_token=on"],
             "unrecorded": ["processor.no_pending_record=on"]}


def stored(dsn: str) -> tuple[int, int, int]:
    """(rows, distinct entries, sum of the agent_minute rollup) from a fresh process (chDB: one per dir)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_stored_here, dsn).result()


def _stored_here(dsn: str) -> tuple[int, int, int]:
    client = get_client(dsn)
    try:
        rows, distinct = client.query("SELECT count(), uniqExact(agent_id, request_id) FROM request_logs"
                                      ).result_rows[0]
        rollup = client.query("SELECT sum(requests) FROM agent_minute").result_rows[0][0]
        return int(rows), int(distinct), int(rollup)
    finally:
        client.close()


class Crash:
    """One worker killed at ``point``, then a worker with another batch size that finishes the work."""

    def __init__(self, bootstrap: str, topics: Topics, tmp_dir: Path, point: str, protection: str) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        self.group = f"{topics.prefix}workers.process"
        self.dsn = f"chdb://{tmp_dir / 'chdb'}?database=crash"
        switches = _SWITCHES[protection]
        self.records, self.expected = request_traffic(6000, agents=6, dup_rate=0.10, late_rate=0.05, seed=61)
        self.first = WorkerProcess(bootstrap, topics, tmp_dir / "first.log", self.dsn, **_QUICK,
                                   METERLINE_SINK_BATCH_SIZE="1000",
                                   METERLINE_FAULTS=",".join([f"{point}=kill@1", *switches]))
        self.second = WorkerProcess(bootstrap, topics, tmp_dir / "second.log", self.dsn,
                                    METERLINE_SINK_BATCH_SIZE="300",
                                    METERLINE_FAULTS=",".join(["processor.after_write=log", *switches]))
        self.point = point

    def run(self) -> tuple[dict[str, str], dict[int, tuple[int, str]]]:
        """Kill the first worker at the point; the batch it died with and the commits it left."""
        self.first.start()
        self.first.wait_log("assigned [(", 40)
        asyncio.run(_produce(self.bootstrap, self.topics.requests, self.records))
        assert self.first.wait_exit(40) == -9, self.first.log()[-3000:]
        [died] = fired(self.first.log(), self.point)
        commits = asyncio.run(committed_metadata(self.bootstrap, self.group, self.topics.requests,
                                                 self.topics.partitions))
        self.second.start()
        wait_processed(self.bootstrap, self.group, self.topics, timeout=60, proc=self.second)
        assert self.second.stop() == 0
        return died, commits

    def written(self) -> list[str]:
        return [f["token"] for f in fired(self.second.log(), "processor.after_write")]

    def reformed(self) -> list[str]:
        return re.findall(r"re-forming the recorded batch (\d+-\d+)", self.second.log())


async def _produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    from tests.integration.stream_workers.workload import produce

    await produce(bootstrap, topic, records)


def _range(token: str) -> tuple[int, int, int]:
    """``topic/partition/start-end`` → (partition, start, end)."""
    _, partition, span = token.rsplit("/", 2)
    start, end = span.split("-")
    return int(partition), int(start), int(end)


@pytest.mark.parametrize("protection", ["protected", "random-token", "unrecorded"])
def test_killed_after_the_insert_before_the_commit(kafka_bootstrap: str, topics: Topics, tmp_dir: Path,
                                                   protection: str) -> None:
    crash = Crash(kafka_bootstrap, topics, tmp_dir, "processor.after_write", protection)
    died, commits = crash.run()
    partition, start, end = _range(died["token"])
    rows_written = int(died["rows"])
    assert rows_written > 0
    # It died holding a written, unacknowledged batch: its partition's commit is still at ``start``.
    offset, metadata = commits.get(partition, (0, ""))
    assert offset == start
    assert metadata == ("" if protection == "unrecorded" else f"pending:{end}")
    rows, distinct, rollup = stored(crash.dsn)
    assert distinct == crash.expected.distinct
    if protection == "protected":
        # The new owner re-formed the recorded range despite its own batch size; same token, counted once.
        assert f"{start}-{end}" in crash.reformed()
        assert died["token"] in crash.written()
        assert rows == rollup == crash.expected.distinct
    else:
        if protection == "random-token":  # the same batch was re-formed, but written under a new token
            assert f"{start}-{end}" in crash.reformed()
        else:  # the restart did not know the range and cut the log elsewhere
            assert crash.reformed() == [] and died["token"] not in crash.written()
        # Either way the killed batch is stored twice, in the raw table and in the rollups.
        assert rows - distinct >= rows_written
        assert rollup == rows


@pytest.mark.parametrize("protection", ["protected", "unrecorded"])
def test_killed_between_recording_the_range_and_the_insert(kafka_bootstrap: str, topics: Topics, tmp_dir: Path,
                                                           protection: str) -> None:
    crash = Crash(kafka_bootstrap, topics, tmp_dir, "processor.after_record", protection)
    died, commits = crash.run()
    partition, start, end = _range(died["range"])
    offset, metadata = commits.get(partition, (0, ""))
    assert (offset, metadata) == ((start, f"pending:{end}") if protection == "protected" else (0, ""))
    rows, distinct, rollup = stored(crash.dsn)
    # Nothing was written before the kill (the first recorded batch of the run), so the count is exact
    # either way: this window needs the record only to rebuild the same batch, not to stay exact.
    assert rows == distinct == rollup == crash.expected.distinct
    if protection == "protected":
        assert crash.reformed() == [f"{start}-{end}"]
        assert died["range"] in crash.written()
    else:  # without the record the restart cuts that range elsewhere: harmless here, fatal after an insert
        assert crash.reformed() == []
        assert died["range"] not in crash.written()
        assert any(_range(t)[:2] == (partition, start) for t in crash.written())
