"""The processing loop: requests/usage partitions → validated, deduplicated, offset-aligned batches.

Plain aiokafka consumers with manual commits run inside the Faust worker (``app.py``) instead of
Faust streams, because exactly-once totals need control Faust does not give: Faust acks and commits
on its own (an escaping exception or ``take()`` commits past unwritten events), it cannot store the
pending range in the commit, and it does not let a new owner re-form a recorded batch.

Per partition, in log order:

1. records are validated and enriched (``handlers/``), invalid ones become dead
   letters; valid keys pass the log-deterministic ``WindowDeduper``;
2. a batch closes at ``sink_batch_size`` entries, ``sink_batch_bytes`` or ``sink_interval_s``;
3. its range ``[start, end)`` is committed first as metadata ``pending:<end>`` at offset ``start``;
4. dead letters are published, the batch is written (``BatchWriter``) under the token
   ``topic/partition/start-end``; the writer retries until it succeeds;
5. offset ``end`` is committed.

A crash anywhere replays from ``start``; the new owner reads the pending range, rebuilds the
deduplication window from the log before ``start``, re-forms the identical batch and writes it under
the same token, which ClickHouse drops as a duplicate. So totals are exact for any crash point.

The two crash windows carry fault points (``meterline.faults``) so tests kill the worker exactly
there: ``processor.after_record`` (range recorded, nothing written) and ``processor.after_write``
(written, offset not committed). ``processor.no_pending_record`` switches step 3 off and
``processor.no_dedupe`` step 1's deduplication, for negative controls that show what they protect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from msgspec import json as msgjson

from meterline import faults
from meterline.retry import retry_or_abort
from stream_workers.batch import OpenBatch
from stream_workers.consumer import Rebalance, set_paused
from stream_workers.dedupe import WindowDeduper
from stream_workers.handlers import DeadLetterHandler, RequestHandler, UsageHandler
from stream_workers.metrics import CLAMPED, CONSUMER_LAG, DEAD_LETTERS, DEDUPE_HITS, EVENTS_IN, EVENTS_OUT
from stream_workers.records import Handler, Parsed, parse_record
from stream_workers.recovery import PENDING, Recovery
from stream_workers.settings import WorkerSettings
from stream_workers.sink import BatchWriter

__all__ = ["PartitionState", "Processor"]

log = logging.getLogger(__name__)
_encode = msgjson.Encoder().encode


@dataclass(slots=True)
class PartitionState:
    tp: TopicPartition
    handler: Handler
    deduper: WindowDeduper
    position: int | None = None  # next offset to process
    pending_end: int | None = None  # recorded end of the range the open batch must re-form
    batch: OpenBatch | None = None  # open: collecting records
    writing: OpenBatch | None = None  # closed: being written by ``task`` (one at a time, in order)
    task: asyncio.Task[bool] | None = None

    def idle(self) -> bool:
        return self.batch is None and self.writing is None


class Processor:
    """Consumes the requests and usage topics of ``settings`` and hands batches to ``writer``."""

    def __init__(self, settings: WorkerSettings, writer: BatchWriter, producer: AIOKafkaProducer,
                 handlers: dict[str, Handler] | None = None) -> None:
        self.settings = settings
        self.writer = writer
        self.producer = producer
        topics = settings.topics
        self.handlers: dict[str, Handler] = handlers or {
            topics.requests: RequestHandler(settings.max_event_age_days),
            topics.usage: UsageHandler(settings.max_event_age_days),
            topics.dead_letters: DeadLetterHandler(),
        }
        self.group_id = f"{settings.app_id}.process"  # the Faust consumer owns the app id group
        self.states: dict[TopicPartition, PartitionState] = {}
        self._retained: dict[TopicPartition, PartitionState] = {}
        self._lock = asyncio.Lock()
        self._rebalancing = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        #: Called with the exception if the loop dies of a bug; the worker service stops the process
        #: (nothing uncommitted is lost: a restart resumes from the committed ranges).
        self.on_fatal: Callable[[BaseException], None] | None = None
        session_ms = int(settings.session_timeout_s * 1000)
        common: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers,
                                  "enable_auto_commit": False, "auto_offset_reset": "earliest"}
        self.consumer = AIOKafkaConsumer(
            group_id=self.group_id, session_timeout_ms=session_ms, heartbeat_interval_ms=max(100, session_ms // 4),
            max_poll_interval_ms=600_000, rebalance_timeout_ms=max(30_000, session_ms * 3),
            client_id=f"{self.group_id}-processor", **common)
        self._recovery = Recovery(settings, self.group_id)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._recovery.start()
        self.consumer.subscribe(list(self.handlers), listener=Rebalance(self._on_revoked, self._on_assigned,
                                                                         on_failure=self._fail))
        await self.consumer.start()
        self._task = asyncio.create_task(self._run(), name="meterline-processor")

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Stop consuming, write what is open (within ``flush_timeout``), commit, leave the group."""
        self._stopping = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        deadline = time.monotonic() + flush_timeout
        async with self._lock:
            for state in list(self.states.values()):
                await self._drain(state, abort=lambda: time.monotonic() > deadline)
            self.states.clear()
        await self.consumer.stop()
        await self._recovery.stop()

    def _abort(self) -> bool:
        return self._stopping or self._rebalancing

    # -- main loop ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: BaseException) -> None:
        log.exception("stream processing failed: %r", exc)
        self._stopping = True
        if self.on_fatal is not None:
            self.on_fatal(exc)

    async def _loop(self) -> None:
        interval = self.settings.sink_interval_s
        while not self._stopping:
            try:
                data = await self.consumer.getmany(timeout_ms=min(200, int(interval * 1000)), max_records=20_000)
            except KafkaError as exc:
                log.warning("fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            async with self._lock:
                await self._process(data)
                now = time.monotonic()
                for state in list(self.states.values()):
                    batch = state.batch
                    if (batch is not None and state.pending_end is None and now - batch.opened >= interval
                            and (state.task is None or state.task.done()) and not self._abort()):
                        await self._close(state)
                self._update_lag()

    async def _process(self, data: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in data.items():
            state = self.states.get(tp)
            if state is None:
                continue
            if state.position is not None:
                records = [rec for rec in records if rec.offset >= state.position]
            # The whole fetch is deduplicated at once (the decisions do not depend on where batches close).
            parsed = [parse_record(state.handler, rec, tp, rows=True) for rec in records]
            duplicate = state.deduper.decide([(rec.offset, rec.timestamp, rec.value, [key for key, _row in p.items])
                                              for rec, p in zip(records, parsed, strict=True)])
            at = 0
            for rec, p in zip(records, parsed, strict=True):
                self._add(state, rec, p, duplicate[at:at + len(p.items)])
                at += len(p.items)
                if self._should_close(state) and not await self._close(state):
                    return  # rebalance or shutdown: the batch stays pending for its next owner

    def _add(self, state: PartitionState, rec: Any, parsed: Parsed, duplicate: list[bool]) -> None:
        batch = state.batch
        if batch is None:
            batch = state.batch = OpenBatch(rec.offset)
        handler = state.handler
        ts = rec.timestamp
        rows = batch.rows
        hits = 0
        keep_all = faults.switch("processor.no_dedupe")  # negative control of the fault tests only
        for (_key, row), dup in zip(parsed.items, duplicate, strict=True):
            if dup and not keep_all:
                hits += 1
            else:
                rows.append(row)
        if parsed.dead:
            batch.dead.extend(parsed.dead)
        EVENTS_IN.labels(handler.kind).inc(len(parsed.items) + len(parsed.dead))
        if hits:
            DEDUPE_HITS.labels(handler.kind).inc(hits)
        for why in parsed.clamped:
            CLAMPED.labels(why).inc()
        batch.end = rec.offset + 1
        batch.nbytes += len(rec.value or b"")
        batch.record_ts.append(ts)
        state.position = rec.offset + 1

    def _should_close(self, state: PartitionState) -> bool:
        batch = state.batch
        if batch is None:
            return False
        if state.pending_end is not None:
            return batch.end >= state.pending_end
        return (len(batch.rows) + len(batch.dead) >= self.settings.sink_batch_size
                or batch.nbytes >= self.settings.sink_batch_bytes)

    async def _close(self, state: PartitionState) -> bool:
        """Hand the open batch to the partition's writer task once the previous one is written.

        Writing overlaps with processing the next records; at most one batch per partition is
        being written and one collected, so memory stays bounded. False: rebalance or shutdown.
        """
        if state.task is not None:
            if not await state.task:
                return False
            state.task = None
        if state.writing is not None and not await self._write(state, state.writing, self._abort):
            return False  # a write that gave up earlier goes first
        batch = state.batch
        if batch is None:
            return True
        batch.recorded = state.pending_end is not None
        state.batch, state.pending_end, state.writing = None, None, batch
        state.task = asyncio.create_task(self._write(state, batch, self._abort),
                                         name=f"write {state.tp.topic}/{state.tp.partition}")
        return True

    async def _drain(self, state: PartitionState, abort: Callable[[], bool]) -> bool:
        """Write everything the partition holds (shutdown, revocation). True if nothing is left."""
        if state.task is not None:
            await state.task
            state.task = None
        if state.writing is not None and not await self._write(state, state.writing, abort):
            return False
        batch = state.batch
        if batch is not None:
            if state.pending_end is not None and batch.end < state.pending_end:
                return False  # a recorded range not read completely yet: its next owner re-forms it
            batch.recorded = state.pending_end is not None
            state.batch, state.pending_end, state.writing = None, None, batch
            if not await self._write(state, batch, abort):
                return False
        return True

    async def _write(self, state: PartitionState, batch: OpenBatch, abort: Callable[[], bool]) -> bool:
        """Record the range, publish dead letters, write, commit. False leaves ``state.writing`` set."""
        tp = state.tp
        if not batch.recorded:
            if not faults.switch("processor.no_pending_record") and not await self._commit(
                    tp, batch.start, f"{PENDING}{batch.end}", abort):
                return False
            batch.recorded = True
            faults.point("processor.after_record", range=f"{tp.topic}/{tp.partition}/{batch.start}-{batch.end}")
        if batch.dead and not await self._publish_dead_letters(batch, abort):
            return False
        sealed = batch.seal(tp.topic, tp.partition, state.handler.table, state.handler.columns)
        if not await self.writer.write(sealed, abort):
            return False
        faults.point("processor.after_write", token=sealed.token, rows=sealed.rows)
        if not await self._commit(tp, batch.end, "", abort):
            return False
        EVENTS_OUT.labels(state.handler.kind).inc(len(batch.rows))
        if state.writing is batch:
            state.writing = None
        return True

    async def _commit(self, tp: TopicPartition, offset: int, metadata: str, abort: Callable[[], bool]) -> bool:
        return await retry_or_abort(
            lambda: self.consumer.commit({tp: OffsetAndMetadata(offset, metadata)}), abort=abort,
            retry_on=KafkaError, first=0.05, ceiling=2.0,
            on_error=lambda exc, _: log.warning("commit of %s at %d failed: %s", tp, offset, exc))

    async def _publish_dead_letters(self, batch: OpenBatch, abort: Callable[[], bool]) -> bool:
        dlq = self.settings.topics.dead_letters

        async def publish() -> None:
            futures = [await self.producer.send(dlq, value=_encode(d),
                                                key=f"{d.source_topic}/{d.partition}/{d.offset}".encode())
                       for d in batch.dead]
            await asyncio.gather(*futures)

        if not await retry_or_abort(publish, abort=abort, retry_on=KafkaError, first=0.1,
                                    ceiling=self.settings.sink_retry_max_s,
                                    on_error=lambda exc, _: log.warning("publishing dead letters failed (%s); "
                                                                        "retrying", exc)):
            return False
        for d in batch.dead:
            DEAD_LETTERS.labels(d.reason).inc()
        return True

    # -- pause / lag ------------------------------------------------------------------------------------
    def set_paused(self, paused: bool) -> None:
        """Pause every assigned partition while the sink is down (``ClickHouseSink.on_outage``)."""
        set_paused(self.consumer, paused)

    def _update_lag(self) -> None:
        for tp, state in self.states.items():
            high = self.consumer.highwater(tp)
            if high is not None and state.position is not None:
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, high - state.position))

    # -- rebalancing ------------------------------------------------------------------------------------
    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._rebalancing = True
        async with self._lock:
            for tp in revoked:
                state = self.states.pop(tp, None)
                if state is None:
                    continue
                if await self._drain(state, abort=lambda: True) and state.idle():  # one attempt each
                    self._retained[tp] = state

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            mine = [tp for tp in assigned if tp.topic in self.handlers]
            committed = await self._recovery.committed(mine)
            for tp in mine:
                offset, pending_end = committed.get(tp, (None, None))
                old = self._retained.pop(tp, None)
                if (old is not None and old.position == offset and pending_end is None
                        and old.deduper.position in (None, offset)):  # not ahead: a fetch half processed
                    state = old
                else:
                    handler = self.handlers[tp.topic]
                    deduper = await self._recovery.rebuild(handler, tp, offset)
                    state = PartitionState(tp, handler, deduper)
                state.position = offset
                state.pending_end = pending_end
                if pending_end is not None:
                    log.info("%s: re-forming the recorded batch %d-%d", tp, offset, pending_end)
                state.batch = state.writing = state.task = None
                self.states[tp] = state
            self._retained.clear()
            self._rebalancing = False
        log.info("assigned %s", sorted((tp.topic, tp.partition) for tp in mine))
