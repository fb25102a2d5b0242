"""Writers of sink batches: to ClickHouse (idempotent, retried) or to the internal sink topic.

``ClickHouseSink.write`` never raises: it retries with exponential backoff until the batch is
written or ``abort()`` says the batch is no longer ours (rebalance, shutdown). While ClickHouse is
down it tells its owner (``on_outage``), who pauses consumption: Kafka lag is the buffer and memory
stays bounded by one open batch per partition. Every insert carries the batch's token and
``deduplicate_blocks_in_dependent_materialized_views`` so a repeated batch changes no table
(the test-only switches ``sink.random_token`` and ``sink.drop_on_error`` of ``meterline.faults``
break that, and the retrying, on purpose).

On a ClickHouse cluster (a ``ShardRouter``) the batch goes to the shard-local replicated tables of
the shard its partition maps to, with the same token (docs/cluster.md says why not the Distributed
tables); a failed attempt is retried on the shard's next replica, which shares the deduplication log.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from meterline import faults
from meterline.clickhouse import INSERT_SETTINGS
from meterline.cluster_sql import ClusterRenderer, local_name
from meterline.migrations import apply_migrations
from meterline.retry import Aborted, retry, retry_or_abort
from meterline.shards import ShardRouter
from stream_workers.batch import SinkBatch, encode_batch
from stream_workers.metrics import BATCHES_WRITTEN, INGEST_TO_STORED, SINK_BATCH_ROWS, SINK_LATENCY, SINK_RETRIES

__all__ = ["BatchWriter", "ClickHouseSink", "TopicSink", "apply_body_ttl"]

log = logging.getLogger(__name__)

Abort = Callable[[], bool]
_BODY_COLUMNS = (("request_body", "String"), ("response_body", "String"), ("headers", "Map(String, String)"))


class BatchWriter(Protocol):
    async def write(self, batch: SinkBatch, abort: Abort) -> bool:
        """Write ``batch``; True once written, False if ``abort()`` turned true first."""
        ...


def apply_body_ttl(client: Client, days: int, cluster: str | None = None) -> None:
    """Keep bodies and headers of ``request_logs`` for ``days`` (migrations create it with 30)."""
    days = int(days)  # validated by the settings; never text in the statement
    renderer = ClusterRenderer(cluster, client.database or "", {"request_logs"}) if cluster else None
    if renderer is not None:  # ON CLUSTER waits for every server: only when the TTL is not set yet
        create = client.query(f"SHOW CREATE TABLE {local_name('request_logs')}").result_rows[0][0]
        if create.count(f"toIntervalDay({days})") == len(_BODY_COLUMNS):
            return
    for name, type_ in _BODY_COLUMNS:
        statement = (f"ALTER TABLE request_logs MODIFY COLUMN {name} {type_} "
                     f"TTL toDateTime(stored_at) + INTERVAL {days} DAY")
        for sql in renderer.render(statement) if renderer else [statement]:
            client.command(sql)


def _partition(token: str) -> int:
    """The Kafka partition of a batch token ``<topic>/<partition>/<start>-<end>`` (see batch.py)."""
    return int(token.rsplit("/", 2)[1])


class ClickHouseSink:
    """Owns one ClickHouse client; all calls run on one thread (chDB has no async client)."""

    def __init__(self, client_factory: Callable[[], Client], *, body_ttl_days: int = 30,
                 retry_max_s: float = 5.0, on_outage: Callable[[bool], None] | None = None,
                 router: ShardRouter | None = None, nice: int = 0) -> None:
        self._factory = client_factory
        self._router = router
        self._client: Client | None = None
        self._ttl_days = body_ttl_days
        self._retry_max = retry_max_s
        self._nice = nice
        self.on_outage = on_outage
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-sink")
        self.down = False

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self) -> Client:
        if self._client is None:
            client = self._factory()
            cluster = self._router.cluster if self._router else None
            apply_migrations(client, cluster=cluster)
            if self._ttl_days != 30:
                apply_body_ttl(client, self._ttl_days, cluster)
            if self._router is not None:
                self._router.discover(client)
            self._client = client
        return self._client

    async def start(self, abort: Abort = lambda: False) -> bool:
        """Connect and migrate, retrying like a write (any failure of the engine is retried)."""
        return await retry_or_abort(
            lambda: self._call(self._connect), abort=abort, first=0.1, ceiling=self._retry_max,
            on_error=lambda exc, delay: log.warning("ClickHouse not ready (%s); retrying in %.1fs", exc, delay))

    def _insert(self, batch: SinkBatch) -> None:
        client = self._connect()
        settings = dict(INSERT_SETTINGS)
        token = batch.token
        if faults.switch("sink.random_token"):  # negative control of the fault tests only
            token = f"{token}/{uuid.uuid4().hex}"
        settings["insert_deduplication_token"] = token
        settings["deduplicate_blocks_in_dependent_materialized_views"] = 1
        # One thread parses a batch: parallel parsing cut one insert's wall time little and cost 15 - 25 %
        # more CPU (20,000 rows with the rollups: 145 against 165 - 188 ms), CPU the one-machine stack lacks.
        settings["input_format_parallel_parsing"] = 0
        if self._nice:  # the engine lowers its threads' priority for the insert and restores it after
            settings["os_thread_priority"] = self._nice
        if self._router is None:
            for block in batch.blocks:
                client.raw_insert(block.table, column_names=block.columns, insert_block=block.data,
                                  settings=settings, fmt="JSONCompactEachRow")
            return
        shard = self._router.shard_of(_partition(batch.token))
        try:
            replica = self._router.client(shard)
            for block in batch.blocks:
                replica.raw_insert(local_name(block.table), column_names=block.columns, insert_block=block.data,
                                   settings=settings, fmt="JSONCompactEachRow")
        except Exception:
            self._router.failed(shard)
            raise

    async def write(self, batch: SinkBatch, abort: Abort) -> bool:
        try:  # the sink never raises: any failure is retried until the batch is written or no longer ours
            seconds = await retry(lambda: self._timed_insert(batch), abort=abort, first=0.1, ceiling=self._retry_max,
                                  on_error=lambda exc, _: self._failed(batch, exc))
        except Aborted:
            return False
        if seconds is None:
            return True  # dropped: the sink.drop_on_error negative control
        if self.down:
            log.warning("ClickHouse is back; resuming consumption")
            self._set_down(False)
        SINK_LATENCY.observe(seconds)
        BATCHES_WRITTEN.labels("clickhouse").inc()
        now_ms = time.time() * 1000
        for block in batch.blocks:
            SINK_BATCH_ROWS.labels(block.table).observe(block.rows)
        for ts in batch.record_ts:
            INGEST_TO_STORED.observe(max(0.0, (now_ms - ts) / 1000))
        return True

    async def _timed_insert(self, batch: SinkBatch) -> float | None:
        """Seconds one insert of ``batch`` took; None if it failed and the negative control dropped it."""
        started = time.perf_counter()
        try:
            await self._call(self._insert, batch)
        except Exception as exc:
            if faults.switch("sink.drop_on_error"):  # negative control: a sink that logs and moves on
                log.error("ClickHouse write of %s failed (%s); batch dropped", batch.token, exc)
                return None
            raise
        return time.perf_counter() - started

    def _failed(self, batch: SinkBatch, exc: BaseException) -> None:
        SINK_RETRIES.labels("clickhouse").inc()
        if not self.down:
            log.warning("ClickHouse write of %s failed (%s); pausing consumption and retrying", batch.token, exc)
            self._set_down(True)

    def _set_down(self, down: bool) -> None:
        self.down = down
        if self.on_outage is not None:
            self.on_outage(down)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read query on the sink's thread (blocking; for tests and the embedded stack)."""
        future = self._executor.submit(lambda: self._connect().query(sql, parameters=parameters).result_rows)
        return [tuple(row) for row in future.result()]

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._call(client.close)
        if self._router is not None:
            await self._call(self._router.close)
        self._executor.shutdown(wait=True)


class TopicSink:
    """Publishes sealed batches to the internal sink topic; the sink owner writes them."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, retry_max_s: float = 5.0) -> None:
        self._producer = producer
        self._topic = topic
        self._retry_max = retry_max_s

    async def write(self, batch: SinkBatch, abort: Abort) -> bool:
        payload = encode_batch(batch)

        def failed(exc: BaseException, _delay: float) -> None:
            SINK_RETRIES.labels("topic").inc()
            log.warning("publishing sink batch %s failed (%s); retrying", batch.token, exc)

        if not await retry_or_abort(lambda: self._producer.send_and_wait(self._topic, value=payload,
                                                                          key=batch.token.encode()),
                                    abort=abort, first=0.1, ceiling=self._retry_max, on_error=failed):
            return False  # any failure is retried, like a ClickHouse write
        BATCHES_WRITTEN.labels("topic").inc()
        return True
