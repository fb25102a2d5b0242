"""The gateway's Kafka producer: idempotent, acks=all, with a bounded wait and honest failures.

``send()`` returns only once Kafka acknowledged every record, or raises ``KafkaUnavailable``.
With idempotence on, aiokafka never gives up on a batch that reached the network: it retries it
until the broker answers. A call that timed out may therefore still be written later; we answer it
503 ("not confirmed, retry the same batch") and the workers dedupe by request id. While such
unresolved produces exist, Kafka is treated as down and new calls fail fast (no memory pile-up);
they resolve, and the gateway recovers, as soon as Kafka is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    DuplicateSequenceNumber,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    UnknownProducerId,
)
from aiokafka.partitioner import DefaultPartitioner

from gateway.errors import KafkaUnavailable
from gateway.metrics import GatewayMetrics
from meterline import faults
from meterline.retry import retry_or_abort

log = logging.getLogger(__name__)

_PARTITIONER = DefaultPartitioner()  # aiokafka's own: murmur2 of the key over the topic's partitions

#: Errors after which an idempotent aiokafka producer is unusable (its sender task has died or its
#: sequence numbers no longer match the broker's, e.g. after a broker restart): start a new one.
_FATAL = (OutOfOrderSequenceNumber, DuplicateSequenceNumber, InvalidProducerEpoch, InvalidProducerIdMapping,
          UnknownProducerId, ProducerFenced, ProducerClosed)


class EventProducer:
    """Owns one ``AIOKafkaProducer``; ``start()``/``stop()`` are driven by the gateway runtime."""

    def __init__(self, bootstrap_servers: str, *, timeout: float, metrics: GatewayMetrics,
                 linger_ms: int = 2, max_inflight: int = 2000, client_id: str = "meterline-gateway",
                 max_request_size: int = 4 * 1024 * 1024) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout = timeout
        self.metrics = metrics
        self.max_inflight = max_inflight
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._unresolved: set[asyncio.Future[Any]] = set()
        self._options: dict[str, Any] = dict(
            bootstrap_servers=bootstrap_servers, client_id=client_id, acks="all", enable_idempotence=True,
            linger_ms=linger_ms, max_batch_size=1024 * 1024, max_request_size=max_request_size,
            request_timeout_ms=max(1000, int(timeout * 1000)), retry_backoff_ms=100,
        )
        # created in start(): aiokafka needs a running loop, and create_app() may be called without one
        self._producer: AIOKafkaProducer | None = None
        self._started = False
        self._resetting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(**self._options)
        try:
            await asyncio.wait_for(self._producer.start(), self.timeout * 4)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._producer.stop()
            raise KafkaUnavailable(f"cannot connect to Kafka at {self.bootstrap_servers}: {exc}") from exc
        self._started = True

    @property
    def available(self) -> bool:
        """False while produces that timed out are still unresolved (Kafka presumed down)."""
        return self._started and not self._unresolved and self._resetting is None

    @property
    def inflight(self) -> int:
        return self._inflight

    async def send(self, topic: str, key: bytes, values: Sequence[bytes], *, as_batch: bool = False) -> None:
        """Publish ``values`` under ``key`` and wait for Kafka's acknowledgement of all of them.

        ``as_batch``: the values go into record batches of their own, one future a batch instead of
        one a record, in the partition the default partitioner gives ``key`` (the MQTT bridge's
        per-agent groups of reports; py-spy had aiokafka's per-record send at a third of the bridge).
        """
        if faults.switch("producer.accept_before_ack"):  # negative control of the fault tests only
            await self._fire_and_forget(topic, key, values)
            return
        if self._started and self._resetting is None and self._sender_dead():
            self._reset("its sender stopped")
        if not self.available:
            raise KafkaUnavailable("Kafka is unavailable; retry later")
        if self._inflight >= self.max_inflight:
            raise KafkaUnavailable("too many ingest calls waiting on Kafka; retry later", code="overloaded")
        self._inflight += 1
        self._idle.clear()
        self.metrics.inflight.inc()
        started = time.perf_counter()
        try:
            await self._send(topic, key, values, started, as_batch)
        finally:
            self._inflight -= 1
            self.metrics.inflight.dec()
            if self._inflight == 0:
                self._idle.set()
        self.metrics.produce_seconds.labels(topic).observe(time.perf_counter() - started)

    async def _fire_and_forget(self, topic: str, key: bytes, values: Sequence[bytes]) -> None:
        """What this class exists to avoid: enqueue, answer at once, drop whatever Kafka never takes."""
        for value in values:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                fut = await asyncio.wait_for(self._current().send(topic, value, key=key), self.timeout)
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _send(self, topic: str, key: bytes, values: Sequence[bytes], started: float,
                    as_batch: bool = False) -> None:
        futures: list[asyncio.Future[Any]] = []
        try:
            # Enqueueing waits only for metadata/buffer space; cancelling it enqueues nothing more.
            async with asyncio.timeout(self.timeout):
                if as_batch:
                    await self._enqueue_batches(topic, key, values, futures)
                else:
                    for value in values:
                        futures.append(await self._current().send(topic, value, key=key))
            remaining = max(0.001, self.timeout - (time.perf_counter() - started))
            # asyncio.wait, not gather: a timeout must not cancel aiokafka's own delivery futures.
            _, pending = await asyncio.wait(futures, timeout=remaining)
            if pending:
                raise TimeoutError
            for fut in futures:
                if (exc := fut.exception()) is not None:
                    raise exc
        except TimeoutError as exc:
            self._fail(topic, futures)
            log.warning("Kafka did not acknowledge %d record(s) on %s within %.1fs", len(values), topic,
                        self.timeout)
            raise KafkaUnavailable("Kafka did not acknowledge in time; retry later") from exc
        except (KafkaError, OSError) as exc:
            self._fail(topic, futures)
            log.warning("Kafka refused a produce on %s: %r", topic, exc)
            if isinstance(exc, _FATAL):
                self._reset(repr(exc))
            raise KafkaUnavailable(f"Kafka refused the write ({type(exc).__name__}); retry later") from exc

    async def _enqueue_batches(self, topic: str, key: bytes, values: Sequence[bytes],
                               futures: list[asyncio.Future[Any]]) -> None:
        producer = self._current()
        partitions = sorted(await producer.partitions_for(topic))
        partition = _PARTITIONER(key, partitions, partitions)  # where send() would put ``key``
        batch = producer.create_batch()
        for value in values:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise KafkaUnavailable(f"a record of {len(value)} bytes does not fit a Kafka batch")
        futures.append(await producer.send_batch(batch, topic, partition=partition))

    def _fail(self, topic: str, futures: list[asyncio.Future[Any]]) -> None:
        self.metrics.produce_failures.labels(topic).inc()
        self._mark_unresolved(futures)

    def _sender_dead(self) -> bool:
        task = getattr(getattr(self._producer, "_sender", None), "_sender_task", None)
        return task is not None and task.done()

    def _reset(self, why: str) -> None:
        """Replace the producer (new producer id); calls get 503 until the new one is connected."""
        if self._resetting is None:
            log.warning("Kafka producer unusable (%s); starting a new one", why)
            self._resetting = asyncio.get_running_loop().create_task(self._replace(), name="producer-reset")

    async def _replace(self) -> None:
        old = self._current()
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), self.timeout)
            self._unresolved.clear()  # futures of the old producer: it is gone
            if await retry_or_abort(self._start_fresh, abort=lambda: not self._started,
                                    retry_on=(KafkaError, OSError, TimeoutError), first=1.0, ceiling=1.0,
                                    on_error=lambda exc, _: log.warning("Kafka producer restart failed (%r); "
                                                                        "retrying", exc)):
                log.info("Kafka producer restarted")
        finally:
            self._resetting = None

    async def _start_fresh(self) -> None:
        fresh = AIOKafkaProducer(**self._options)
        try:
            await asyncio.wait_for(fresh.start(), self.timeout * 2)
        except BaseException:
            with contextlib.suppress(Exception):
                await fresh.stop()
            raise
        self._producer = fresh

    def _mark_unresolved(self, futures: list[asyncio.Future[Any]]) -> None:
        for fut in futures:
            if not fut.done():
                self._unresolved.add(fut)
                fut.add_done_callback(self._resolved)

    def _resolved(self, fut: asyncio.Future[Any]) -> None:
        self._unresolved.discard(fut)
        if not fut.cancelled():
            fut.exception()  # retrieve, so asyncio does not log "exception never retrieved"
        if not self._unresolved:
            log.info("Kafka acknowledged the pending records again; accepting ingest")

    async def probe(self, timeout: float = 2.0) -> bool:
        """True when a broker answers a metadata request now."""
        if not self._started:
            return False
        try:
            client = self._current().client
            async with asyncio.timeout(timeout):
                node = client.get_random_node()
                if node is None:
                    return False
                return bool(await client.ready(node))
        except (KafkaError, OSError, TimeoutError):
            return False

    async def stop(self, drain_timeout: float = 15.0) -> None:
        """Wait for in-flight ingest calls (bounded), then flush and close the producer."""
        if not self._started:
            return
        if self._resetting is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._resetting), self.timeout)
        try:
            await asyncio.wait_for(self._idle.wait(), drain_timeout)
        except TimeoutError:
            log.warning("shutdown: %d ingest call(s) still waiting on Kafka after %.0fs", self._inflight,
                        drain_timeout)
        self._started = False
        try:
            await asyncio.wait_for(self._current().stop(), max(drain_timeout, 1.0))
        except TimeoutError:
            log.warning("shutdown: Kafka producer did not flush within %.0fs", drain_timeout)

    def _current(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise KafkaUnavailable("the Kafka producer is not started")
        return self._producer


__all__ = ["EventProducer"]
