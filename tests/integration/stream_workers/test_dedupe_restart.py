"""A worker restarts from its dedupe slice files, including after a crash that left files for uncommitted records.

Worker A processes a first wave of records (Kafka timestamps 40 ms apart, 0.5 s slices, so every partition
seals slices) and stops cleanly. A second wave is produced; worker B restores from A's slice files, decides
its first fetch of every partition — sealing and writing slices of records nobody has committed — and is
SIGKILLed right after recording its first batch range (``processor.after_record``). Worker C, cutting
batches at another size, restores from the files and must re-form B's recorded batch and decide exactly
as an uninterrupted worker: every total exact. Many second-wave records resend first-wave entries, so C's
restored state is what catches them.

Cases, in the test ids: ``files`` (C trusts only slices ending at or before the commit), ``moved-host``
(C has no files: the fallback re-reads the window), and the negative control ``trust-uncommitted`` (C
also loads the slices B wrote past the commit: their records become duplicates of themselves — lost).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas.topics import Topics
from tests.integration.stream_workers.procs import WorkerProcess, committed_metadata, fired, wait_processed
from tests.integration.stream_workers.test_crash_windows import stored
from tests.integration.stream_workers.workload import request_traffic

pytestmark = pytest.mark.timeout(150)

_SLICES = {"METERLINE_DEDUPE_SLICE_S": "0.5"}


async def produce_stamped(bootstrap: str, topic: str, records: list[tuple[str, bytes]], t0: int,
                          step_ms: int) -> None:
    """Records with Kafka timestamps ``t0 + i * step_ms``: the slices do not depend on how fast we send."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key.encode(), timestamp_ms=t0 + i * step_ms)
                   for i, (key, value) in enumerate(records)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _span(text: str) -> tuple[int, int, int]:
    """``topic/partition/start-end`` -> (partition, start, end)."""
    _, partition, span = text.rsplit("/", 2)
    start, end = span.split("-")
    return int(partition), int(start), int(end)


@pytest.mark.parametrize("case", ["files", "moved-host", "trust-uncommitted"])
def test_restart_from_slice_files_after_a_crash_with_uncommitted_slices(kafka_bootstrap: str, topics: Topics,
                                                                        tmp_dir: Path, case: str) -> None:
    dsn = f"chdb://{tmp_dir / 'chdb'}?database=restart"
    group = f"{topics.prefix}workers.process"
    records, expected = request_traffic(6000, agents=6, dup_rate=0.15, late_rate=0.05, seed=13)
    half = len(records) // 2
    t0 = int(time.time() * 1000) - 60_000

    a = WorkerProcess(kafka_bootstrap, topics, tmp_dir / "a.log", dsn, **_SLICES)
    a.start()
    a.wait_log("assigned [(", 40)
    asyncio.run(produce_stamped(kafka_bootstrap, topics.requests, records[:half], t0, 40))
    wait_processed(kafka_bootstrap, group, topics, timeout=60, proc=a)
    assert a.stop() == 0
    files = list((tmp_dir / "dedupe").rglob("*.slice"))
    assert len(files) >= 3 * topics.partitions, "every partition sealed slices in the first wave"

    asyncio.run(produce_stamped(kafka_bootstrap, topics.requests, records[half:], t0 + half * 40, 40))
    b = WorkerProcess(kafka_bootstrap, topics, tmp_dir / "b.log", dsn, **_SLICES, METERLINE_SINK_BATCH_SIZE="300",
                      METERLINE_FAULTS="processor.after_record=kill@1,dedupe.after_slice_write=log")
    b.start()
    assert b.wait_exit(60) == -9, b.log()[-3000:]
    assert "restored dedupe state from" in b.log()
    [died] = fired(b.log(), "processor.after_record")
    partition, start, end = _span(died["range"])
    commits = asyncio.run(committed_metadata(kafka_bootstrap, group, topics.requests, topics.partitions))
    assert commits[partition] == (start, f"pending:{end}")
    # The crash window under test: B had written slices of that partition's records beyond its commit.
    written = [_span(f["slice"]) for f in fired(b.log(), "dedupe.after_slice_write")]
    assert any(p == partition and slice_end > start for p, _, slice_end in written), written

    env = dict(_SLICES, METERLINE_SINK_BATCH_SIZE="700", METERLINE_FAULTS="processor.after_write=log")
    if case == "moved-host":
        env["METERLINE_DEDUPE_DIR"] = str(tmp_dir / "another-host")
    if case == "trust-uncommitted":
        env["METERLINE_FAULTS"] += ",dedupe.trust_uncommitted_slices=on"
    c = WorkerProcess(kafka_bootstrap, topics, tmp_dir / "c.log", dsn, **env)
    c.start()
    wait_processed(kafka_bootstrap, group, topics, timeout=60, proc=c)
    assert c.stop() == 0
    log = c.log()
    assert f"re-forming the recorded batch {start}-{end}" in log
    assert f"{topics.requests}/{partition}/{start}-{end}" in [f["token"] for f in fired(log, "processor.after_write")]
    restored = re.findall(rf"{re.escape(topics.requests)}/(\d+): restored dedupe state from \d+ slice files "
                          r"\(offsets \d+-(\d+)\)", log)

    rows, distinct, rollup = stored(dsn)
    if case == "moved-host":
        assert restored == []
        assert log.count("re-reading the window of the log instead") >= topics.partitions
    else:
        assert {int(p) for p, _ in restored} == set(range(topics.partitions))
    if case == "trust-uncommitted":
        chain_end = {int(p): int(x) for p, x in restored}
        assert chain_end[partition] > start  # it loaded a slice of records nobody had committed ...
        assert rows == distinct == rollup < expected.distinct  # ... and lost their new entries as duplicates
    else:
        if case == "files":
            assert all(int(x) <= commits.get(int(p), (0, ""))[0] for p, x in restored)
        assert rows == distinct == rollup == expected.distinct
