"""Ingest latency while ad-hoc SQL is abused, in one process as `meterline up` runs it.

The gateway (uvicorn on a socket), the stream worker (processor + ClickHouse sink) and `POST /v1/sql` share one
process and one embedded chDB engine. A client thread (its own event loop) posts ingest batches at a steady
rate; first alone, then while another thread keeps `POST /v1/sql` busy with queries past the memory limit
(refused with the limit's name) and heavy legal ones. Prints ingest p50/p99 of both phases and their ratio,
measured in the same run (target: p99 during abuse <= 2x p99 alone), and the load average.

    flock -x /work/notes/machine.lock python bench/bench_sql_isolation.py [--seconds 20] [--rate 200]

Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts a local Apache Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import uvicorn
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.keys.admin import create_key  # noqa: E402
from gateway.main import create_app  # noqa: E402
from gateway.settings import GatewaySettings  # noqa: E402
from meterline.clickhouse import get_client  # noqa: E402
from meterline.kafka_admin import create_topics  # noqa: E402
from meterline.local.kafka import LocalKafka  # noqa: E402
from meterline.local.ports import free_port  # noqa: E402
from meterline.migrations import apply_migrations  # noqa: E402
from schemas.topics import Topics  # noqa: E402
from stream_workers.processor import Processor  # noqa: E402
from stream_workers.settings import WorkerSettings  # noqa: E402
from stream_workers.sink import ClickHouseSink  # noqa: E402

OPERATOR = "bench-operator-token-0123456789"
BATCH = 10
ABUSE = ["SELECT length(groupArray(number)) FROM numbers(200000000)",  # past max_memory_usage: refused
         "SELECT count() FROM numbers(150000000) WHERE sipHash64(number) % 7 = 1"]  # heavy but legal


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def ingest_load(url: str, key: str, rate: float, phases: list[tuple[str, float]], out: dict[str, list[float]]) -> None:
    """Steady ingest from a thread of its own: ``rate`` batches/s through each (phase, seconds)."""

    async def run() -> None:
        number = 0
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            for phase, seconds in phases:
                out[phase] = []
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    started = time.monotonic()
                    body = {"agentId": "bench-agent", "sdkVersion": "bench", "batchId": f"b-{number}",
                            "entries": [{"requestId": f"r-{number}-{i}", "method": "GET", "path": "/x",
                                         "statusCode": 200, "responseMs": 1.5} for i in range(BATCH)]}
                    number += 1
                    resp = await http.post("/v1/ingest", json=body)
                    if resp.status_code != 202:
                        raise SystemExit(f"ingest answered {resp.status_code}: {resp.text[:200]}")
                    out[phase].append(time.monotonic() - started)
                    await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))

    asyncio.run(run())


def abuse(url: str, stop: threading.Event, seen: list[tuple[int, str]]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=120) as http:
        while not stop.is_set():
            for query in ABUSE:
                resp = http.post("/v1/sql", json={"query": query})
                seen.append((resp.status_code, str(resp.json().get("detail", "ok"))[:80]))


async def serve_stack(bootstrap: str, topics: Topics, dsn: str, sock: socket.socket, ready: threading.Event,
                      done: threading.Event) -> None:
    worker = WorkerSettings(kafka_bootstrap_servers=bootstrap, clickhouse_url=dsn, topic_prefix=topics.prefix,
                            partitions=topics.partitions, sink_batch_size=2000, sink_interval_s=0.2)
    sink = ClickHouseSink(lambda: get_client(dsn), retry_max_s=0.5)
    await sink.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    processor = Processor(worker, sink, producer)
    await processor.start()
    settings = GatewaySettings(kafka_bootstrap_servers=bootstrap, topic_prefix=topics.prefix,
                               partitions=topics.partitions, create_topics=False, operator_token=OPERATOR,
                               clickhouse_url=dsn)
    app = create_app(settings, read_client=get_client(dsn))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))
    async with app.router.lifespan_context(app):
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.05)
        ready.set()
        await asyncio.to_thread(done.wait)
        server.should_exit = True
        await serving
    await processor.stop()
    await producer.stop()
    await sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument("--rate", type=float, default=50, help="ingest batches per second (10 entries each)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sql-isolation-"))
    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            kafka = LocalKafka(work / "kafka", port=free_port(), controller_port=free_port()).start()
            stack.callback(kafka.stop)
            bootstrap = kafka.bootstrap_servers
        topics = Topics(prefix=f"bench{uuid.uuid4().hex[:6]}.", partitions=6)
        asyncio.run(create_topics(bootstrap, topics))
        dsn = f"chdb://{work / 'chdb'}?database=meterline"
        apply_migrations(get_client(dsn))
        key, _ = asyncio.run(create_key(bootstrap, topics.keys, "bench-agent"))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        ready, done = threading.Event(), threading.Event()
        server = threading.Thread(target=asyncio.run, args=(serve_stack(bootstrap, topics, dsn, sock, ready, done),))
        server.start()
        try:
            if not ready.wait(60):  # the key made above is loaded before the gateway answers
                raise SystemExit("the stack did not start")
            latencies: dict[str, list[float]] = {}
            ingest_load(url, key, args.rate, [("warm-up", 3)], latencies)
            stop = threading.Event()
            seen: list[tuple[int, str]] = []
            load = threading.Thread(target=ingest_load, args=(url, key, args.rate,
                                                              [("alone", args.seconds), ("abused", args.seconds)],
                                                              latencies))
            load.start()
            time.sleep(args.seconds)
            abuser = threading.Thread(target=abuse, args=(url, stop, seen))
            abuser.start()
            load.join()
            stop.set()
            abuser.join()
        finally:
            done.set()
            server.join(60)
            sock.close()
    alone, abused = latencies["alone"], latencies["abused"]
    refused = sum(1 for status, detail in seen if status == 400 and "max_memory_usage" in detail)
    legal = sum(1 for status, _ in seen if status == 200)
    print(f"ingest {args.rate:g} batches/s x {BATCH} entries, {args.seconds:g} s per phase; ad-hoc SQL during "
          f"abuse: {refused} refused at max_memory_usage, {legal} heavy legal queries answered, "
          f"{len(seen) - refused - legal} other")
    for name, values in (("alone", alone), ("abused", abused)):
        print(f"ingest {name:7}: {len(values):5} batches  p50 {percentile(values, 0.5) * 1000:7.1f} ms  "
              f"p99 {percentile(values, 0.99) * 1000:7.1f} ms")
    ratio = percentile(abused, 0.99) / percentile(alone, 0.99)
    print(f"p99 during abuse / p99 alone = {ratio:.2f}  (target <= 2)")
    print(f"load average: {os.getloadavg()[0]:.1f} (2 cores, shared with other work)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
