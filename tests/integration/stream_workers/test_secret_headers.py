"""A record another producer wrote with secret headers: the worker stores the entry, never the secrets.

The gateway strips secret headers before publishing, but the requests topic is not only the gateway's
(a replay tool, another service, an older gateway). The worker reads such a record from real Kafka and
writes it to the embedded ClickHouse; the stored ``headers`` column must hold no secret header.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from meterline.clickhouse import get_client
from schemas.topics import Topics
from stream_workers.processor import Processor
from stream_workers.settings import WorkerSettings
from stream_workers.sink import ClickHouseSink
from tests.integration.stream_workers.workload import produce

pytestmark = pytest.mark.timeout(120)

SUB = base64.urlsafe_b64encode(json.dumps({"sub": "user-42"}).encode()).rstrip(b"=").decode()
SECRETS = {"Authorization": f"Bearer eyJhbGciOiJub25lIn0.{SUB}.sig", "X-PAYMENT": "eyJzaWduZWQiOjF9",
           "x-auth-token": "tok-secret", "X-CSRF-Token": "csrf-secret", "Cookie": "session=cookie-secret",
           "X-Api-Key": "key-secret"}


async def test_secret_headers_from_another_producer_are_not_stored(kafka_bootstrap: str, topics: Topics,
                                                                  clickhouse_dsn: str) -> None:
    entry = {"request_id": "foreign-1", "method": "POST", "path": "/chat", "status_code": 200, "response_ms": 4.0,
             "headers": {**SECRETS, "Accept": "application/json"}}
    value = msgspec.json.encode({"v": 1, "agent_id": "agent-s", "batch_id": "b-foreign",
                                 "ingested_at": int(time.time() * 1000), "entries": [entry]})
    await produce(kafka_bootstrap, topics.requests, [("agent-s", value)])

    settings = WorkerSettings(kafka_bootstrap_servers=kafka_bootstrap, clickhouse_url=clickhouse_dsn,
                              topic_prefix=topics.prefix, partitions=topics.partitions, sink_interval_s=0.2,
                              session_timeout_s=6)
    sink = ClickHouseSink(lambda: get_client(clickhouse_dsn))
    assert await sink.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    processor = Processor(settings, sink, producer)
    await processor.start()
    try:
        rows: list[Any] = []
        deadline = time.monotonic() + 60
        while not rows and time.monotonic() < deadline:
            rows = sink.query("SELECT headers, customer_id FROM request_logs WHERE request_id = 'foreign-1'")
            if not rows:
                await asyncio.sleep(0.2)
        assert rows, "the worker did not store the entry within 60 s"
    finally:
        await processor.stop()
        await producer.stop()
        await sink.close()
    ((headers, customer),) = rows
    assert headers == {"Accept": "application/json"}
    assert customer == "user-42"  # derived from the bearer token before it was dropped
