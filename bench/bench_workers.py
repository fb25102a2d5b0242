"""Stream worker throughput and freshness: real Kafka, embedded ClickHouse (chDB), one process.

1. Pre-fills a requests topic with N entries (50 per record, 10 % resent as duplicates).
2. Baseline A — raw aiokafka: consume every record of the topic, nothing else.
3. Baseline B — raw ClickHouse: insert the same rows (already enriched, deduplicated) into a fresh
   database with the rollup views, in 20,000-row JSONCompactEachRow blocks (the worker's default batch size).
4. The worker pipeline (``Processor`` + ``ClickHouseSink``, the code ``python -m stream_workers worker``
   runs, without the Faust shell): from the consumer-group join until every row is stored.
5. Freshness: the worker running, records produced at a moderate rate; per row, ``stored_at`` (the
   sink's insert time) minus the Kafka append time (``ingested_at`` is set when the record is sent).

Prints entries/s of each and the worker's ratio to both baselines, all measured in this run.
Run: ``python bench/bench_workers.py [--quick]`` (uses KAFKA_BOOTSTRAP_SERVERS if set, else starts a
local broker).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meterline.clickhouse import INSERT_SETTINGS, get_client  # noqa: E402
from meterline.kafka_admin import create_topics  # noqa: E402
from meterline.local.kafka import LocalKafka  # noqa: E402
from meterline.local.ports import free_port  # noqa: E402
from meterline.migrations import apply_migrations  # noqa: E402
from schemas.topics import Topics  # noqa: E402
from stream_workers.batch import OpenBatch  # noqa: E402
from stream_workers.dedupe import WindowDeduper  # noqa: E402
from stream_workers.handlers.requests import RequestHandler  # noqa: E402
from stream_workers.processor import Processor  # noqa: E402
from stream_workers.settings import WorkerSettings  # noqa: E402
from stream_workers.sink import ClickHouseSink  # noqa: E402
from tests.integration.stream_workers.workload import produce, request_traffic  # noqa: E402


async def raw_consume(bootstrap: str, topic: str, records: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"raw-{uuid.uuid4().hex[:6]}", enable_auto_commit=False)
    await consumer.start()
    started = time.perf_counter()
    seen = 0
    try:
        while seen < records:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                seen += len(batch)
    finally:
        await consumer.stop()
    return time.perf_counter() - started


def raw_insert(dsn: str, records: list[tuple[str, bytes]], topic: str) -> tuple[float, int]:
    handler = RequestHandler()
    dedupe = WindowDeduper(3_600_000)
    rows = []
    for offset, (_, value) in enumerate(records):
        items = handler.parse(value, topic, 0, offset).items
        duplicate = dedupe.decide([(offset, 0, value, [key for key, _row in items])])
        rows += [row for (_key, row), dup in zip(items, duplicate, strict=True) if not dup]
    client = get_client(dsn)
    apply_migrations(client)
    blocks = []
    for i in range(0, len(rows), 20_000):
        batch = OpenBatch(i)
        batch.rows = rows[i:i + 20_000]
        blocks.append(batch.seal(topic, 0, handler.table, handler.columns))
    started = time.perf_counter()
    for sealed in blocks:
        settings = dict(INSERT_SETTINGS, insert_deduplication_token=sealed.token,
                        deduplicate_blocks_in_dependent_materialized_views=1)
        for block in sealed.blocks:
            client.raw_insert(block.table, column_names=block.columns, insert_block=block.data,
                              settings=settings, fmt="JSONCompactEachRow")
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed, len(rows)


async def run_worker(settings: WorkerSettings, dsn: str, until_rows: int, feed: list[tuple[str, bytes]] | None,
                     rate: float) -> tuple[float, ClickHouseSink, Processor, AIOKafkaProducer]:
    sink = ClickHouseSink(lambda: get_client(dsn))
    await sink.start()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                                enable_idempotence=True)
    await producer.start()
    processor = Processor(settings, sink, producer)
    sink.on_outage = processor.set_paused
    await processor.start()
    while not processor.states:  # sustained rate: from the group join on
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    if feed:
        await feed_at_rate(settings, feed, rate)
    while (await asyncio.to_thread(sink.query, "SELECT count() FROM request_logs"))[0][0] < until_rows:
        await asyncio.sleep(0.1)
    return time.perf_counter() - started, sink, processor, producer


async def feed_at_rate(settings: WorkerSettings, records: list[tuple[str, bytes]], entries_per_s: float) -> None:
    import msgspec

    from schemas.events import request_batch_decoder

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=0)
    await producer.start()
    try:
        started = time.perf_counter()
        sent = 0
        for key, value in records:
            rec = request_batch_decoder.decode(value)
            rec.ingested_at = int(time.time() * 1000)
            await producer.send(settings.topics.requests, value=msgspec.json.encode(rec), key=key.encode())
            sent += len(rec.entries)
            ahead = sent / entries_per_s - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


async def main_async(args: argparse.Namespace, bootstrap: str, tmp: Path) -> None:
    entries = 60_000 if args.quick else 300_000
    topics = Topics(prefix=f"bench{uuid.uuid4().hex[:6]}.", partitions=3)
    await create_topics(bootstrap, topics)
    records, expected = request_traffic(entries, agents=16, dup_rate=0.10, late_rate=0.05, seed=1)
    print(f"pre-filling {len(records)} records / {entries} distinct entries (+ duplicates) ...", flush=True)
    await produce(bootstrap, topics.requests, records)

    consume_s = await raw_consume(bootstrap, topics.requests, len(records))
    insert_s, rows = await asyncio.to_thread(raw_insert, f"chdb://{tmp}/raw?database=raw", records, topics.requests)
    assert rows == expected.distinct

    settings = WorkerSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=topics.prefix,
                              partitions=topics.partitions, session_timeout_s=6, sink_interval_s=1.0)
    dsn = f"chdb://{tmp}/worker?database=worker"
    worker_s, sink, processor, producer = await run_worker(settings, dsn, expected.distinct, None, 0)
    rate = expected.distinct / worker_s
    print(f"raw aiokafka consume : {expected.distinct / consume_s:>10,.0f} entries/s")
    print(f"raw ClickHouse insert: {expected.distinct / insert_s:>10,.0f} entries/s")
    print(f"worker pipeline      : {rate:>10,.0f} entries/s  (target >= 30,000)  "
          f"ratio to raw consume {consume_s / worker_s:.2f}, to raw insert {insert_s / worker_s:.2f}")

    # Freshness at moderate load, same worker, same ClickHouse.
    fresh, _ = request_traffic(10_000 if args.quick else 30_000, agents=16, dup_rate=0.0, seed=9)
    fresh = [(k, v.replace(b'"req-', b'"fresh-')) for k, v in fresh]
    started_ms = int(time.time() * 1000)
    await feed_at_rate(settings, fresh, 2000.0)
    total = expected.distinct + (10_000 if args.quick else 30_000)
    while (await asyncio.to_thread(sink.query, "SELECT count() FROM request_logs"))[0][0] < total:
        await asyncio.sleep(0.1)
    p50, p95, p99 = (await asyncio.to_thread(
        sink.query, "SELECT quantilesExact(0.5, 0.95, 0.99)(dateDiff('millisecond', ingested_at, stored_at)) "
        "FROM request_logs WHERE ingested_at >= fromUnixTimestamp64Milli({t:Int64})", {"t": started_ms}))[0][0]
    print(f"freshness at 2,000 entries/s: Kafka append -> stored p50 {p50 / 1000:.2f}s  p95 {p95 / 1000:.2f}s  "
          f"p99 {p99 / 1000:.2f}s  (target p95 <= 5 s; sink interval {settings.sink_interval_s}s)")
    await processor.stop()
    await producer.stop()
    await sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="60k entries instead of 300k")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    try:
        if not bootstrap:
            broker = LocalKafka(tmp / "kafka", port=free_port(), controller_port=free_port()).start()
            bootstrap = broker.bootstrap_servers
        asyncio.run(main_async(args, bootstrap, tmp))
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
