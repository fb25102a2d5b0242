"""``KeyRegistry``: every gateway replica's live view of the compacted keys topic.

At start-up the registry reads the topic from the beginning to its end offsets (no consumer
group: every replica reads everything), then keeps following it, so a revocation published by
``meterline keys revoke`` takes effect on all running replicas within about a second.
Only SHA-256 hashes are stored; ``authenticate`` hashes the presented key and compares in
constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from gateway.errors import MissingKey, RegistryError, RevokedKey, UnknownKey
from gateway.keys.format import hash_key, is_key_format
from gateway.metrics import GatewayMetrics
from schemas.events import ApiKeyRecord, api_key_record_decoder

log = logging.getLogger(__name__)

Listener = Callable[[str, ApiKeyRecord | None], None]


@dataclass(frozen=True)
class AgentIdentity:
    """Who a valid key belongs to."""

    agent_id: str
    key_sha256: str
    name: str | None = None
    prefix: str | None = None


class KeyRegistry:
    """In-memory map ``sha256 -> ApiKeyRecord`` loaded from and following the keys topic."""

    def __init__(self, bootstrap_servers: str, topic: str, *, metrics: GatewayMetrics | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.metrics = metrics
        self._records: dict[str, ApiKeyRecord] = {}
        self._listeners: list[Listener] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.loaded = False
        self.last_update = 0.0

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self, timeout: float = 30.0) -> None:
        """Load the topic up to its current end, then follow it in the background."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    fetch_max_wait_ms=200, client_id="meterline-key-registry")
        try:
            async with asyncio.timeout(timeout):
                await consumer.start()
                partitions = await self._partitions(consumer)
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                ends = await consumer.end_offsets(partitions)
                while await self._behind(consumer, ends):
                    self._apply_batch(await consumer.getmany(timeout_ms=200))
        except (KafkaError, OSError, TimeoutError) as exc:
            await consumer.stop()
            raise RegistryError(f"cannot load API keys from topic {self.topic!r} at "
                                f"{self.bootstrap_servers}: {exc!r}") from exc
        self._consumer = consumer
        self.loaded = True
        log.info("key registry loaded %d key(s) from %s", len(self._records), self.topic)
        self._task = asyncio.create_task(self._follow(consumer), name="key-registry-follow")

    @staticmethod
    async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return True
        return False

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        while True:
            # partitions_for_topic() only knows subscribed topics; ask for the whole cluster's metadata.
            cluster = await consumer._client.fetch_all_metadata()
            parts = cluster.partitions_for_topic(self.topic)
            if parts:
                return [TopicPartition(self.topic, p) for p in sorted(parts)]
            await asyncio.sleep(0.2)  # topic being created; bounded by the caller's timeout

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                self._apply_batch(await consumer.getmany(timeout_ms=500))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep following; aiokafka reconnects by itself
                log.exception("key registry: error while following %s; retrying", self.topic)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                await consumer.stop()
            except asyncio.CancelledError:
                # aiokafka's fetcher re-raises the cancellation of its own fetch task when it is
                # stopped while the broker is unreachable; only a cancellation of ours may propagate.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                log.warning("key registry: consumer stopped while Kafka was unreachable")

    # --- state ------------------------------------------------------------------------------------
    def _apply_batch(self, batch: dict[TopicPartition, list[object]]) -> None:
        for messages in batch.values():
            for msg in messages:
                self.apply(getattr(msg, "key", None), getattr(msg, "value", None))

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one keys-topic record (a tombstone deletes); malformed records are skipped."""
        if key is None:
            return
        sha = key.decode("ascii", "replace")
        record: ApiKeyRecord | None = None
        if value is None:
            self._records.pop(sha, None)
        else:
            try:
                record = api_key_record_decoder.decode(value)
            except msgspec.DecodeError:
                log.warning("key registry: skipping a malformed record for key hash %s...", sha[:12])
                return
            self._records[record.key_sha256] = record
            sha = record.key_sha256
        self.last_update = time.time()
        self._update_gauge()
        for listener in self._listeners:
            try:
                listener(sha, record)
            except Exception:  # noqa: BLE001 - a listener must not stop the registry
                log.exception("key registry listener failed")
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _update_gauge(self) -> None:
        if self.metrics is None:
            return
        active = sum(1 for r in self._records.values() if r.status == "active")
        self.metrics.keys_loaded.labels("active").set(active)
        self.metrics.keys_loaded.labels("revoked").set(len(self._records) - active)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(key_sha256, record_or_None)`` on every change after start-up."""
        self._listeners.append(listener)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds after some update (True) or the timeout passes (False)."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
                return True
        except TimeoutError:
            return predicate()

    def records(self) -> list[ApiKeyRecord]:
        return sorted(self._records.values(), key=lambda r: (r.agent_id, r.created_at))

    def lookup_hash(self, key_sha256: str) -> ApiKeyRecord | None:
        return self._records.get(key_sha256)

    # --- auth -------------------------------------------------------------------------------------
    def authenticate(self, raw_key: str | None) -> AgentIdentity:
        """The owner of an active key; raises ``MissingKey``/``UnknownKey`` (401), ``RevokedKey`` (403)."""
        if not raw_key:
            raise MissingKey("missing API key: send 'Authorization: Bearer <key>'")
        if not is_key_format(raw_key):
            raise UnknownKey("invalid API key: expected ml_sk_ (or gt8004_sk_) followed by 64 hex characters")
        sha = hash_key(raw_key)
        record = self._records.get(sha)
        if record is None or not hmac.compare_digest(record.key_sha256.encode(), sha.encode()):
            raise UnknownKey("unknown API key")
        if record.status != "active":
            raise RevokedKey("API key has been revoked")
        return AgentIdentity(agent_id=record.agent_id, key_sha256=sha, name=record.name, prefix=record.prefix)


__all__ = ["AgentIdentity", "KeyRegistry", "Listener"]
