"""``MqttBridge``: billing reports from MQTT into Kafka, acknowledged only after Kafka acknowledged.

Client: gmqtt with ``optimistic_acknowledgement=False`` over MQTT 5 (gmqtt forces optimistic acks
for MQTT 3.1.1, so the bridge always speaks MQTT 5). Reports do not take gmqtt's per-message path
(a task per message, a PUBACK with the reason code it returns): ``reports.take_reports`` takes QoS 1
``billing/report`` publishes from gmqtt's packet handler as they are parsed and hands them to
``reports.ReportBatcher``, which sends the PUBACKs itself once Kafka acknowledged the records. Other
topics keep gmqtt's path, acknowledged when their async handler returns (as would reports, were the
hook not in place: ``_report``, one at a time).

A report Kafka does not take is retried and never acked; if the bridge stops or dies meanwhile, the
broker keeps the message in the persistent session (clean start off, session expiry 7 days, stable
client id) and redelivers it. A death after Kafka's ack and before the PUBACK (fault point
``bridge.after_produce``) puts the report into Kafka twice (with the rest of its group); the
workers drop the second by report id. The bridge announces a receive maximum
(``GatewaySettings.bridge_receive_maximum``): how many unacknowledged reports the broker may have
out to it, which over Kafka's ack latency bounds its rate (Mosquitto's ``max_inflight_messages``
applies only to clients that announce none). Subscriptions are shared (``$share/<group>/...``) so
replicas split the load, and re-made on every (re)connect: Mosquitto 2.0 does not restore shared
subscriptions of persistent sessions.

Ready (``connected``, and MQTT in ``/readyz``) means the broker GRANTED the subscriptions (its SUBACK),
not that they were sent: with a new share group, a report published between the SUBSCRIBE and its
SUBACK reaches nobody. A refused subscription (the login lacks the bridge role) keeps the bridge not
ready and says so in an error line.

Key status goes out on two topics (``docs/wire-protocols.md``): every key by hash on
``billing/keys/status`` (our SDK), and only legacy keys, with their raw value, on
``billing/keys/update`` (clients of the original protocol). A legacy key is decrypted once, when its
record arrives (``gateway.keys.legacy``); the report path does no cryptography beyond the key's hash.

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
from gateway.keys.legacy import KeyCipher, LegacyKeyError
from gateway.keys.registry import KeyRegistry
from gateway.metrics import GatewayMetrics
from gateway.producer import EventProducer
from gateway.settings import GatewaySettings
from meterline import faults
from meterline.retry import retry, retry_or_abort
from schemas.events import ApiKeyRecord, Heartbeat, KeysRequest, KeyStatus
from schemas.mqtt import CLIENT_TOPICS, HEARTBEAT, KEYS_REQUEST, KEYS_STATUS, KEYS_UPDATE, PING, REPORT
from schemas.topics import Topics

from .messages import dead_letter, decode_report, key_status, key_updates, now_ms, usage_record
from .reports import BRIDGED, Connection, Record, ReportBatcher, take_reports

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
_PUBACK_OK = 0  # MQTT 5 reason code "success"; a failed handler sends no PUBACK at all
_KEY_CACHE = 4096  # raw key -> SHA-256 of keys seen lately (reports repeat a handful of keys)

_keys_request = msgspec.json.Decoder(KeysRequest)
_heartbeat = msgspec.json.Decoder(Heartbeat)


class MqttBridge:
    """One bridge replica. ``start()`` returns at once and connects in the background."""

    def __init__(self, *, host: str, port: int, username: str | None, password: str | None,
                 ssl_context: ssl.SSLContext | None, client_id: str, share_group: str, producer: EventProducer,
                 registry: KeyRegistry, metrics: GatewayMetrics, topics: Topics, cipher: KeyCipher | None = None,
                 max_payload: int = 64 * 1024, retry_delay: float = 0.5, receive_maximum: int = 2000) -> None:
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.client_id, self.username = client_id, username
        self.share_group = share_group
        self.producer, self.registry, self.metrics, self.topics = producer, registry, metrics, topics
        self.cipher = cipher
        self.max_payload = max_payload
        self.retry_delay = retry_delay
        self._legacy: dict[str, str] = {}  # key hash -> raw value, legacy keys only, decrypted once
        self._subscription_mid: int | None = None
        self._hashes: dict[str, str] = {}
        self._client = Client(client_id, clean_session=False, optimistic_acknowledgement=False,
                              session_expiry_interval=SESSION_EXPIRY_S, receive_maximum=receive_maximum,
                              logger=logging.getLogger("gmqtt"))
        self._reports = ReportBatcher(convert=self._convert, produce=self._produce, current=self._is_current,
                                      count=lambda outcome, n: self.metrics.mqtt_messages.labels(REPORT, outcome)
                                      .inc(n))
        take_reports(self._client, REPORT, self._reports)
        if username:
            self._client.set_auth_credentials(username, password)
        self._client.set_config({"reconnect_retries": -1, "reconnect_delay": 1})
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._connected = asyncio.Event()  # set on the SUBACK that granted every subscription
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
                   cipher=KeyCipher.load(secret.get_secret_value() if (secret := settings.key_secret) else None),
                   max_payload=settings.bridge_max_payload, receive_maximum=settings.bridge_receive_maximum)

    # --- lifecycle --------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Connected AND subscribed: the broker granted every subscription (readiness)."""
        return self._connected.is_set()

    async def start(self) -> None:
        self._stopping = False
        self._reports.closed = False
        for record in self.registry.records():
            self._learn(record)
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
        self._reports.close()
        if in_flight := self._handlers | self._reports.tasks:
            _, pending = await asyncio.wait(in_flight, timeout=drain_timeout)
            for task in pending:
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.disconnect(), 5)
        self._connected.clear()

    # --- MQTT callbacks ---------------------------------------------------------------------------
    def _on_connect(self, client: Client, flags: int, rc: int, properties: Any) -> None:
        self._connected.clear()
        share = f"$share/{self.share_group}/"
        self._subscription_mid = client.subscribe([Subscription(share + topic, qos=1) for topic in CLIENT_TOPICS])
        log.info("MQTT bridge %s connected to %s:%d; subscribing", self.client_id, self.host, self.port)

    def _on_subscribe(self, client: Client, mid: int, granted: tuple[int, ...], properties: Any) -> None:
        if mid != self._subscription_mid:
            return
        refused = [f"{topic} (0x{code:02x})" for topic, code in zip(CLIENT_TOPICS, granted, strict=False)
                   if code >= 0x80]
        if refused or len(granted) != len(CLIENT_TOPICS):
            log.error("MQTT bridge %s: the broker refused the subscription to %s; the bridge stays NOT READY "
                      "(does login %r have the meterline-bridge role?)", self.client_id,
                      ", ".join(refused) or f"{len(CLIENT_TOPICS) - len(granted)} topic(s)", self.username)
            return
        self._connected.set()
        log.info("MQTT bridge %s subscribed to %s (share group %s)", self.client_id, ", ".join(CLIENT_TOPICS),
                 self.share_group)

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

    # --- reports (a batch at a time: reports.py) ----------------------------------------------------
    def _is_current(self, connection: Connection) -> bool:
        return bool(self._client._package_handler.current_connection is connection and not connection.is_closing())

    def _convert(self, payload: bytes) -> Record:
        """A report → its usage record, or its dead letter (too large, invalid, unknown or revoked key)."""
        if len(payload) > self.max_payload:
            return self._dead_record("too_large", f"payload of {len(payload)} bytes exceeds {self.max_payload}",
                                     payload)
        try:
            report = decode_report(payload)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            return self._dead_record("schema", str(exc), payload)
        sha = self._hashes.get(report.api_key)
        if sha is None:
            if len(self._hashes) >= _KEY_CACHE:
                self._hashes.clear()
            sha = self._hashes[report.api_key] = hash_key(report.api_key)
        owner = self.registry.lookup_hash(sha)
        if owner is None or owner.status != "active":
            reason = "unknown_key" if owner is None else "blocked_key"
            return self._dead_record(reason, f"report with an {reason.replace('_', ' ')}", payload,
                                     owner.agent_id if owner else None)
        return Record(self.topics.usage, owner.agent_id.encode(), usage_record(report, owner, sha, now_ms()),
                      BRIDGED, report.report_id)

    def _dead_record(self, reason: str, error: str, payload: bytes, agent_id: str | None = None) -> Record:
        return Record(self.topics.dead_letters, b"", dead_letter(reason, error, REPORT, payload, agent_id), reason)

    async def _report(self, payload: bytes) -> int:
        """A report that reached gmqtt's per-message path (only if the hook were bypassed): one at a time."""
        record = self._convert(payload)
        await self._produce(record.topic, record.key, [record.value])
        if record.outcome == BRIDGED:
            faults.point("bridge.after_produce", report_id=record.report_id)
        self.metrics.mqtt_messages.labels(REPORT, record.outcome).inc()
        return _PUBACK_OK

    async def _dead(self, topic: str, reason: str, error: str, payload: bytes, agent_id: str | None = None) -> None:
        await self._produce(self.topics.dead_letters, None, [dead_letter(reason, error, topic, payload, agent_id)])
        self.metrics.mqtt_messages.labels(topic, reason).inc()

    async def _produce(self, kafka_topic: str, key: bytes | None, values: list[bytes]) -> None:
        """Publish until Kafka acks; the caller's PUBACK waits for this (cancelled → never acked)."""
        def failed(exc: BaseException, delay: float) -> None:
            if self._stopping:
                raise asyncio.CancelledError from exc  # leave the message unacked for redelivery
            log.warning("MQTT bridge: Kafka unavailable (%s); retrying in %.1fs", exc, delay)

        await retry(lambda: self.producer.send(kafka_topic, key or b"", values, as_batch=True),
                    retry_on=KafkaUnavailable,
                    first=self.retry_delay, ceiling=5.0, on_error=failed)

    # --- key status -------------------------------------------------------------------------------
    def _learn(self, record: ApiKeyRecord) -> None:
        """Keep the raw value of a legacy key (decrypted here, once per record, never per report)."""
        sha = record.key_sha256
        if record.legacy_key is None:
            self._legacy.pop(sha, None)
            return
        if self.cipher is None:
            log.error("legacy key %s… of agent %s is not announced on %s: METERLINE_KEY_SECRET is not set",
                      sha[:12], record.agent_id, KEYS_UPDATE)
            return
        try:
            self._legacy[sha] = self.cipher.decrypt(record.legacy_key, sha)
        except LegacyKeyError as exc:
            self._legacy.pop(sha, None)
            log.error("legacy key of agent %s is not announced on %s: %s", record.agent_id, KEYS_UPDATE, exc)

    def _keys_request(self, payload: bytes) -> int:
        try:
            _keys_request.decode(payload)
        except msgspec.DecodeError:
            self.metrics.mqtt_messages.labels(KEYS_REQUEST, "invalid").inc()
            return _PUBACK_OK
        records = self.registry.records()
        self._publish(KEYS_STATUS, [key_status(r) for r in records], full=True)
        self._publish(KEYS_UPDATE, [key_status(r, raw) for r in records if (raw := self._legacy.get(r.key_sha256))])
        self.metrics.mqtt_messages.labels(KEYS_REQUEST, "answered").inc()
        return _PUBACK_OK

    def _key_changed(self, sha: str, record: ApiKeyRecord | None) -> None:
        if record is None:
            self._legacy.pop(sha, None)
            return
        self._learn(record)
        if self.connected:
            self._publish(KEYS_STATUS, [key_status(record)])
            if raw := self._legacy.get(sha):
                self._publish(KEYS_UPDATE, [key_status(record, raw)])

    def _publish(self, topic: str, statuses: list[KeyStatus], *, full: bool = False) -> None:
        """Key statuses on ``topic``; ``full`` only on the hashed list (legacy clients never see it)."""
        for body in key_updates(statuses, full=full):
            self._client.publish(topic, body, qos=1)


__all__ = ["HEARTBEAT", "KEYS_REQUEST", "KEYS_STATUS", "KEYS_UPDATE", "PING", "REPORT", "SESSION_EXPIRY_S",
           "MqttBridge"]
