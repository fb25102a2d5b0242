"""The sink owner's loop in "topic" mode: sink batches from the internal topic into ClickHouse.

Embedded chDB may be opened by one process only, so when several worker processes share the
partitions they publish their sealed batches (``TopicSink``) and the one process that owns chDB
writes them. Each message is one batch with its own token; a message is committed only after its
batch was written, and a replayed message is dropped by ClickHouse's insert deduplication. With a
ClickHouse server, use ``METERLINE_SINK_MODE=direct`` instead and every worker writes its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from stream_workers.batch import decode_batch
from stream_workers.consumer import Rebalance, set_paused
from stream_workers.settings import WorkerSettings
from stream_workers.sink import ClickHouseSink

__all__ = ["SinkConsumer"]

log = logging.getLogger(__name__)


class SinkConsumer:
    """Writes the batches of the sink topic to ClickHouse, committing each after its write."""

    def __init__(self, settings: WorkerSettings, sink: ClickHouseSink) -> None:
        self.settings = settings
        self.sink = sink
        self._lock = asyncio.Lock()
        self._rebalancing = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        session_ms = int(settings.session_timeout_s * 1000)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers, group_id=f"{settings.app_id}.sink",
            enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, session_ms // 4), max_poll_interval_ms=600_000,
            max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)

    def set_paused(self, paused: bool) -> None:
        """Pause the sink topic while ClickHouse is down (``ClickHouseSink.on_outage``)."""
        set_paused(self.consumer, paused)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._rebalancing = True  # a write in progress gives up; wait until it has
        async with self._lock:
            pass

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._rebalancing = False

    async def start(self) -> None:
        self.consumer.subscribe([self.settings.sink_topic], listener=Rebalance(self._on_revoked, self._on_assigned))
        await self.consumer.start()
        self._task = asyncio.create_task(self._run(), name="meterline-sink")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()

    def _abort(self) -> bool:
        return self._stopping or self._rebalancing

    async def _run(self) -> None:
        while not self._stopping:
            try:
                data = await self.consumer.getmany(timeout_ms=200, max_records=100)
            except KafkaError as exc:
                log.warning("sink fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            async with self._lock:
                for tp, records in data.items():
                    if not await self._write(tp, records):
                        break

    async def _write(self, tp: TopicPartition, records: list[Any]) -> bool:
        done = None
        for rec in records:
            try:
                batch = decode_batch(rec.value)
            except msgspec.DecodeError:
                log.error("undecodable sink batch at %s offset %d: skipped", tp, rec.offset)
                done = rec.offset + 1
                continue
            if not await self.sink.write(batch, self._abort):
                break
            done = rec.offset + 1
        if done is None:
            return False
        try:
            await self.consumer.commit({tp: OffsetAndMetadata(done, "")})
        except KafkaError as exc:
            log.warning("sink commit of %s failed: %s", tp, exc)
            return False
        last: int = records[-1].offset
        return bool(done == last + 1)
