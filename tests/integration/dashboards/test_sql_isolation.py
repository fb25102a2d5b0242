"""Ingest keeps running while the read side is abused, in one process as ``meterline up`` runs it: the gateway on
a real socket, the stream worker (processor + ClickHouse sink) on the session's Kafka, and chDB shared by both
and by ``POST /v1/sql``.

Steady HTTP ingest runs first alone, then while ad-hoc SQL asks for more memory than the limit allows (refused
with the limit's name), reads an endless file (refused before reading), and runs a heavy but legal query.
Every ingest answer must be 202, ingest latency must stay near what it was alone (a generous bound: the
precise ratio is bench/bench_sql_isolation.py's), and every acknowledged entry must be stored exactly once.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from gateway.keys.admin import create_key
from gateway.main import create_app
from gateway.runtime import GatewayRuntime
from meterline.clickhouse import get_client
from schemas.topics import Topics
from stream_workers.processor import Processor
from stream_workers.settings import WorkerSettings
from stream_workers.sink import ClickHouseSink
from tests.integration.gateway.conftest import make_settings
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(180)

OPERATOR = "op-secret-token"
AGENT = "agent-iso"
BATCH = 5
PERIOD_S = 0.025  # one batch every 25 ms: 200 entries/s


@dataclass
class Stack:
    url: str
    runtime: GatewayRuntime


@dataclass
class Ingest:
    """What steady ingest saw: (phase, seconds, status) per request and the ids the gateway acknowledged."""

    answers: list[tuple[str, float, int]] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    phase: str = "alone"

    def p99(self, phase: str) -> float:
        times = sorted(t for p, t, _ in self.answers if p == phase)
        return times[min(len(times) - 1, int(len(times) * 0.99))]


@pytest.fixture
async def stack(kafka_bootstrap: str, topics: Topics, clickhouse: Client, clickhouse_dsn: str
                ) -> AsyncIterator[Stack]:
    worker_settings = WorkerSettings(kafka_bootstrap_servers=kafka_bootstrap, clickhouse_url=clickhouse_dsn,
                                     topic_prefix=topics.prefix, partitions=topics.partitions, sink_batch_size=500,
                                     sink_interval_s=0.1, session_timeout_s=6)
    sink = ClickHouseSink(lambda: get_client(clickhouse_dsn), retry_max_s=0.5)
    assert await sink.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    processor = Processor(worker_settings, sink, producer)
    await processor.start()
    # the read API as `meterline up` mounts it: the views share the process's client, SQL opens its own
    app = create_app(make_settings(kafka_bootstrap, topics, operator_token=OPERATOR, clickhouse_url=clickhouse_dsn),
                     read_client=clickhouse)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    try:
        async with app.router.lifespan_context(app):
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            await eventually(lambda: server.started, 10, "uvicorn listening")
            host, port = sock.getsockname()
            yield Stack(f"http://{host}:{port}", app.state.runtime)
            server.should_exit = True
            await serving
    finally:
        sock.close()
        await processor.stop()
        await producer.stop()
        await sink.close()


async def ingest_until(stop: asyncio.Event, url: str, key: str, seen: Ingest) -> None:
    """POST a batch every PERIOD_S until ``stop``; record each answer's latency and the acknowledged ids."""
    number = 0
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        while not stop.is_set():
            ids = [f"iso-{number + i}" for i in range(BATCH)]
            number += BATCH
            body = {"agentId": AGENT, "sdkVersion": "0.3.0", "batchId": f"b-{number}",
                    "entries": [{"requestId": i, "method": "GET", "path": "/x", "statusCode": 200, "responseMs": 1.5}
                                for i in ids]}
            started = time.monotonic()
            resp = await http.post("/v1/ingest", json=body)
            seen.answers.append((seen.phase, time.monotonic() - started, resp.status_code))
            if resp.status_code == 202:
                seen.acked.extend(ids)
            await asyncio.sleep(max(0.0, PERIOD_S - (time.monotonic() - started)))


def abuse(url: str) -> list[tuple[str, int, str]]:
    """The read side's abuse, through the same gateway: (query, status, detail or first row)."""
    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=120) as http:
        for query in ["SELECT length(groupArray(number)) FROM numbers(200000000)",  # over max_memory_usage
                      "SELECT * FROM file('/dev/zero', 'RawBLOB') SETTINGS max_execution_time = 2",
                      "SELECT count() FROM numbers(150000000) WHERE sipHash64(number) % 7 = 1"]:  # heavy, legal
            resp = http.post("/v1/sql", json={"query": query})
            body = resp.json()
            out.append((query, resp.status_code, str(body.get("detail", body.get("rows")))))
    return out


async def test_ingest_keeps_answering_and_loses_nothing_while_sql_is_abused(stack: Stack, clickhouse: Client) -> None:
    raw, record = await create_key(stack.runtime.settings.kafka_bootstrap_servers, stack.runtime.topics.keys, AGENT)
    assert await stack.runtime.registry.wait_for(
        lambda: stack.runtime.registry.lookup_hash(record.key_sha256) is not None, 10)
    seen = Ingest()
    stop = asyncio.Event()
    loader = asyncio.create_task(ingest_until(stop, stack.url, raw, seen))
    await asyncio.sleep(3)  # ingest alone, for the latency it has without abuse
    seen.phase = "abused"
    results = await asyncio.to_thread(abuse, stack.url)
    seen.phase = "after"
    await asyncio.sleep(0.5)
    stop.set()
    await loader

    (over, over_status, over_detail), (endless, endless_status, _), (heavy, heavy_status, heavy_rows) = results
    assert over_status == 400 and "query stopped: max_memory_usage (512 MiB) exceeded" in over_detail, results
    assert endless_status == 400, results
    assert heavy_status == 200 and heavy_rows.startswith("[["), results

    statuses = {status for _, _, status in seen.answers}
    assert statuses == {202}, f"ingest answered {statuses}"
    alone, abused = seen.p99("alone"), seen.p99("abused")
    count = sum(1 for p, _, _ in seen.answers if p == "abused")
    print(f"ingest p99 alone {alone * 1000:.1f} ms, during abuse {abused * 1000:.1f} ms over {count} batches; "
          f"median {statistics.median(t for _, t, _ in seen.answers) * 1000:.1f} ms")
    assert count >= 20  # ingest did run while the queries did
    assert abused <= max(5 * alone, alone + 0.5), f"ingest p99 {alone:.3f} s alone, {abused:.3f} s during abuse"

    def stored() -> list[tuple[str, int]]:
        rows = clickhouse.query("SELECT request_id, count() FROM request_logs WHERE agent_id = {a:String} "
                                "GROUP BY request_id", parameters={"a": AGENT}).result_rows
        return [(str(r[0]), int(r[1])) for r in rows]

    await eventually(lambda: len(stored()) >= len(seen.acked), 60, "every acknowledged entry stored")
    rows = stored()
    assert sorted(r for r, _ in rows) == sorted(seen.acked)
    assert all(n == 1 for _, n in rows), [r for r in rows if r[1] != 1][:5]
