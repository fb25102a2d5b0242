"""What a new owner of a partition needs before it processes: the committed offset, the pending range
recorded by the previous owner, and the deduplication window rebuilt from the log.

The rebuild re-reads the records within ``dedupe_window_s`` (Kafka record time) before the committed
offset with the same validation as processing (``parse_record`` without building rows), so the new
owner's decisions equal the previous owner's (see ``dedupe``). Its cost is one pass over that window of
the partition; a partition that stays with its owner across a rebalance keeps its state instead.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from meterline.retry import retry
from stream_workers.dedupe import WindowDeduper
from stream_workers.errors import StreamWorkerError
from stream_workers.records import Handler, parse_record
from stream_workers.settings import WorkerSettings

__all__ = ["PENDING", "Recovery"]

log = logging.getLogger(__name__)

#: Commit metadata prefix of a recorded batch range: offset ``start`` committed with "pending:<end>".
PENDING: Final = "pending:"


class Recovery:
    """Reads committed offsets with their metadata and rebuilds deduplication windows."""

    def __init__(self, settings: WorkerSettings, group_id: str) -> None:
        self._window_ms = settings.dedupe_window_s * 1000
        self._group_id = group_id
        self._reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
                                        enable_auto_commit=False, auto_offset_reset="earliest",
                                        client_id=f"{group_id}-rebuild")
        self._admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)

    async def start(self) -> None:
        await self._admin.start()
        await self._reader.start()

    async def stop(self) -> None:
        await self._reader.stop()
        await self._admin.close()

    async def committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, tuple[int | None, int | None]]:
        if not tps:
            return {}
        found = await retry(lambda: self._admin.list_consumer_group_offsets(self._group_id, partitions=tps),
                            retry_on=KafkaError, first=0.1, ceiling=5.0,
                            on_error=lambda exc, _: log.warning("reading committed offsets failed (%s); retrying", exc))
        out: dict[TopicPartition, tuple[int | None, int | None]] = {}
        for tp in tps:
            meta = found.get(tp)
            if meta is None or meta.offset < 0:
                out[tp] = (None, None)
                continue
            pending = int(meta.metadata[len(PENDING):]) if meta.metadata.startswith(PENDING) else None
            out[tp] = (meta.offset, pending)
        return out

    async def rebuild(self, handler: Handler, tp: TopicPartition, committed: int | None) -> WindowDeduper:
        """The deduplication state the previous owner had at ``committed`` (retried until Kafka answers)."""
        if committed is None:
            return WindowDeduper(self._window_ms)
        start = committed

        async def attempt() -> WindowDeduper:  # each attempt starts from an empty window
            deduper = WindowDeduper(self._window_ms)
            await self._rebuild(handler, tp, start, deduper)
            return deduper

        return await retry(attempt, retry_on=(KafkaError, StreamWorkerError), first=0.2, ceiling=5.0,
                           on_error=lambda exc, _: log.warning("%s: rebuilding the dedupe window failed (%s); "
                                                               "retrying", tp, exc))

    async def _rebuild(self, handler: Handler, tp: TopicPartition, committed: int, deduper: WindowDeduper) -> None:
        reader = self._reader
        started = time.monotonic()
        reader.assign([tp])
        first = (await reader.beginning_offsets([tp]))[tp]
        if committed <= first:
            return
        reader.seek(tp, committed - 1)
        last = await self._read(reader, tp, committed)
        if not last:
            return
        horizon = last[-1].timestamp - self._window_ms
        found = (await reader.offsets_for_times({tp: max(0, horizon)}))[tp]
        start = max(first, found.offset if found is not None else committed - 1)
        reader.seek(tp, start)
        count = 0
        while True:
            records = await self._read(reader, tp, committed)
            if not records:
                break
            for rec in records:
                parsed = parse_record(handler, rec, tp, rows=False)
                for key, _row in parsed.items:
                    deduper.is_duplicate(key, rec.timestamp)
                count += 1
            if records[-1].offset + 1 >= committed:
                break
        log.info("%s: rebuilt dedupe window from %d records before offset %d in %.2fs",
                 tp, count, committed, time.monotonic() - started)

    @staticmethod
    async def _read(reader: AIOKafkaConsumer, tp: TopicPartition, end: int) -> list[Any]:
        """The next records before ``end``; [] once past it. Raises if Kafka does not answer."""
        for _ in range(150):
            data = await reader.getmany(tp, timeout_ms=200, max_records=10_000)
            records = [r for r in data.get(tp, []) if r.offset < end]
            if records or data.get(tp):
                return records
        raise StreamWorkerError(f"no records from {tp.topic}/{tp.partition} within 30 s while rebuilding")
