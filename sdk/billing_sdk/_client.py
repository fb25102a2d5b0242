"""``BillingClient``: the process-wide MQTT usage reporter.

One background supervisor task per client keeps one connection up (``_connection.MqttConnection``),
reconnecting with exponential backoff and jitter; per connection it subscribes ``billing/keys/status``
(Meterline's hashed key list) and ``billing/keys/update`` (the original protocol's; a broker may refuse
it to this login, which is fine), asks for the key list on ``billing/keys/request``, publishes queued
reports with QoS 1 (at most ``max_inflight`` unacknowledged) and a heartbeat every
``heartbeat_interval`` seconds. ``report_usage`` never waits on the network: it validates, queues
(bounded, optionally spooled to disk) and returns.

Key checks: a key the server announced as blocked, or one absent from a full key list, is refused with
``InvalidApiKeyError``, before anything is queued. Until the first key list after a connect arrives, a
key is "unknown yet": ``validate_api_key`` (used by ``@require_api_key``) waits for that first update
at most ``key_wait_timeout`` seconds after the connection came up, then lets unknown keys through
(the server does not bill unknown keys: it dead-letters them). This keeps a slow or silent billing
server from taking the host service down, and matches the original SDK, which accepted unknown keys.
Key lists are believed as far as the broker lets only the billing server publish them (``_keys``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
from collections.abc import Callable
from typing import Any, ClassVar

import orjson

from ._config import BrokerConfig, apply_env
from ._connection import MqttConnection
from ._errors import (
    AuthenticationError,
    BrokerConnectionError,
    InvalidApiKeyError,
    MissingApiKeyError,
    NotConnectedError,
    TlsVerificationError,
)
from ._keys import KeyRegistry
from ._models import UsageData, build_report, now_ms
from ._queue import QueuedReport, QueueStats, ReportQueue

__all__ = ["BillingClient", "get_billing_client", "report_usage"]

logger = logging.getLogger(__name__)

TOPIC_REPORT = "billing/report"
TOPIC_KEYS_REQUEST = "billing/keys/request"
TOPIC_KEYS_UPDATE = "billing/keys/update"
TOPIC_KEYS_STATUS = "billing/keys/status"
TOPIC_HEARTBEAT = "billing/heartbeat"
TOPIC_PING = "billing/ping"
MAX_KEYS_MESSAGE = 16 * 1024 * 1024


class BillingClient:
    """Process-wide singleton: constructing it again returns the first instance, unchanged."""

    _instance: ClassVar[BillingClient | None] = None
    _initialised: bool = False

    def __new__(cls, *args: Any, **kwargs: Any) -> BillingClient:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __init__(
        self,
        broker_host: str,
        broker_port: int = 8883,
        username: str | None = None,
        password: str | None = None,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        tls: bool = True,
        insecure: bool = False,
        client_id: str | None = None,
        app_id: str | None = None,
        queue_size: int = 10_000,
        spool_path: str | os.PathLike[str] | None = None,
        on_drop: Callable[[int], None] | None = None,
        connect_timeout: float = 10.0,
        keepalive: int = 30,
        heartbeat_interval: float = 10.0,
        reconnect_min_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        key_wait_timeout: float = 2.0,
        max_inflight: int = 100,
        use_env: bool = True,
    ) -> None:
        if self._initialised:
            logger.debug("BillingClient already exists: new constructor arguments ignored (singleton)")
            return
        config = BrokerConfig(broker_host, int(broker_port), username, password,
                              os.fspath(ca_file) if ca_file is not None else None, tls, insecure)
        self._config = apply_env(config) if use_env else config
        self._client_id = client_id or ""
        self._app_id = app_id
        self._queue = ReportQueue(queue_size, spool_path, on_drop)
        self._keys = KeyRegistry()
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._heartbeat_interval = heartbeat_interval
        self._backoff = (reconnect_min_delay, reconnect_max_delay)
        self._key_wait_timeout = key_wait_timeout
        self._max_inflight = max(1, max_inflight)
        self._conn: MqttConnection | None = None
        self._generation = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first: asyncio.Future[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._keys_deadline = 0.0
        self._last_error: BaseException | None = None
        self._permanent_error: BaseException | None = None
        self._closed = False
        self._initialised = True
        logger.info("BillingClient for %r", self._config)
        with contextlib.suppress(RuntimeError):  # constructed inside a running loop: connect in the background
            asyncio.get_running_loop()
            self._start()

    # ----------------------------------------------------------------- lifecycle
    def _start(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if self._supervisor is not None and not self._supervisor.done() and self._loop is loop:
            assert self._first is not None
            return self._first
        if self._loop is not loop:  # first start, or a new asyncio.run(): loop-bound state is rebuilt
            old_loop, old_stop = self._loop, self._stop
            if old_loop is not None and old_stop is not None and not old_loop.is_closed():
                old_loop.call_soon_threadsafe(old_stop.set)  # one supervisor at a time
            self._keys.rebind()
            self._conn = None  # a connection of a previous loop is dead with it
        self._loop = loop
        self._closed = False
        self._first = loop.create_future()
        self._wake, self._stop = asyncio.Event(), asyncio.Event()
        self._supervisor = loop.create_task(self._supervise(self._first, self._stop), name="billing-sdk-mqtt")
        return self._first

    async def connect(self) -> None:
        """Connect (TLS by default) and wait for the broker's CONNACK, up to ``connect_timeout`` seconds.

        Raises ``AuthenticationError`` / ``TlsVerificationError`` (permanent: the client stops) or
        ``BrokerConnectionError`` on timeout (the client keeps retrying in the background; reports queue).
        """
        if self.is_connected() and self._loop is asyncio.get_running_loop():
            return
        self._permanent_error = None
        first = self._start()
        try:
            await asyncio.wait_for(asyncio.shield(first), self._connect_timeout)
        except TimeoutError:
            raise BrokerConnectionError(
                f"no connection to MQTT broker {self._config.host}:{self._config.port} within "
                f"{self._connect_timeout:g} s (last error: {self._last_error}); still retrying in the background"
            ) from None

    def is_connected(self) -> bool:
        return self._conn is not None and self._conn.connected

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued report was acknowledged by the broker; False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self._queue):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def disconnect(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout`` seconds), then close the connection."""
        supervisor = self._supervisor
        if supervisor is None or supervisor.done():
            self._closed = True
            return
        if self.is_connected():
            await self.flush(timeout)
        if len(self._queue):
            logger.warning("billing: disconnecting with %d reports not yet acknowledged%s", len(self._queue),
                           " (kept in the spool)" if self._queue.spooled else "")
        self._closed = True
        assert self._stop is not None
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor

    @classmethod
    def _reset_singleton(cls) -> None:
        """Forget the singleton (tests only); the old instance must be disconnected first."""
        if cls._instance is not None:
            cls._instance._queue.close()
        cls._instance = None

    # ----------------------------------------------------------------- public reporting API
    async def report_usage(self, usage_data: UsageData) -> None:
        """Queue one usage report; returns at once (delivery happens in the background, QoS 1).

        Raises ``InvalidApiKeyError`` for a key the server refused, ``InvalidUsageError`` for a malformed
        report, ``NotConnectedError`` after ``disconnect()``. A full queue drops the report, counted in
        ``stats().dropped`` and passed to ``on_drop``.
        """
        if self._closed:
            raise NotConnectedError("BillingClient was disconnected; call connect() before reporting usage")
        info = self._keys.check(usage_data.api_key) if usage_data.api_key else None
        report_id, payload = build_report(usage_data, self._app_id or (info.app_id if info else None))
        if self._queue.put(QueuedReport(report_id, payload)):
            if self._permanent_error is None:  # auto-connect, but never loop on a refused login
                self._start()
            if self._wake is not None:
                self._wake.set()

    async def validate_api_key(self, api_key: str) -> None:
        """Raise ``MissingApiKeyError`` / ``InvalidApiKeyError`` unless ``api_key`` may be served."""
        if not api_key:
            raise MissingApiKeyError("API key is required (gRPC metadata 'api-key' or 'apikey')")
        if self._keys.updates_received == 0 and self._supervisor is not None and not self._supervisor.done():
            loop = asyncio.get_running_loop()
            if not self.is_connected():  # still connecting: the key list can only come after CONNACK
                with contextlib.suppress(TimeoutError, BrokerConnectionError):
                    await asyncio.wait_for(asyncio.shield(self._start()), self._key_wait_timeout)
            remaining = self._keys_deadline - loop.time()
            if self.is_connected() and remaining > 0:
                await self._keys.wait_for_update(remaining)
        self._keys.check(api_key)

    def is_key_valid(self, api_key: str) -> bool:
        """Non-waiting check (the original SDK's API): False for a missing, blocked or unknown-to-full-list key."""
        if not api_key:
            return False
        try:
            self._keys.check(api_key)
        except InvalidApiKeyError:
            return False
        return True

    async def request_keys_list(self) -> None:
        """Ask the server for the key list again (it answers on ``billing/keys/status``)."""
        if self._conn is not None and self._conn.connected:
            self._conn.publish(TOPIC_KEYS_REQUEST, orjson.dumps({"timestamp": now_ms()}), 1)

    async def ping(self) -> None:
        """Publish ``billing/ping`` (QoS 0) when connected."""
        if self._conn is not None and self._conn.connected:
            self._conn.publish(TOPIC_PING, orjson.dumps({"type": "ping", "timestamp": now_ms()}), 0)

    def stats(self) -> QueueStats:
        """Queue counters: pending, inflight, accepted, acknowledged, dropped, resent, spooled_at_start."""
        return self._queue.stats()

    # ----------------------------------------------------------------- background work
    def _backoff_delay(self, attempt: int) -> float:
        low, high = self._backoff
        delay: float = min(high, low * 2.0 ** min(attempt, 16))
        return delay * random.uniform(0.75, 1.25)  # noqa: S311 - jitter, not cryptography

    async def _supervise(self, first: asyncio.Future[None], stop: asyncio.Event) -> None:
        attempt = 0
        try:
            while not stop.is_set():
                self._generation += 1
                generation = self._generation
                conn = MqttConnection(self._config, self._client_id, keepalive=self._keepalive,
                                      on_message=self._on_message,
                                      on_ack=functools.partial(self._on_ack, generation))
                try:
                    await conn.open(self._connect_timeout)
                except (AuthenticationError, TlsVerificationError) as exc:
                    self._last_error = exc
                    if not first.done():  # never connected: a configuration error, do not loop on it
                        logger.error("billing: %s", exc)
                        self._permanent_error = exc
                        first.set_exception(exc)
                        first.exception()  # mark retrieved: the constructor's auto-connect has no waiter
                        return
                    logger.error("billing: reconnect refused: %s", exc)
                except BrokerConnectionError as exc:
                    self._last_error = exc
                    logger.warning("billing: %s (attempt %d)", exc, attempt + 1)
                else:
                    attempt = 0
                    if not first.done():
                        first.set_result(None)
                    await self._serve(conn, stop)
                    if stop.is_set():
                        break
                delay = self._backoff_delay(attempt)
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            if not first.done():
                first.set_exception(NotConnectedError("BillingClient was disconnected before it connected"))
                first.exception()  # retrieved: nobody may be waiting

    async def _serve(self, conn: MqttConnection, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._conn = conn
        self._keys.reset_wait()
        self._keys_deadline = loop.time() + self._key_wait_timeout
        logger.info("billing: connected to MQTT broker %s:%s", self._config.host, self._config.port)
        tasks: list[asyncio.Task[Any]] = []
        try:
            conn.subscribe(TOPIC_KEYS_STATUS, 1)
            conn.subscribe(TOPIC_KEYS_UPDATE, 1)
            conn.publish(TOPIC_KEYS_REQUEST, orjson.dumps({"timestamp": now_ms()}), 1)
            tasks = [loop.create_task(self._send_loop(conn)), loop.create_task(self._heartbeat_loop(conn)),
                     loop.create_task(conn.lost.wait()), loop.create_task(stop.wait())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._conn = None
            await conn.close()
            if requeued := self._queue.requeue_inflight():
                logger.info("billing: %d unacknowledged reports will be published again", requeued)

    async def _send_loop(self, conn: MqttConnection) -> None:
        wake = self._wake
        assert wake is not None

        def publish(report: QueuedReport) -> int:
            mid = conn.publish(TOPIC_REPORT, report.payload, 1)
            if mid is None:
                raise BrokerConnectionError("the MQTT client returned no packet id for a QoS 1 publish")
            return mid

        sent = 0
        while not conn.lost.is_set():
            if self._queue.pending and self._queue.inflight < self._max_inflight:
                self._queue.take(publish)
                sent += 1
                if sent % 50 == 0:
                    await asyncio.sleep(0)
                continue
            wake.clear()
            await wake.wait()

    async def _heartbeat_loop(self, conn: MqttConnection) -> None:
        while not conn.lost.is_set():
            conn.publish(TOPIC_HEARTBEAT, orjson.dumps({"type": "heartbeat", "timestamp": now_ms()}), 0)
            await asyncio.sleep(self._heartbeat_interval)

    def _on_ack(self, generation: int, mid: int) -> None:
        if generation != self._generation:
            return  # a late packet of a connection we already gave up on
        if self._queue.ack(mid) is not None and self._wake is not None:
            self._wake.set()

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic not in (TOPIC_KEYS_STATUS, TOPIC_KEYS_UPDATE):
            return
        if len(payload) > MAX_KEYS_MESSAGE:
            logger.warning("billing: ignoring a %d-byte %s (limit %d)", len(payload), topic, MAX_KEYS_MESSAGE)
            return
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            logger.warning("billing: ignoring a %s that is not JSON", topic)
            return
        count = self._keys.apply(message)
        logger.debug("billing: key update on %s with %d entries", topic, count)


def get_billing_client() -> BillingClient | None:
    """The process's ``BillingClient``, or None before one was constructed."""
    instance = BillingClient._instance  # noqa: SLF001 - the class's own registry
    return instance if instance is not None and instance._initialised else None  # noqa: SLF001


async def report_usage(api_key: str, module: str, model: str, usage: int,
                       metadata: dict[str, Any] | None = None) -> None:
    """Report usage through the process's ``BillingClient`` (see ``BillingClient.report_usage``)."""
    client = get_billing_client()
    if client is None:
        raise NotConnectedError("no BillingClient: construct BillingClient(...) before reporting usage")
    await client.report_usage(UsageData(api_key=api_key, module=module, model=model, usage=usage,
                                        metadata=metadata))
