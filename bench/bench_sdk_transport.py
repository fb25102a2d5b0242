"""gt8004 transport: entries/s delivered to a local HTTP sink, and the memory of a full queue.

Throughput: the same entries are delivered three ways to the same sink process (uvicorn, real
HTTP on loopback), in the same run:
- baseline: the seed guide's transport — one ``client.post(json={"agent_id", "entries": [e.dict() ...]})``
  per batch of 50, awaited in the caller (``Transport.send`` of the seed);
- raw: pre-encoded batches posted back to back with httpx (its ceiling on one connection; gt8004
  now sends with its own lean HTTP/1.1 client and passes it);
- gt8004: ``GT8004Logger.log`` for every entry, then ``flush``; the worker thread batches and sends.
Memory: a logger whose endpoint is down is filled to its bound (``max_queue_entries``); the heap
growth is compared with the seed's in-memory list of entry objects holding the same entries.

    python bench/bench_sdk_transport.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from gt8004 import GT8004Logger, RequestLogEntry  # noqa: E402


def make_entry(i: int) -> RequestLogEntry:
    return RequestLogEntry(
        request_id=f"req-{i:012d}", method="POST", path="/chat", status_code=200, response_ms=12.5 + i % 7,
        customer_id=f"customer-{i % 100}", tool_name="chat_completion", protocol="http",
        request_body='{"message": "hello, what is the weather like in Seoul today?"}',
        response_body='{"reply": "It is sunny, 21 degrees."}', user_agent="bench-client/1.0",
        ip_address="203.0.113.7", content_type="application/json")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_sink(port: int) -> None:
    import uvicorn

    from tests.integration.sdk_gt8004._sink import Sink

    uvicorn.run(Sink().app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                interface="asgi3")


async def seed_baseline(url: str, entries: list[RequestLogEntry]) -> float:
    started = time.perf_counter()
    async with httpx.AsyncClient() as client:
        for i in range(0, len(entries), 50):
            payload = {"agent_id": "bench", "entries": [e.dict() for e in entries[i:i + 50]]}
            response = await client.post(url, json=payload, headers={"Authorization": "Bearer k"}, timeout=10.0)
            response.raise_for_status()
    return len(entries) / (time.perf_counter() - started)


async def raw_ceiling(url: str, entries: list[RequestLogEntry]) -> float:
    from gt8004._entry import encode_entry
    from gt8004._sender import Batch, Sender

    sender = Sender(agent_id="bench", api_key="k", ingest_url=url)
    encoded = [encode_entry(e) for e in entries]
    bodies = [sender.request_parts(Batch(encoded[i:i + 50])) for i in range(0, len(encoded), 50)]
    started = time.perf_counter()
    async with httpx.AsyncClient() as client:
        for body, headers in bodies:
            (await client.post(url, content=body, headers=headers, timeout=10.0)).raise_for_status()
    return len(entries) / (time.perf_counter() - started)


async def gt8004_rate(url: str, entries: list[RequestLogEntry], gzip: bool = True) -> tuple[float, float]:
    logger = GT8004Logger("bench", "k", url, max_queue_entries=len(entries) + 1000,
                          max_queue_bytes=1 << 30, gzip=gzip)
    logger.transport.start_auto_flush()
    started = time.perf_counter()
    for entry in entries:
        await logger.log(entry)
    logged = time.perf_counter()
    assert await logger.flush(timeout=120.0)
    elapsed = time.perf_counter() - started
    delivered = logger.stats().delivered
    await logger.close()
    assert delivered == len(entries), delivered
    return delivered / elapsed, (logged - started) / len(entries) * 1e6


def queue_memory(bound: int) -> tuple[float, float]:
    entries = [make_entry(i) for i in range(bound)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    logger = GT8004Logger("bench", "k", "http://127.0.0.1:9/v1/ingest", max_queue_entries=bound,
                          retry_delays=(60.0,), breaker_cooldown=600.0)
    for entry in entries:
        logger.log_nowait(entry)
    assert logger.stats().queued == bound
    gc.collect()
    sdk_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    asyncio.run(logger.close(timeout=0.0))

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    seed_queue = [make_entry(i) for i in range(bound)]  # the seed keeps entry objects in a list
    seed_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del seed_queue
    return sdk_bytes / bound, seed_bytes / bound


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--sink":
        serve_sink(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer entries (about 10 s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the memory run drops its queue on purpose
    n, bound = (10_000, 10_000) if args.quick else (100_000, 10_000)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {n} entries")
    port = _free_port()
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "sink did not start"
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/v1/ingest"
        entries = [make_entry(i) for i in range(n)]
        asyncio.run(seed_baseline(url, entries[:1000]))  # warm up
        base = asyncio.run(seed_baseline(url, entries))
        raw = asyncio.run(raw_ceiling(url, entries))
        rate, log_us = asyncio.run(gt8004_rate(url, entries))
        plain_rate, _ = asyncio.run(gt8004_rate(url, entries, gzip=False))
    finally:
        sink.terminate()
        sink.wait(10)
    print("[throughput to a local uvicorn sink, batches of 50]")
    print(f"  seed-style transport (baseline): {base:10,.0f} entries/s")
    print(f"  httpx pre-encoded posts        : {raw:10,.0f} entries/s  (x{raw / base:.2f})")
    print(f"  gt8004 log() + worker          : {rate:10,.0f} entries/s  (x{rate / base:.2f}); "
          f"log() {log_us:.1f} µs/call while sending")
    print(f"  gt8004, gzip=False             : {plain_rate:10,.0f} entries/s  (x{plain_rate / base:.2f})")
    sdk_per, seed_per = queue_memory(bound)
    print(f"[memory of a full queue, {bound} entries (endpoint down)]")
    print(f"  gt8004 queue : {sdk_per:7.0f} B/entry  = {sdk_per * bound / 2**20:6.2f} MiB")
    print(f"  seed list of RequestLogEntry objects: {seed_per:7.0f} B/entry  (gt8004 x{sdk_per / seed_per:.2f})")


if __name__ == "__main__":
    main()
