"""Gateway ingest throughput: wrk (a separate process) → uvicorn gateway → real Kafka, 50-entry batches.

Prints entries/s and request latency percentiles, and ratios against baselines measured in the
same run: raw aiokafka produce (idempotent, acks=all, same concurrency) of the same payloads, as
one record per batch and as one record per entry (the record-granularity decision).

    python bench/bench_gateway.py [--quick] [--connections 32] [--duration 15]

Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts a local Apache Kafka. Needs `wrk` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.ingest import build_records, parse_batch  # noqa: E402
from gateway.keys.admin import create_key  # noqa: E402
from meterline.kafka_admin import create_topics  # noqa: E402
from meterline.local.kafka import LocalKafka  # noqa: E402
from meterline.local.ports import free_port  # noqa: E402
from schemas.topics import Topics  # noqa: E402

ENTRIES = 50


def batch_body() -> bytes:
    entries = [{
        "request_id": f"req-{uuid.uuid4().hex}", "method": "POST", "path": "/v1/chat/completions",
        "status_code": 200 if i % 10 else 402, "response_ms": 12.5 + i, "timestamp": "2026-11-23T10:00:00Z",
        "customer_id": f"cust-{i % 7}", "tool_name": "chat", "protocol": "http", "source": "sdk",
        "x402_amount": 0.001, "x402_token": "USDC-base-mainnet", "ip_address": "203.0.113.9",
        "user_agent": "bench/1.0", "content_type": "application/json",
        "request_body": '{"messages":[{"role":"user","content":"hello"}]}' * 3,
        "response_body": '{"choices":[{"message":{"content":"hi"}}]}' * 3,
    } for i in range(ENTRIES)]
    return json.dumps({"agent_id": "bench-agent", "sdk_version": "bench", "entries": entries}).encode()


async def raw_produce(bootstrap: str, topic: str, values: list[bytes], concurrency: int, seconds: float) -> float:
    """Entries/s of raw aiokafka sends: each worker sends one batch's records and awaits the acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2,
                                max_batch_size=1024 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            futures = [await producer.send(topic, v, key=b"bench-agent") for v in values]
            await asyncio.gather(*futures)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await producer.stop()
    return done * ENTRIES / elapsed


def run_wrk(url: str, body: Path, key: str, connections: int, seconds: int) -> dict[str, float]:
    script = body.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body}", "rb"); wrk.body = f:read("*all"); f:close()\n')
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {p: _ms(re.search(rf"\s{p}%\s+([\d.]+\w+)", out).group(1)) for p in ("50", "99")}  # type: ignore[union-attr]
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"], "non2xx": float(non2xx.group(1)) if non2xx else 0.0}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def start_gateway(bootstrap: str, topics: Topics, port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    environ = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "METERLINE_TOPIC_PREFIX": topics.prefix,
               "METERLINE_GATEWAY_PORT": str(port), "METERLINE_GATEWAY_CREATE_TOPICS": "false",
               "METERLINE_GATEWAY_RATE_LIMIT": "1000000", "METERLINE_GATEWAY_RATE_BURST": "1000000", **env}
    out = log.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env=environ, stdout=out,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"gateway did not become ready; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (5 s each, no per-entry gateway run)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=int, default=15)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    seconds = 5 if args.quick else args.duration
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            kafka = LocalKafka(work / "kafka", port=free_port(), controller_port=free_port()).start()
            stack.callback(kafka.stop)
            bootstrap = kafka.bootstrap_servers
        topics = Topics(prefix=f"bench{uuid.uuid4().hex[:6]}.", partitions=6)
        asyncio.run(create_topics(bootstrap, topics))
        key, _ = asyncio.run(create_key(bootstrap, topics.keys, "bench-agent"))
        body = batch_body()
        (work / "body.json").write_bytes(body)
        parsed = parse_batch(body, max_entries=1000, now=datetime.now(UTC))
        per_batch = build_records("bench-agent", parsed, 1, granularity="batch")
        per_entry = build_records("bench-agent", parsed, 1, granularity="entry")
        print(f"payload: {ENTRIES} entries, {len(body)} bytes JSON; record per batch {len(per_batch[0])} B; "
              f"{seconds}s runs, {args.connections} connections/workers")

        raw_batch = asyncio.run(raw_produce(bootstrap, topics.requests, per_batch, args.connections, seconds))
        raw_entry = asyncio.run(raw_produce(bootstrap, topics.requests, per_entry, args.connections, seconds))
        print(f"raw aiokafka, record per batch : {raw_batch:10,.0f} entries/s")
        print(f"raw aiokafka, record per entry : {raw_entry:10,.0f} entries/s  "
              f"(per-entry / per-batch = {raw_entry / raw_batch:.2f})")

        results: dict[str, dict[str, float]] = {}
        for granularity in (["batch"] if args.quick else ["batch", "entry"]):
            port = free_port()
            gw = start_gateway(bootstrap, topics, port, work / f"gateway-{granularity}.log",
                               METERLINE_GATEWAY_RECORD_GRANULARITY=granularity)
            try:
                run_wrk(f"http://127.0.0.1:{port}/v1/ingest", work / "body.json", key, args.connections, 2)  # warm
                results[granularity] = run_wrk(f"http://127.0.0.1:{port}/v1/ingest", work / "body.json", key,
                                               args.connections, seconds)
            finally:
                gw.terminate()
                gw.wait(30)
        for granularity, r in results.items():
            entries = r["rps"] * ENTRIES
            base = raw_batch if granularity == "batch" else raw_entry
            print(f"gateway (record per {granularity:5}) : {entries:10,.0f} entries/s  {r['rps']:7,.0f} req/s  "
                  f"p50 {r['p50']:.1f} ms  p99 {r['p99']:.1f} ms  non-2xx {r['non2xx']:.0f}  "
                  f"ratio to raw aiokafka = {entries / base:.2f}")
        print("targets: >= 50,000 entries/s, p99 <= 25 ms (2-core machine shared with other work: see load)")
        print(f"load average: {os.getloadavg()[0]:.1f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
