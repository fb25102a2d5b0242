"""Reliability of the gt8004 transport against a real HTTP server: outages, bounds, kills, hangs."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from gt8004 import GT8004Logger, RequestLogEntry
from gt8004.middleware.fastapi import GT8004Middleware

from tests.waiting import eventually

from ._sink import Sink, serve_app

QUICK = {"retry_delays": (0.05, 0.1, 0.2), "breaker_cooldown": 0.2, "timeout": 2.0}


def entry(rid: str, pad: int = 0) -> RequestLogEntry:
    return RequestLogEntry(request_id=rid, method="POST", path="/chat", status_code=200, response_ms=3.0,
                           request_body="p" * pad if pad else None)


async def test_endpoint_down_then_back_delivers_every_entry_exactly_once(sink: Sink) -> None:
    sink.stop()
    drops: list[tuple[int, str]] = []
    logger = GT8004Logger("agent-down", "key", sink.url, batch_size=20, flush_interval=0.1,
                          max_queue_entries=1000, on_drop=lambda n, why: drops.append((n, why)), **QUICK)
    ids = [f"d{i}" for i in range(300)]
    for i, rid in enumerate(ids):
        assert await logger.log(entry(rid))
        if i % 50 == 0:
            await asyncio.sleep(0.2)  # a duration on purpose: ~1.2 s of outage while logging goes on
    # the outage lasts, however slow the machine, until the SDK has seen a flush fail
    await eventually(lambda: logger.stats().failed_flushes >= 1, 15, "a failed flush during the outage")
    assert logger.stats().delivered == 0
    sink.start()
    await asyncio.to_thread(sink.wait_for, 300, 15.0)
    assert await logger.flush()
    await logger.close()
    counts = sink.request_ids()
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    assert drops == [] and logger.stats().dropped == {}
    assert {b["agent_id"] for b in sink.batches} == {"agent-down"}


async def test_beyond_the_bound_the_drop_callback_counts_and_the_rest_arrives(sink: Sink) -> None:
    sink.stop()
    drops: list[tuple[int, str]] = []
    logger = GT8004Logger("agent-bound", "key", sink.url, batch_size=20, flush_interval=0.1,
                          max_queue_entries=100, on_drop=lambda n, why: drops.append((n, why)), **QUICK)
    kept = [await logger.log(entry(f"b{i}")) for i in range(250)]
    assert kept == [True] * 100 + [False] * 150
    assert sum(n for n, _ in drops) == 150 and {why for _, why in drops} == {"queue_full"}
    sink.start()
    await asyncio.to_thread(sink.wait_for, 100, 15.0)
    await logger.close()
    counts = sink.request_ids()
    assert set(counts) == {f"b{i}" for i in range(100)} and set(counts.values()) == {1}


CHILD = textwrap.dedent("""
    import asyncio, sys
    from gt8004 import GT8004Logger, RequestLogEntry

    async def main(url, spool, phase):
        logger = GT8004Logger("agent-kill", "key", url, batch_size=5, max_queue_entries=5, spool_dir=spool or None,
                              retry_delays=(0.05, 0.05, 0.05), timeout=2.0)
        if phase == "log":
            for i in range(48):
                await logger.log(RequestLogEntry(request_id=f"k{i}", method="GET", path="/", status_code=200,
                                                 response_ms=1.0))
            print("LOGGED", logger.stats().spooled, flush=True)
            await asyncio.Event().wait()  # alive, holding its entries, until the test kills it
        else:
            ok = await logger.flush(timeout=20)
            await logger.close()
            print("FLUSHED", ok, logger.stats().delivered, flush=True)

    asyncio.run(main(*sys.argv[1:]))
""")


def _spooled_ids(spool: Path) -> list[str]:
    """Request ids of the complete lines in the spool's segment files (``.tmp``, ``.seg``, ``.sending``)."""
    ids = []
    for path in spool.iterdir() if spool.is_dir() else ():
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # renamed (.tmp -> .seg) since the listing: the next poll reads it
            continue
        ids += [orjson.loads(line)["request_id"] for line in data[:data.rfind(b"\n") + 1].splitlines() if line]
    return ids


@pytest.mark.parametrize("spooled", ["spool", "no-spool"])
def test_killed_process_spool_is_delivered_after_restart(sink: Sink, tmp_path: Path, spooled: str) -> None:
    """The endpoint is down; the process is SIGKILLed once its spool holds the entries beyond the memory
    bound (polled on disk). A new process with the same spool delivers each of them once. Without a
    spool (the negative control) the same kill loses every entry."""
    sink.stop()
    spool = tmp_path / "spool"
    spool_arg = str(spool) if spooled == "spool" else ""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD, sink.url, spool_arg, "log"], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        if spooled == "spool":
            deadline = time.monotonic() + 20
            while len(held := _spooled_ids(spool)) < 43:  # 5 held in memory, 43 beyond the bound spooled
                assert child.poll() is None and time.monotonic() < deadline, held
                time.sleep(0.01)
        else:
            assert child.stdout is not None
            assert child.stdout.readline().split() == ["LOGGED", "0"]
            held = []
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert child.stdout is not None
        child.stdout.close()
    if spooled == "spool":
        assert sorted(held) == sorted(f"k{i}" for i in range(5, 48))
    sink.start()
    out = subprocess.run([sys.executable, "-c", CHILD, sink.url, spool_arg, "flush"], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out[:2] == ["FLUSHED", "True"], out
    counts = sink.request_ids()
    if spooled == "spool":
        assert set(counts) == set(held) and set(counts.values()) == {1}
        assert list(spool.iterdir()) == []
    else:
        assert counts == {}  # nothing survived the kill


def _latencies(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for i in range(n):
            started = time.perf_counter()
            response = client.post("/chat", json={"message": f"hello {i}"})
            out.append(time.perf_counter() - started)
            assert response.status_code == 200
    return out


def test_hanging_ingest_endpoint_never_slows_the_host(sink: Sink) -> None:
    logger = GT8004Logger("agent-hang", "key", sink.url, batch_size=10, flush_interval=0.05, timeout=30.0,
                          retry_delays=(0.05, 0.1, 0.2))
    app = FastAPI()
    app.add_middleware(GT8004Middleware, logger=logger)

    @app.post("/chat")
    async def chat(message: dict[str, Any]) -> dict[str, Any]:
        return {"response": "ok"}

    port, served = serve_app(app)
    try:
        base = _latencies(f"http://127.0.0.1:{port}", 150)
        sink.wait_for(150)
        sink.mode = "hang"
        hung = _latencies(f"http://127.0.0.1:{port}", 150)
        assert sink.hung >= 1  # the transport really is stuck on the sink meanwhile
        assert max(hung) < 0.5
        assert statistics.median(hung) <= 2 * statistics.median(base) + 0.002
        sink.mode = "ok"
        sink.wait_for(300, 20.0)
        assert logger.stats().dropped == {}
    finally:
        sink.mode = "ok"
        served.stop()
        asyncio.run(logger.close(timeout=2.0))


async def test_retry_after_is_honoured_and_413_splits_against_a_real_server(sink: Sink) -> None:
    sink.mode, sink.fail_status, sink.retry_after = "fail", 429, "0.3"
    logger = GT8004Logger("agent-429", "key", sink.url, retry_delays=(5.0, 5.0, 5.0), timeout=2.0)
    threading.Timer(0.15, lambda: setattr(sink, "mode", "ok")).start()
    started = time.monotonic()
    await logger.log(entry("r429"))
    assert await logger.flush(timeout=4.0)
    assert time.monotonic() - started < 3.0  # Retry-After (0.3 s), not the 5 s backoff
    await logger.close()

    small = Sink(max_body=4000).start()
    try:
        logger = GT8004Logger("agent-413", "key", small.url, batch_size=20, gzip=False, **QUICK)
        for i in range(20):
            await logger.log(entry(f"s{i}", pad=600))
        assert await logger.flush()
        await logger.close()
        counts = small.request_ids()
        assert set(counts) == {f"s{i}" for i in range(20)} and set(counts.values()) == {1}
        assert max(b["n"] for b in small.batches) <= 5
    finally:
        small.stop()


EXIT_CHILD = textwrap.dedent("""
    import asyncio, sys, time
    from gt8004 import GT8004Logger, RequestLogEntry

    url, spool, count = sys.argv[1], sys.argv[2] or None, int(sys.argv[3])
    logger = GT8004Logger("agent-exit", "key", url, batch_size=10, flush_interval=60.0, spool_dir=spool,
                          exit_timeout=1.0, timeout=30.0)

    async def main():
        for i in range(count):
            await logger.log(RequestLogEntry(request_id=f"x{i}", method="GET", path="/", status_code=200,
                                             response_ms=1.0))
        if count == 0:
            print("FLUSHED", await logger.flush(timeout=20), flush=True)

    asyncio.run(main())
    print("EXITING", time.monotonic(), flush=True)
""")


def _run_exit_child(url: str, spool: str, count: int) -> tuple[list[str], float]:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", EXIT_CHILD, url, spool, str(count)], capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    return out, time.monotonic() - started


def test_exit_flushes_what_is_queued(sink: Sink) -> None:
    out, _ = _run_exit_child(sink.url, "", 25)  # nothing due before exit: 2 full batches + 5 by age 60 s
    assert "EXITING" in out
    counts = sink.request_ids()
    assert set(counts) == {f"x{i}" for i in range(25)} and set(counts.values()) == {1}


def test_exit_with_a_hanging_endpoint_keeps_its_deadline_and_spools(sink: Sink, tmp_path: Path) -> None:
    sink.mode = "hang"
    out, elapsed = _run_exit_child(sink.url, str(tmp_path), 25)
    assert "EXITING" in out and elapsed < 8.0  # exit_timeout 1 s (+ interpreter start and teardown)
    assert sink.hung >= 1
    sink.mode = "ok"
    out, _ = _run_exit_child(sink.url, str(tmp_path), 0)
    assert out[:2] == ["FLUSHED", "True"]
    counts = sink.request_ids()
    assert set(counts) == {f"x{i}" for i in range(25)}
    # at-least-once: the batch that hung may also have been completed by the server afterwards;
    # the server deduplicates by request_id. Nothing else is repeated.
    assert sum(counts.values()) <= 25 + 10


async def test_request_timeout_is_enforced_then_the_batch_is_retried(sink: Sink) -> None:
    sink.mode = "hang"
    logger = GT8004Logger("agent-timeout", "key", sink.url, timeout=0.3, retry_delays=(0.05,),
                          breaker_cooldown=0.1)
    await logger.log(entry("t1"))
    started = time.monotonic()
    assert await logger.flush(timeout=5.0) is False  # two attempts, each cut at 0.3 s
    assert time.monotonic() - started < 2.0
    assert "Timeout" in logger.stats().last_error
    sink.mode = "ok"
    await asyncio.to_thread(sink.wait_for, 1, 10.0)
    await logger.close()
    assert "t1" in sink.request_ids()
