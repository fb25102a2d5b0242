"""Worker processes for kill/restart tests: ``python -m stream_workers worker`` with test settings."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from schemas.topics import Topics
from tests.integration.stream_workers.workload import committed_total

ROOT = Path(__file__).resolve().parents[3]


class WorkerProcess:
    def __init__(self, bootstrap: str, topics: Topics, log_path: Path, clickhouse_url: str | None = None,
                 **env: str) -> None:
        self.env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, METERLINE_TOPIC_PREFIX=topics.prefix,
                        METERLINE_PARTITIONS=str(topics.partitions), METERLINE_WORKER_WEB_PORT="0",
                        METERLINE_SESSION_TIMEOUT_S="6", METERLINE_SINK_INTERVAL_S="0.3",
                        METERLINE_SINK_BATCH_SIZE="2000",
                        # dedupe slice files next to the log: one directory per test, shared by its workers
                        METERLINE_DEDUPE_DIR=str(log_path.parent / "dedupe"))
        self.env.update(env)
        if clickhouse_url:
            self.env["CLICKHOUSE_URL"] = clickhouse_url
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> WorkerProcess:
        self.starts += 1
        log = self.log_path.open("ab")
        # cwd: Faust keeps its "<app id>-data" directory there; the test's own directory, not the repository
        env = dict(self.env, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), self.env.get("PYTHONPATH")])))
        self.proc = subprocess.Popen([sys.executable, "-m", "stream_workers", "worker"], env=env,
                                     cwd=self.log_path.parent, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 40) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        """Resident memory of the worker process (MiB)."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(status.split("VmRSS:", 1)[1].split()[0]) / 1024

    def wait_exit(self, timeout: float) -> int:
        """The return code once the process ended by itself (e.g. killed at an armed fault point)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"worker still running after {timeout}s:\n{self.log()[-3000:]}"
            time.sleep(0.1)
        return self.proc.returncode

    def wait_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.proc is not None and self.proc.poll() is None, f"worker exited:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"{text!r} not logged within {timeout}s:\n{self.log()[-3000:]}"
            time.sleep(0.1)


_FIRED = re.compile(r"^fault point (\S+) fired: (\w+) \(hit (\d+)((?: \w+=\S+)*)\)$", re.MULTILINE)


def fired(log: str, point: str) -> list[dict[str, str]]:
    """The context of every ``fault point <point> fired`` line a process wrote (see ``meterline.faults``)."""
    out = []
    for name, action, hit, rest in _FIRED.findall(log):
        if name == point:
            out.append({"action": action, "hit": hit} | dict(kv.split("=", 1) for kv in rest.split()))
    return out


async def committed_metadata(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, tuple[int, str]]:
    """partition → (committed offset, commit metadata) of ``group`` on ``topic``."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(
            group, partitions=[TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await admin.close()
    return {tp.partition: (meta.offset, meta.metadata) for tp, meta in found.items() if meta.offset >= 0}


def wait_processed(bootstrap: str, group: str, topics: Topics, timeout: float,
                   proc: WorkerProcess | None = None) -> None:
    """Wait until ``group`` committed the end of the requests and usage topics."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        totals = [asyncio.run(committed_total(bootstrap, group, t, topics.partitions))
                  for t in (topics.requests, topics.usage)]
        done = all(a >= b for a, b in totals)
        if done:
            return
        if proc is not None and proc.proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.proc.returncode}:\n{proc.log()[-4000:]}")
        time.sleep(0.5)
    raise AssertionError(f"not processed within {timeout}s")
