"""Transport behaviour (real worker thread, real queue and spool) against httpx.MockTransport."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from gt8004 import GT8004Logger, RequestLogEntry

from tests.waiting import eventually

FAST = {"retry_delays": (0.0, 0.01, 0.02), "breaker_cooldown": 0.2}


class FakeIngest:
    """Answers like the gateway; ``status`` decides per request (a callable or a fixed code)."""

    def __init__(self, status: Callable[[dict[str, object]], int] | int = 202) -> None:
        self.status = status
        self.lock = threading.Lock()
        self.requests: list[dict[str, object]] = []
        self.times: list[float] = []  # time.monotonic() of each request, as it arrived
        self.accepted: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        raw = request.content
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        body = orjson.loads(raw)
        status = self.status(body) if callable(self.status) else self.status
        with self.lock:
            self.requests.append(body)
            self.times.append(time.monotonic())
            if status == 202:
                self.accepted.extend(e["request_id"] for e in body["entries"])  # type: ignore[attr-defined]
        n = len(body["entries"])
        return httpx.Response(status, json={"status": "accepted", "entries": n, "rejected": []})

    def logger(self, **kw: object) -> GT8004Logger:
        kw.setdefault("flush_interval", 60.0)
        return GT8004Logger("agent-1", "key-1", "http://sink/v1/ingest",
                            http_transport=httpx.MockTransport(self.handler), **kw)  # type: ignore[arg-type]


def entry(i: int, pad: int = 0) -> RequestLogEntry:
    return RequestLogEntry(request_id=f"r{i}", method="GET", path="/p", status_code=200, response_ms=1.0,
                           request_body="x" * pad if pad else None)


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    await eventually(cond, timeout, "the transport's state", interval=0.01)


async def test_batches_on_count_age_and_bytes() -> None:
    ingest = FakeIngest()
    logger = ingest.logger(batch_size=10)
    for i in range(10):
        await logger.log(entry(i))
    await wait_for(lambda: len(ingest.accepted) == 10)  # count: no flush needed
    assert [len(r["entries"]) for r in ingest.requests] == [10]  # type: ignore[arg-type]
    await logger.close()

    aged = FakeIngest()
    logger = aged.logger(batch_size=50, flush_interval=0.2)
    started = time.monotonic()
    for i in range(3):
        await logger.log(entry(i))
    await wait_for(lambda: len(aged.accepted) == 3)
    assert 0.15 <= time.monotonic() - started < 2.0  # age: sent after flush_interval
    await logger.close()

    sized = FakeIngest()
    logger = sized.logger(batch_size=50, max_batch_bytes=4096)
    for i in range(6):
        await logger.log(entry(i, pad=1500))
    assert await logger.flush()
    assert all(len(r["entries"]) <= 2 for r in sized.requests)  # type: ignore[arg-type]
    assert sorted(sized.accepted) == sorted(f"r{i}" for i in range(6))
    await logger.close()


async def test_failed_batches_are_put_back_with_their_id_and_delivered_once() -> None:
    calls = {"n": 0}

    def status(_body: dict[str, object]) -> int:
        calls["n"] += 1
        return 503 if calls["n"] <= 6 else 202  # two whole flushes fail (4 attempts each)

    ingest = FakeIngest(status)
    logger = ingest.logger(batch_size=5, **FAST)
    for i in range(5):
        await logger.log(entry(i))
    await wait_for(lambda: len(ingest.accepted) == 5)
    assert {r["batch_id"] for r in ingest.requests} == {ingest.requests[0]["batch_id"]}
    stats = logger.stats()
    assert stats.failed_flushes == 1 and stats.delivered == 5 and stats.dropped == {}
    await logger.close()


async def test_breaker_opens_after_three_failed_flushes_then_probes() -> None:
    ingest = FakeIngest(503)
    logger = ingest.logger(batch_size=2, **FAST)
    for i in range(2):
        await logger.log(entry(i))
    await wait_for(lambda: logger.stats().breaker_state == "open")
    assert len(ingest.requests) == 12  # 3 flushes x 4 attempts, then silence while open
    assert await logger.flush(timeout=1.0) is False  # answered at once: nothing may be sent now
    ingest.status = 202
    await wait_for(lambda: len(ingest.accepted) == 2)  # the half-open probe succeeds
    assert logger.stats().breaker_state == "closed"
    # silence while open, the flush included: the next request came a whole cooldown after the 12th
    assert ingest.times[12] - ingest.times[11] >= FAST["breaker_cooldown"]
    await logger.close()


async def test_413_splits_with_new_batch_ids_and_drops_a_lone_oversize_entry() -> None:
    drops: list[tuple[int, str]] = []
    ingest = FakeIngest(lambda body: 413 if len(body["entries"]) > 4  # type: ignore[arg-type]
                        or any(e["request_id"] == "huge" for e in body["entries"]) else 202)  # type: ignore[attr-defined]
    logger = ingest.logger(batch_size=16, on_drop=lambda n, why: drops.append((n, why)))
    for i in range(16):
        await logger.log(entry(i))
    assert await logger.flush()
    assert sorted(ingest.accepted) == sorted(f"r{i}" for i in range(16))
    ids = [r["batch_id"] for r in ingest.requests]
    assert len(set(ids)) == len(ids)  # every split half is a new batch
    await logger.log(RequestLogEntry(request_id="huge", method="GET", path="/", status_code=200,
                                     response_ms=1.0))
    await logger.flush()
    assert drops == [(1, "too_large")]
    await logger.close()


async def test_overflow_beyond_the_memory_bound_is_reported_never_silent(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gt8004")
    drops: list[tuple[int, str]] = []
    ingest = FakeIngest(503)
    logger = ingest.logger(batch_size=10, max_queue_entries=20, on_drop=lambda n, why: drops.append((n, why)),
                           **FAST)
    kept = [await logger.log(entry(i)) for i in range(35)]
    assert kept.count(True) == 20 and kept.count(False) == 15
    assert sum(n for n, _ in drops) == 15 and {why for _, why in drops} == {"queue_full"}
    assert logger.stats().dropped == {"queue_full": 15}
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1  # every drop reaches the callback; the log is rate-limited
    await logger.close(timeout=0.2)
    assert logger.stats().dropped == {"queue_full": 15, "shutdown": 20}
    assert drops[-1] == (20, "shutdown")  # one report for the whole remainder


async def test_unauthorized_stops_sending_and_reports() -> None:
    ingest = FakeIngest(401)
    logger = ingest.logger(batch_size=2, **FAST)
    for i in range(2):
        await logger.log(entry(i))
    await wait_for(lambda: logger.stats().auth_failed)
    for i in range(2, 8):
        await logger.log(entry(i))
    assert await logger.flush(timeout=1.0) is False
    # woken again (three full batches, two flushes) and each time it answered without sending
    assert await logger.flush(timeout=1.0) is False
    assert len(ingest.requests) == 1  # no spinning on a refused key
    await logger.close(timeout=0.1)


async def test_rejected_entries_fire_the_drop_callback() -> None:
    drops: list[tuple[int, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, json={"status": "accepted", "entries": 2,
                                         "rejected": [{"index": 0, "error": "status_code: out of range"}]})

    logger = GT8004Logger("a", "k", "http://sink/v1/ingest", http_transport=httpx.MockTransport(handler),
                          on_drop=lambda n, why: drops.append((n, why)))
    for i in range(3):
        await logger.log(entry(i))
    assert await logger.flush()
    assert drops == [(1, "rejected")] and logger.stats().delivered == 2
    await logger.close()


async def test_spool_takes_the_overflow_and_survives_a_new_logger(tmp_path: Path) -> None:
    ingest = FakeIngest(503)
    logger = ingest.logger(batch_size=5, max_queue_entries=5, spool_dir=tmp_path, **FAST)
    assert all([await logger.log(entry(i)) for i in range(23)])
    assert logger.stats().spooled == 18
    await logger.close(timeout=0.1)  # the 5 in memory are spilled to the spool too
    assert logger.stats().dropped == {}
    assert len(list(tmp_path.glob("*.seg"))) >= 5

    ingest.status = 202
    again = ingest.logger(batch_size=5, spool_dir=tmp_path, **FAST)
    assert await again.flush()
    assert sorted(ingest.accepted) == sorted(f"r{i}" for i in range(23))
    assert list(tmp_path.iterdir()) == []
    await again.close()


async def test_forked_child_starts_with_an_empty_queue() -> None:
    ingest = FakeIngest()
    logger = ingest.logger(batch_size=50)
    for i in range(5):
        await logger.log(entry(i))
    pid = os.fork()
    if pid == 0:  # child: must not resend the parent's five entries
        code = 1
        try:
            ok = logger.log_nowait(entry(100)) and logger.stats().queued == 1
            ok = ok and asyncio.run(logger.flush(timeout=5.0)) and ingest.accepted[-1:] == ["r100"]
            code = 0 if ok and len(ingest.accepted) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert await logger.flush()
    assert sorted(ingest.accepted) == [f"r{i}" for i in range(5)]
    await logger.close()


async def test_close_keeps_its_deadline_without_hammering_a_failing_endpoint() -> None:
    drops: list[tuple[int, str]] = []
    ingest = FakeIngest(503)
    logger = ingest.logger(batch_size=50, retry_delays=(0.2, 0.2, 0.2),
                           on_drop=lambda n, why: drops.append((n, why)))
    for i in range(7):
        await logger.log(entry(i))
    started = time.monotonic()
    await logger.close(timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert 1 <= len(ingest.requests) <= 3  # retries stop at the deadline instead of spinning
    assert drops == [(7, "shutdown")]


def test_only_a_full_batch_wakes_the_worker() -> None:
    """The host pays one wake-up (a syscall plus the worker's GIL time) per batch, not per entry
    or per first entry; the age limit is the worker's own timer (see the age case above)."""
    from gt8004._config import TransportConfig
    from gt8004._queue import EntryQueue

    queue = EntryQueue(TransportConfig(batch_size=3, flush_interval=2.0))
    assert queue.due_in(100.0, auto_flush=True) == 2.0  # idle tick: nothing queued
    assert [queue.offer(b"x") for _ in range(3)] == [(True, False), (True, False), (True, True)]
    assert queue.offer(b"x") == (True, False)  # already signalled until the worker looks
    queue.clear_wake()
    assert queue.offer(b"x") == (True, True)
    assert queue.due_in(time.monotonic(), auto_flush=False) is None
