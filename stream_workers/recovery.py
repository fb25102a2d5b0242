"""What a new owner of a partition needs before it processes: the committed offset, the pending range
recorded by the previous owner, and the deduplication state the previous owner had at that offset.

The state is restored from the slice files (``dedupe_store``) when they can be trusted: a chain of slices
ending at some offset ``X`` at or before the committed offset, linked by record digests and anchored by
re-reading the record at its end; then only the records ``[X, committed)`` are re-read — about one slice
of the log instead of the whole window. Anything else — no files (a partition that moved from another
host), files of another log, a damaged file, a chain that does not reach a window back — falls back to
re-reading the records within ``dedupe_window_s`` (Kafka record time) before the committed offset. Both
paths validate records as processing does (``parse_record`` without building rows), so the new owner's
decisions equal the previous owner's (see ``dedupe``); a partition that stays with its owner across a
rebalance keeps its state instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from meterline import faults
from meterline.paths import data_home
from meterline.retry import retry
from stream_workers.dedupe import KEEP_SLICES, LogRecord, WindowDeduper
from stream_workers.dedupe_store import CorruptSlice, SliceStore, record_digest, select_chain
from stream_workers.errors import StreamWorkerError
from stream_workers.records import Handler, parse_record
from stream_workers.settings import WorkerSettings

__all__ = ["PENDING", "LogSource", "Recovery", "restore"]

log = logging.getLogger(__name__)

#: Commit metadata prefix of a recorded batch range: offset ``start`` committed with "pending:<end>".
PENDING: Final = "pending:"


class Recovery:
    """Reads committed offsets with their metadata and restores deduplication states."""

    def __init__(self, settings: WorkerSettings, group_id: str) -> None:
        self._window_ms = settings.dedupe_window_s * 1000
        self._slice_ms = max(1, round(settings.dedupe_slice_s * 1000))
        self._dir = (Path(settings.dedupe_dir) if settings.dedupe_dir else data_home() / "dedupe") / group_id
        self._files = settings.dedupe_files
        self._group_id = group_id
        self._reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
                                        enable_auto_commit=False, auto_offset_reset="earliest",
                                        client_id=f"{group_id}-rebuild",
                                        # a seek waits for the fetch in flight: keep the broker's wait short
                                        fetch_max_wait_ms=20)
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

    def store(self, tp: TopicPartition) -> SliceStore | None:
        """The slice files of ``tp`` for this group (None when ``dedupe_files`` is off)."""
        if not self._files:
            return None
        return SliceStore(self._dir / f"{tp.topic}-{tp.partition}", self._group_id, tp.topic, tp.partition)

    async def rebuild(self, handler: Handler, tp: TopicPartition, committed: int | None) -> WindowDeduper:
        """The deduplication state the previous owner had at ``committed`` (retried until Kafka answers)."""
        store = self.store(tp)
        source = _KafkaLog(self._reader, handler, tp)
        name = f"{tp.topic}/{tp.partition}"
        return await retry(lambda: restore(source, committed, window_ms=self._window_ms, slice_ms=self._slice_ms,
                                           store=store, name=name),
                           retry_on=(KafkaError, StreamWorkerError), first=0.2, ceiling=5.0,
                           on_error=lambda exc, _: log.warning("%s: rebuilding the dedupe window failed (%s); "
                                                               "retrying", tp, exc))


class LogSource(Protocol):
    """One partition's log as a restore reads it (Kafka in production, a list in the unit tests)."""

    async def beginning(self) -> int:
        """The first offset still in the log."""
        ...

    async def offset_for_time(self, timestamp: int) -> int | None:
        """The first offset stamped at or after ``timestamp`` (None: none is)."""
        ...

    def read(self, start: int, end: int) -> AsyncGenerator[list[LogRecord], None]:
        """The records ``[start, end)`` in chunks, each with its valid dedupe keys."""
        ...


async def restore(source: LogSource, committed: int | None, *, window_ms: int, slice_ms: int,
                  store: SliceStore | None, name: str = "partition") -> WindowDeduper:
    """The deduplication state after the records before ``committed``: from slice files when they can
    be trusted, else from the window of the log before ``committed``."""
    started = time.monotonic()
    if committed is None:  # the group starts the partition from its beginning: nothing to restore
        if store is not None:
            await asyncio.to_thread(store.clear)
        return WindowDeduper(window_ms, store=store, slice_ms=slice_ms)
    first = await source.beginning()
    last = await _first(source, committed - 1, committed) if committed > first else None
    if last is None:
        return WindowDeduper(window_ms, store=store, slice_ms=slice_ms)
    horizon = last[1] - window_ms
    found = await source.offset_for_time(max(0, horizon))
    start = max(first, found if found is not None else committed - 1)
    if store is not None:
        deduper, why = await _from_files(source, committed, start, last[1], window_ms, slice_ms, store, name)
        if deduper is not None:
            return deduper
        log.info("%s: %s; re-reading the window of the log instead", name, why)
        await asyncio.to_thread(store.clear)
    # Every record before ``start`` is stamped before the horizon, so watermarked before it too.
    deduper = WindowDeduper(window_ms, store=store, slice_ms=slice_ms, floor=max(0, horizon) - 1)
    count = await _replay(source, deduper, start, committed)
    log.info("%s: rebuilt dedupe window from %d records before offset %d in %.2fs",
             name, count, committed, time.monotonic() - started)
    return deduper


async def _from_files(source: LogSource, committed: int, start: int, last_ts: int, window_ms: int, slice_ms: int,
                      store: SliceStore, name: str) -> tuple[WindowDeduper | None, str]:
    """The state from slice files plus the log after them; (None, why) when they cannot be trusted."""
    started = time.monotonic()
    metas = await asyncio.to_thread(store.scan)
    trust_all = faults.switch("dedupe.trust_uncommitted_slices")  # negative control of the crash test only
    chain = select_chain(metas, committed, window_ms, last_ts, trust_uncommitted=trust_all)
    if not chain:
        return None, f"no dedupe slice file ends at or before offset {committed}"
    newest = chain[-1]
    if newest.end <= start:
        return None, f"the newest dedupe slice file ends at {newest.end}, before the window (from {start})"
    anchor = await _first(source, newest.last_offset, newest.last_offset + 1)
    if anchor is None or anchor[0] != newest.last_offset or record_digest(*anchor[:3]) != newest.last:
        return None, f"dedupe slice files do not match the log at offset {newest.last_offset}"
    try:
        deduper = await asyncio.to_thread(WindowDeduper.from_slices, window_ms, store, chain, slice_ms=slice_ms)
    except CorruptSlice as exc:
        return None, str(exc)
    if trust_all and deduper.position is not None and deduper.position > committed:
        deduper.position = None  # lets the records after the commit be decided again, against themselves
    count = await _replay(source, deduper, newest.end, committed)
    if not deduper.complete():
        return None, f"dedupe slice files from offset {chain[0].first} do not reach a window back"
    kept = {m.path for m in chain}
    expired = deduper.watermark - window_ms - KEEP_SLICES * slice_ms
    for meta in metas:
        if meta.path not in kept and meta.wm_end < expired:
            store.delete(meta.path)
    log.info("%s: restored dedupe state from %d slice files (offsets %d-%d) and %d records re-read before "
             "offset %d in %.2fs", name, len(chain), chain[0].first, newest.end, count, committed,
             time.monotonic() - started)
    return deduper, ""


async def _first(source: LogSource, start: int, end: int) -> LogRecord | None:
    async with aclosing(source.read(start, end)) as chunks:
        async for chunk in chunks:
            return chunk[0]
    return None


async def _replay(source: LogSource, deduper: WindowDeduper, start: int, end: int) -> int:
    """Feed the records ``[start, end)`` to ``deduper``; how many there were."""
    count = 0
    if start < end:
        async for chunk in source.read(start, end):
            deduper.decide(chunk)
            count += len(chunk)
    return count


class _KafkaLog:
    """``LogSource`` over one partition, validating records as processing does (without rows)."""

    def __init__(self, reader: AIOKafkaConsumer, handler: Handler, tp: TopicPartition) -> None:
        self._reader, self._handler, self._tp = reader, handler, tp

    async def beginning(self) -> int:
        self._reader.assign([self._tp])
        return int((await self._reader.beginning_offsets([self._tp]))[self._tp])

    async def offset_for_time(self, timestamp: int) -> int | None:
        found = (await self._reader.offsets_for_times({self._tp: timestamp}))[self._tp]
        return None if found is None else int(found.offset)

    async def read(self, start: int, end: int) -> AsyncGenerator[list[LogRecord], None]:
        tp = self._tp  # assigned by ``beginning``, which a restore asks first
        self._reader.seek(tp, start)
        while True:
            records = await self._next(end)
            if not records:
                return
            yield [(rec.offset, rec.timestamp, rec.value,
                    [key for key, _row in parse_record(self._handler, rec, tp, rows=False).items])
                   for rec in records]
            if records[-1].offset + 1 >= end:
                return

    async def _next(self, end: int) -> list[Any]:
        """The next records before ``end``; [] once past it. Raises if Kafka does not answer."""
        for _ in range(150):
            data = await self._reader.getmany(self._tp, timeout_ms=200, max_records=10_000)
            records = [r for r in data.get(self._tp, []) if r.offset < end]
            if records or data.get(self._tp):
                return records
        raise StreamWorkerError(f"no records from {self._tp.topic}/{self._tp.partition} within 30 s while "
                                "rebuilding")
