"""``MqttBridge``: billing reports from MQTT into Kafka, acknowledged only after Kafka acknowledged.

Client: gmqtt with ``optimistic_acknowledgement=False`` over MQTT 5 — gmqtt then sends the PUBACK
with the reason code our async handler returns, i.e. after the Kafka ack (gmqtt forces optimistic
acks for MQTT 3.1.1, so the bridge always speaks MQTT 5). A handler that cannot reach Kafka keeps
retrying and never acks; if the bridge stops or dies meanwhile, the broker keeps the message in
the persistent session (clean start off, session expiry 7 days, stable client id) and redelivers
it. A death after Kafka's ack and before the PUBACK (fault point ``bridge.after_produce``) puts the
report into Kafka twice; the workers drop the second by report id. Subscriptions are shared
(``$share/<group>/...``) so replicas split the load, and re-made on every (re)connect: Mosquitto
2.0 does not restore shared subscriptions of persistent sessions.

The bridge runs inside the gateway's event loop (``GatewaySettings.bridge``, used by the
one-command local stack) or as its own process (``python -m gateway.bridge``, the production
default: HTTP replicas scale up and down with traffic, and a scaled-down replica's persistent
session would keep receiving its round-robin share of reports that nobody acknowledges).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

import msgspec
from gmqtt import Client, Subscription

from gateway.errors import KafkaUnavailable
from gateway.keys.format import hash_key
from gateway.keys.registry import KeyRegistry
from gateway.metrics import GatewayMetrics
from gateway.producer import EventProducer
from gateway.settings import GatewaySettings
from meterline import faults
from meterline.retry import retry, retry_or_abort
from schemas.events import ApiKeyRecord, Heartbeat, KeysRequest
from schemas.topics import Topics

from .messages import dead_letter, decode_report, key_status, key_updates, now_ms, usage_record

log = logging.getLogger(__name__)

REPORT, KEYS_REQUEST, KEYS_UPDATE = "billing/report", "billing/keys/request", "billing/keys/update"
HEARTBEAT, PING = "billing/heartbeat", "billing/ping"
SESSION_EXPIRY_S = 7 * 24 * 3600
_PUBACK_OK = 0  # MQTT 5 reason code "success"; a failed handler sends no PUBACK at all
_MAX_SEEN_KEYS = 100_000

_keys_request = msgspec.json.Decoder(KeysRequest)
_heartbeat = msgspec.json.Decoder(Heartbeat)


class MqttBridge:
    """One bridge replica. ``start()`` returns at once and connects in the background."""

    def __init__(self, *, host: str, port: int, username: str | None, password: str | None,
                 ssl_context: ssl.SSLContext | None, client_id: str, share_group: str, producer: EventProducer,
                 registry: KeyRegistry, metrics: GatewayMetrics, topics: Topics, legacy_raw_keys: bool = False,
                 max_payload: int = 64 * 1024, retry_delay: float = 0.5) -> None:
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.client_id = client_id
        self.share_group = share_group
        self.producer, self.registry, self.metrics, self.topics = producer, registry, metrics, topics
        self.legacy_raw_keys = legacy_raw_keys
        self.max_payload = max_payload
        self.retry_delay = retry_delay
        self._seen_raw: dict[str, str] = {}  # legacy mode only: key hash -> raw key, memory only
        self._client = Client(client_id, clean_session=False, optimistic_acknowledgement=False,
                              session_expiry_interval=SESSION_EXPIRY_S, logger=logging.getLogger("gmqtt"))
        if username:
            self._client.set_auth_credentials(username, password)
        self._client.set_config({"reconnect_retries": -1, "reconnect_delay": 1})
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._connected = asyncio.Event()
        self._stopping = False
        self._handlers: set[asyncio.Task[Any]] = set()
        self._connector: asyncio.Task[None] | None = None
        registry.add_listener(self._key_changed)

    @classmethod
    def from_settings(cls, settings: GatewaySettings, *, producer: EventProducer, registry: KeyRegistry,
                      metrics: GatewayMetrics) -> MqttBridge:
        host, port, username, password, tls = settings.mqtt_parts()
        context: ssl.SSLContext | None = None
        if tls:
            context = ssl.create_default_context(cafile=settings.mqtt_ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        return cls(host=host, port=port, username=username, password=password, ssl_context=context,
                   client_id=settings.bridge_client_id, share_group=settings.bridge_share_group,
                   producer=producer, registry=registry, metrics=metrics, topics=settings.topics,
                   legacy_raw_keys=settings.bridge_legacy_raw_keys, max_payload=settings.bridge_max_payload)

    # --- lifecycle --------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        self._stopping = False
        self._connector = asyncio.create_task(self._connect_loop(), name="mqtt-bridge-connect")

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _connect_loop(self) -> None:
        """Connect, retrying while the broker is down or refusing; from then on gmqtt reconnects by itself."""
        def failed(exc: BaseException, delay: float) -> None:
            log.warning("MQTT bridge: cannot connect to %s:%d (%r); retrying in %.1fs", self.host, self.port, exc,
                        delay)

        await retry_or_abort(lambda: self._client.connect(self.host, self.port, ssl=self.ssl_context or False,
                                                          keepalive=30),
                             abort=lambda: self._stopping, first=self.retry_delay, ceiling=10.0, on_error=failed)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking messages; in-flight reports finish (acked) or stay unacked for redelivery."""
        self._stopping = True
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._handlers:
            _, pending = await asyncio.wait(set(self._handlers), timeout=drain_timeout)
            for task in pending:
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.disconnect(), 5)
        self._connected.clear()

    # --- MQTT callbacks ---------------------------------------------------------------------------
    def _on_connect(self, client: Client, flags: int, rc: int, properties: Any) -> None:
        share = f"$share/{self.share_group}/"
        client.subscribe([Subscription(share + topic, qos=1) for topic in (REPORT, KEYS_REQUEST, HEARTBEAT, PING)])
        self._connected.set()
        log.info("MQTT bridge %s connected to %s:%d and subscribed", self.client_id, self.host, self.port)

    def _on_disconnect(self, client: Client, packet: Any, exc: Exception | None = None) -> None:
        self._connected.clear()
        if not self._stopping:
            log.warning("MQTT bridge disconnected (%r); gmqtt reconnects", exc)

    async def _on_message(self, client: Client, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            return await self._handle(topic, payload)
        finally:
            if task is not None:
                self._handlers.discard(task)

    async def _handle(self, topic: str, payload: bytes) -> int:
        if len(payload) > self.max_payload:
            await self._dead(topic, "too_large", f"payload of {len(payload)} bytes exceeds {self.max_payload}",
                             payload)
            return _PUBACK_OK
        if topic == REPORT:
            return await self._report(payload)
        if topic == KEYS_REQUEST:
            return self._keys_request(payload)
        if topic in (HEARTBEAT, PING):
            try:
                _heartbeat.decode(payload)
                self.metrics.mqtt_messages.labels(topic, "ok").inc()
            except msgspec.DecodeError:
                self.metrics.mqtt_messages.labels(topic, "invalid").inc()
            return _PUBACK_OK
        self.metrics.mqtt_messages.labels("other", "ignored").inc()
        return _PUBACK_OK

    async def _report(self, payload: bytes) -> int:
        try:
            report = decode_report(payload)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            await self._dead(REPORT, "schema", str(exc), payload)
            return _PUBACK_OK
        sha = hash_key(report.api_key)
        owner = self.registry.lookup_hash(sha)
        if owner is None or owner.status != "active":
            reason = "unknown_key" if owner is None else "blocked_key"
            await self._dead(REPORT, reason, f"report with an {reason.replace('_', ' ')}", payload,
                             agent_id=owner.agent_id if owner else None)
            return _PUBACK_OK
        if self.legacy_raw_keys and len(self._seen_raw) < _MAX_SEEN_KEYS:
            self._seen_raw[sha] = report.api_key
        value = usage_record(report, owner, sha, now_ms())
        await self._produce(self.topics.usage, owner.agent_id.encode(), value)
        faults.point("bridge.after_produce", report_id=report.report_id)  # Kafka has it; no PUBACK yet
        self.metrics.mqtt_messages.labels(REPORT, "bridged").inc()
        return _PUBACK_OK

    async def _dead(self, topic: str, reason: str, error: str, payload: bytes, agent_id: str | None = None) -> None:
        await self._produce(self.topics.dead_letters, None, dead_letter(reason, error, topic, payload, agent_id))
        self.metrics.mqtt_messages.labels(topic, reason).inc()

    async def _produce(self, kafka_topic: str, key: bytes | None, value: bytes) -> None:
        """Publish until Kafka acks; the caller's PUBACK waits for this (cancelled → never acked)."""
        def failed(exc: BaseException, delay: float) -> None:
            if self._stopping:
                raise asyncio.CancelledError from exc  # leave the message unacked for redelivery
            log.warning("MQTT bridge: Kafka unavailable (%s); retrying in %.1fs", exc, delay)

        await retry(lambda: self.producer.send(kafka_topic, key or b"", [value]), retry_on=KafkaUnavailable,
                    first=self.retry_delay, ceiling=5.0, on_error=failed)

    # --- key status -------------------------------------------------------------------------------
    def _keys_request(self, payload: bytes) -> int:
        try:
            _keys_request.decode(payload)
        except msgspec.DecodeError:
            self.metrics.mqtt_messages.labels(KEYS_REQUEST, "invalid").inc()
            return _PUBACK_OK
        statuses = [key_status(r, self._raw_for(r.key_sha256)) for r in self.registry.records()]
        self._publish_updates(statuses, full=True)
        self.metrics.mqtt_messages.labels(KEYS_REQUEST, "answered").inc()
        return _PUBACK_OK

    def _raw_for(self, sha: str) -> str | None:
        return self._seen_raw.get(sha) if self.legacy_raw_keys else None

    def _key_changed(self, sha: str, record: ApiKeyRecord | None) -> None:
        if record is not None and self.connected:
            self._publish_updates([key_status(record, self._raw_for(sha))])

    def _publish_updates(self, statuses: list[Any], *, full: bool = False) -> None:
        for body in key_updates(statuses, full=full):
            self._client.publish(KEYS_UPDATE, body, qos=1)


__all__ = ["HEARTBEAT", "KEYS_REQUEST", "KEYS_UPDATE", "PING", "REPORT", "SESSION_EXPIRY_S", "MqttBridge"]
