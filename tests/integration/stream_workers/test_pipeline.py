"""The processor and ClickHouse sink in this process: poison records, a ClickHouse outage, usage pricing.

Real Kafka and the embedded ClickHouse engine; the outage is injected at the client boundary (a
client wrapper whose inserts fail, before or after the data was written).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from clickhouse_connect.driver.exceptions import OperationalError

from meterline.clickhouse import get_client
from schemas.events import DeadLetter, RequestEntry, dead_letter_decoder
from schemas.prices import unit_price
from schemas.topics import Topics
from stream_workers.metrics import SINK_RETRIES
from stream_workers.processor import Processor
from stream_workers.settings import WorkerSettings
from stream_workers.sink import ClickHouseSink
from tests.integration.stream_workers.workload import committed_total, produce, request_traffic, usage_traffic
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)


class FlakyClient:
    """Wraps a real client; while ``down`` inserts fail (``after_write``: fail after writing)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.down = False
        self.after_write = False
        self.failures = 0

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            self.failures += 1
            if self.after_write:
                self._client.raw_insert(*args, **kwargs)
                raise OperationalError("timed out waiting for the server's answer (injected)")
            raise OperationalError("connection refused (injected)")
        return self._client.raw_insert(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class Running:
    def __init__(self, processor: Processor, sink: ClickHouseSink, flaky: FlakyClient) -> None:
        self.processor, self.sink, self.flaky = processor, sink, flaky

    def count(self, sql: str) -> Any:
        return self.sink.query(sql)[0][0]


@pytest.fixture
async def running(kafka_bootstrap: str, topics: Topics, clickhouse_dsn: str) -> AsyncIterator[Running]:
    settings = WorkerSettings(kafka_bootstrap_servers=kafka_bootstrap, clickhouse_url=clickhouse_dsn,
                              topic_prefix=topics.prefix, partitions=topics.partitions, sink_batch_size=500,
                              sink_interval_s=0.2, session_timeout_s=6, sink_retry_max_s=0.5)
    flaky: list[FlakyClient] = []

    def factory() -> Any:
        flaky.append(FlakyClient(get_client(clickhouse_dsn)))
        return flaky[-1]

    sink = ClickHouseSink(factory, retry_max_s=0.5)
    assert await sink.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    processor = Processor(settings, sink, producer)
    sink.on_outage = processor.set_paused
    await processor.start()
    try:
        yield Running(processor, sink, flaky[0])
    finally:
        await processor.stop()
        await producer.stop()
        await sink.close()


async def wait_for(predicate: Any, timeout: float = 30.0, what: str = "the condition") -> None:
    await eventually(predicate, timeout, what, interval=0.2)  # each look may be a query or a Kafka call


async def committed_all(bootstrap: str, group: str, topics: Topics, topic: str) -> bool:
    """Has ``group`` committed the end of ``topic``? The sink writes a batch before committing it, so
    from then on nothing of the topic is still to be written (no late duplicate either)."""
    done, end = await committed_total(bootstrap, group, topic, topics.partitions)
    return end > 0 and done >= end


async def read_dead_letters(bootstrap: str, topic: str, want: int) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + 20
        while len(out) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(dead_letter_decoder.decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return out


async def test_poison_records_go_to_dead_letters_and_the_stream_keeps_flowing(
        running: Running, kafka_bootstrap: str, topics: Topics) -> None:
    enc = msgspec.json.Encoder()
    good = RequestEntry(request_id="ok-1", method="tools/call", path="/mcp", status_code=200, response_ms=3.0)
    mixed = enc.encode({"v": 1, "agent_id": "agent-p", "batch_id": "b1", "ingested_at": int(time.time() * 1000),
                        "entries": [msgspec.to_builtins(good),
                                    {"request_id": "bad-1", "method": "GET", "path": "/", "status_code": 999,
                                     "response_ms": 1.0}]})
    poison = [("agent-p", b"\xff\xfe not json"),
              ("agent-p", enc.encode({"v": 99, "agent_id": "agent-p", "batch_id": "b", "ingested_at": 1,
                                      "entries": []})),
              ("agent-p", mixed)]
    await asyncio.to_thread(asyncio.run, produce(kafka_bootstrap, topics.requests, poison))
    # The MQTT bridge dead-letters too (sent twice: its producer retried); the workers mirror the topic.
    bridge = enc.encode(DeadLetter(reason="unknown_key", error="no such key", stage="bridge",
                                   source_topic="billing/report", payload="{}", failed_at=int(time.time() * 1000)))
    await asyncio.to_thread(asyncio.run, produce(kafka_bootstrap, topics.dead_letters,
                                                 [("bridge", bridge), ("bridge", bridge)]))
    after, expected = request_traffic(3000, agents=2, dup_rate=0.0, seed=2)
    await asyncio.to_thread(asyncio.run, produce(kafka_bootstrap, topics.requests, after))

    dead = [d for d in await read_dead_letters(kafka_bootstrap, topics.dead_letters, 5) if d.stage == "worker"]
    assert sorted(d.reason for d in dead) == ["invalid_json", "schema", "unsupported_version"]
    assert all(d.source_topic == topics.requests for d in dead)
    assert any("not json" in d.payload for d in dead)
    assert any('"bad-1"' in d.payload for d in dead)  # the entry, not its whole record
    await wait_for(lambda: running.count("SELECT count() FROM request_logs") == expected.distinct + 1)
    await wait_for(lambda: running.count("SELECT count() FROM dead_letters") == 4)
    assert running.sink.query("SELECT stage, reason FROM dead_letters WHERE stage = 'bridge'") == [
        ("bridge", "unknown_key")]
    assert running.count("SELECT count() FROM request_logs WHERE request_id = 'ok-1'") == 1


async def test_clickhouse_outage_pauses_consumption_and_loses_nothing(
        running: Running, kafka_bootstrap: str, topics: Topics) -> None:
    group = running.processor.group_id
    first, exp1 = request_traffic(3000, agents=4, dup_rate=0.1, seed=21)
    await asyncio.to_thread(asyncio.run, produce(kafka_bootstrap, topics.requests, first))
    await wait_for(lambda: running.count("SELECT count() FROM request_logs") == exp1.distinct)

    retries_before = SINK_RETRIES.labels("clickhouse")._value.get()
    running.flaky.down = True
    running.flaky.after_write = True  # first failures: the data was written, the answer was lost
    second, exp2 = request_traffic(12_000, agents=4, dup_rate=0.1, seed=22)
    second = [(k, v.replace(b'"req-', b'"second-')) for k, v in second]
    await asyncio.to_thread(asyncio.run, produce(kafka_bootstrap, topics.requests, second))
    await wait_for(lambda: running.flaky.failures >= 2)
    running.flaky.after_write = False
    lags = []
    for _ in range(3):  # across three more failed inserts: the sink's own retries time the outage
        failures = running.flaky.failures
        await wait_for(lambda seen=failures: running.flaky.failures > seen, what="another failed insert")
        done, end = await committed_total(kafka_bootstrap, group, topics.requests, topics.partitions)
        lags.append(end - done)
        assert running.processor.consumer.paused()  # consumption is paused ...
        for state in running.processor.states.values():  # ... and memory holds one batch per partition
            assert state.batch is None or len(state.batch.rows) <= 500 + 50
    assert lags[-1] > 0 and lags[-1] >= lags[0]  # lag is the buffer
    assert SINK_RETRIES.labels("clickhouse")._value.get() > retries_before

    running.flaky.down = False
    total = exp1.distinct + exp2.distinct
    await wait_for(lambda: running.count("SELECT count() FROM request_logs") == total, timeout=60)
    assert not running.processor.consumer.paused()
    await wait_for(lambda: committed_all(kafka_bootstrap, group, topics, topics.requests),
                   what="every offset committed")
    assert running.count("SELECT uniqExact(agent_id, request_id) FROM request_logs") == total
    assert running.count("SELECT count() FROM request_logs") == total
    assert running.count("SELECT sum(requests) FROM agent_minute") == total
    assert running.count("SELECT sum(requests) FROM agent_tool_hour_sketch") == total
    assert running.count("SELECT sum(requests) FROM agent_customer_day") == total


async def test_usage_reports_are_priced_and_counted_once(
        running: Running, kafka_bootstrap: str, topics: Topics) -> None:
    records, expected = usage_traffic(2000, dup_rate=0.2)
    await asyncio.to_thread(asyncio.run, produce(kafka_bootstrap, topics.usage, records))
    reports = sum(n for n, _ in expected.values())
    await wait_for(lambda: running.count("SELECT count() FROM usage_events") == reports)
    await wait_for(lambda: committed_all(kafka_bootstrap, running.processor.group_id, topics, topics.usage),
                   what="every usage offset committed")
    got = {(a, m, mo): (n, u, c) for a, m, mo, n, u, c in running.sink.query(
        "SELECT app_id, module, model, sum(reports), sum(units), sum(cost) FROM usage_minute "
        "GROUP BY app_id, module, model")}
    assert set(got) == set(expected)
    for key, (n, units) in expected.items():
        assert got[key][:2] == (n, units)
        price = unit_price(key[1], key[2], datetime.now(UTC).date())  # the reports are from the last minute
        assert price is not None and got[key][2] == pytest.approx(units * float(price), rel=1e-9)



async def test_graceful_stop_writes_the_open_batches(kafka_bootstrap: str, topics: Topics, clickhouse_dsn: str) -> None:
    settings = WorkerSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix,
                              partitions=topics.partitions, sink_interval_s=60, session_timeout_s=6)
    sink = ClickHouseSink(lambda: get_client(clickhouse_dsn))
    assert await sink.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    processor = Processor(settings, sink, producer)
    await processor.start()
    records, expected = request_traffic(2000, agents=3, dup_rate=0.1, seed=41)
    await asyncio.to_thread(asyncio.run, produce(kafka_bootstrap, topics.requests, records))
    await wait_for(lambda: sum(len(s.batch.rows) for s in processor.states.values() if s.batch) == expected.distinct)
    assert sink.query("SELECT count() FROM request_logs")[0][0] == 0  # nothing written before the interval
    await processor.stop()  # ... until the worker stops: then everything open is written and committed
    await producer.stop()
    assert sink.query("SELECT count() FROM request_logs")[0][0] == expected.distinct
    done, end = await committed_total(kafka_bootstrap, processor.group_id, topics.requests, topics.partitions)
    assert done == end
    await sink.close()


class TokenRecorder(FlakyClient):
    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.tokens: list[str] = []

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        self.tokens.append(kwargs["settings"]["insert_deduplication_token"])
        return super().raw_insert(*args, **kwargs)


async def _processor(settings: WorkerSettings, client: FlakyClient) -> tuple[Processor, ClickHouseSink, Any]:
    sink = ClickHouseSink(lambda: client, retry_max_s=0.2)
    assert await sink.start()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    processor = Processor(settings, sink, producer)
    await processor.start()
    return processor, sink, producer


async def test_batch_written_but_never_committed_is_reformed_under_its_token(
        kafka_bootstrap: str, topics: Topics, clickhouse_dsn: str) -> None:
    settings = WorkerSettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix,
                              partitions=topics.partitions, sink_batch_size=700, sink_interval_s=0.2,
                              session_timeout_s=6)
    records, expected = request_traffic(4000, agents=6, dup_rate=0.1, seed=51)
    await asyncio.to_thread(asyncio.run, produce(kafka_bootstrap, topics.requests, records))

    # Worker A writes every batch, but the answer is lost each time: it never commits past a range.
    first = TokenRecorder(get_client(clickhouse_dsn))
    first.down = first.after_write = True
    proc_a, sink_a, prod_a = await _processor(settings, first)
    await wait_for(lambda: first.failures >= 3)
    await proc_a.stop(flush_timeout=0.5)  # gives up: as good as dead, with its ranges recorded
    await prod_a.stop()
    written_by_a = sink_a.query("SELECT count() FROM request_logs")[0][0]
    await sink_a.close()
    assert written_by_a > 0

    # Worker B (same group) re-forms exactly A's recorded batches: same tokens, dropped by ClickHouse,
    # even though its own batch rule (size, interval) would cut the log elsewhere.
    second = TokenRecorder(get_client(clickhouse_dsn))
    proc_b, sink_b, prod_b = await _processor(settings.model_copy(update={"sink_batch_size": 300}), second)
    try:
        await wait_for(lambda: sink_b.query("SELECT count() FROM request_logs")[0][0] == expected.distinct)
        # ... and every batch of B written: a re-formed batch adds no row, it may come after the count
        await wait_for(lambda: committed_all(kafka_bootstrap, proc_b.group_id, topics, topics.requests),
                       what="B committed every offset")
        assert set(first.tokens) <= set(second.tokens)
        assert sink_b.query("SELECT count(), uniqExact(agent_id, request_id) FROM request_logs")[0] == (
            expected.distinct, expected.distinct)
        assert sink_b.query("SELECT sum(requests) FROM agent_minute")[0][0] == expected.distinct
    finally:
        await proc_b.stop()
        await prod_b.stop()
        await sink_b.close()
