"""The MQTT bridge against real Mosquitto and Kafka: reports bridged, bad ones dead-lettered, keys answered."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from gmqtt import Client

from gateway.keys.admin import create_key, revoke_key
from gateway.keys.format import hash_key
from gateway.keys.legacy import KeyCipher
from gateway.main import create_app
from gateway.runtime import GatewayRuntime
from meterline.local.mosquitto import LocalMosquitto, MqttEndpoint, MqttLogin
from schemas.events import dead_letter_decoder, usage_record_decoder
from schemas.mqtt import HEARTBEAT, KEYS_REQUEST, KEYS_STATUS, KEYS_UPDATE, REPORT
from schemas.topics import Topics
from tests.integration.gateway.conftest import make_settings, new_key, read_topic
from tests.mqtt import new_tenant
from tests.waiting import eventually, subscribed

SECRET = "test-server-secret-0123456789abcdef"  # noqa: S105 - a test's own server secret


async def new_legacy_key(runtime: GatewayRuntime, agent_id: str) -> str:
    """A key for legacy clients (raw value encrypted with ``SECRET``), once the running registry has it."""
    raw, record = await create_key(runtime.settings.kafka_bootstrap_servers, runtime.topics.keys, agent_id,
                                   legacy=KeyCipher(SECRET))
    assert await runtime.registry.wait_for(lambda: runtime.registry.lookup_hash(record.key_sha256) is not None, 10)
    return raw


def mqtt_url(ep: MqttEndpoint) -> str:
    return f"mqtt://{ep.username}:{ep.password}@{ep.host}:{ep.port}"


@asynccontextmanager
async def start_bridged(kafka_bootstrap: str, topics: Topics, mosquitto: MqttEndpoint,
                        **overrides: Any) -> AsyncIterator[GatewayRuntime]:
    settings = make_settings(kafka_bootstrap, topics, bridge=True, mqtt_url=mqtt_url(mosquitto),
                             bridge_client_id=f"meterline-bridge-{uuid.uuid4().hex[:8]}",
                             bridge_share_group=f"g{uuid.uuid4().hex[:8]}", **overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime: GatewayRuntime = app.state.runtime
        assert runtime.bridge is not None
        await runtime.bridge.wait_connected(10)  # the broker granted its subscriptions: reports reach it
        yield runtime


@pytest.fixture
async def bridged(kafka_bootstrap: str, topics: Topics, mosquitto: MqttEndpoint) -> AsyncIterator[GatewayRuntime]:
    async with start_bridged(kafka_bootstrap, topics, mosquitto) as runtime:
        yield runtime


async def mqtt_client(ep: MqttEndpoint, received: list[tuple[str, bytes]] | None = None, *,
                      login: MqttLogin | None = None) -> Client:
    """A tenant's connection on the tenants' TLS listener (a fresh tenant unless ``login`` is given)."""
    login = login or await new_tenant(ep)
    client = Client(f"test-{uuid.uuid4().hex[:8]}")
    client.set_auth_credentials(login.username, login.password)
    if received is not None:
        def on_message(c: Client, topic: str, payload: bytes, qos: int, props: Any) -> int:
            received.append((topic, payload))
            return 0
        client.on_message = on_message
    await client.connect(ep.host, ep.tls_port, ssl=ep.ssl_context())
    return client


async def close(client: Client) -> None:
    with contextlib.suppress(ssl.SSLError):  # a PUBACK crossing our TLS close_notify
        await client.disconnect()


def report(key: str, **extra: Any) -> bytes:
    body = {"app_id": "agent-b", "api_key": key, "module": "llm", "model": "gpt-4", "usage": 150,
            "timestamp": 1_700_000_000_000, **extra}
    return msgspec.json.encode(body)


async def test_reports_bridged_and_bad_ones_dead_lettered(bridged: GatewayRuntime, mosquitto: MqttEndpoint) -> None:
    key = await new_key(bridged, "agent-b")
    revoked = await new_key(bridged, "agent-b")
    await revoke_key(bridged.settings.kafka_bootstrap_servers, bridged.topics.keys, revoked)
    await eventually(lambda: bridged.registry.lookup_hash(hash_key(revoked)).status == "revoked")  # type: ignore[union-attr]
    client = await mqtt_client(mosquitto)
    try:
        client.publish(REPORT, report(key, report_id="rep-1", metadata={"c": 1}), qos=1)
        client.publish(REPORT, report(key), qos=1)  # legacy: no report_id
        client.publish(REPORT, report("ml_sk_" + "0" * 64), qos=1)
        client.publish(REPORT, report(revoked), qos=1)
        client.publish(REPORT, b'{"api_key": "' + key.encode() + b'", "usage": "many"', qos=1)
        client.publish(HEARTBEAT, b'{"type":"heartbeat","timestamp":1}', qos=1)
        boot = bridged.settings.kafka_bootstrap_servers
        usage = await read_topic(boot, bridged.topics.usage, min_count=2)
        dead = await read_topic(boot, bridged.topics.dead_letters, min_count=3)
    finally:
        await close(client)
    records = sorted((usage_record_decoder.decode(m.value) for m in usage), key=lambda r: r.report_id)
    assert len(records) == 2
    assert records[0].report_id.startswith("legacy-") and records[1].report_id == "rep-1"
    assert {r.app_id for r in records} == {"agent-b"} and records[1].metadata == {"c": 1}
    assert all(r.key_sha256 == hash_key(key) and r.usage == 150 for r in records)
    letters = [dead_letter_decoder.decode(m.value) for m in dead]
    assert sorted(d.reason for d in letters) == ["blocked_key", "schema", "unknown_key"]
    for m in usage + dead:
        assert key.encode() not in m.value and revoked.encode() not in m.value
    text = bridged.metrics.render().decode()
    assert 'meterline_bridge_mqtt_messages_total{outcome="bridged",topic="billing/report"} 2.0' in text


async def test_key_status_by_hash_for_every_key_raw_values_for_legacy_keys_only(
        kafka_bootstrap: str, topics: Topics, mosquitto: MqttEndpoint) -> None:
    async with start_bridged(kafka_bootstrap, topics, mosquitto, key_secret=SECRET) as runtime:
        key = await new_key(runtime, "agent-c")
        old = await new_legacy_key(runtime, "agent-c")
        statuses: list[tuple[str, bytes]] = []
        legacy: list[tuple[str, bytes]] = []
        client = await mqtt_client(mosquitto, statuses)
        old_client = await mqtt_client(mosquitto, legacy, login=await new_tenant(mosquitto, legacy=True))
        try:
            await subscribed(client, KEYS_STATUS)
            await subscribed(old_client, KEYS_UPDATE)
            client.publish(KEYS_REQUEST, b'{"timestamp": 1}', qos=1)
            await eventually(lambda: statuses and legacy, 10, "the key status and the legacy update")
            status, update = msgspec.json.decode(statuses[-1][1]), msgspec.json.decode(legacy[-1][1])
            assert status["full"] is True and "full" not in update  # legacy clients never see a full list
            assert {"app_id": "agent-c", "api_key_sha256": hash_key(key), "status": "ok"} in status["updates"]
            assert {"app_id": "agent-c", "api_key_sha256": hash_key(old), "status": "ok"} in status["updates"]
            assert update["updates"] == [{"app_id": "agent-c", "api_key_sha256": hash_key(old), "status": "ok",
                                          "api_key": old}]  # only the legacy key, with its raw value
            assert key.encode() not in statuses[-1][1] + legacy[-1][1] and old.encode() not in statuses[-1][1]
            # a revocation is pushed without asking, on both topics for a legacy key
            await revoke_key(kafka_bootstrap, runtime.topics.keys, hash_key(old))
            await eventually(lambda: any(b'"blocked"' in p for _, p in statuses)
                             and any(b'"blocked"' in p and old.encode() in p for _, p in legacy), 10)
        finally:
            await close(client)
            await close(old_client)


@pytest.mark.parametrize("secret", [None, "another-secret-of-at-least-32-characters"])
async def test_legacy_keys_without_the_right_secret_are_not_announced(
        kafka_bootstrap: str, topics: Topics, mosquitto: MqttEndpoint, secret: str | None,
        caplog: pytest.LogCaptureFixture, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLINE_HOME", str(tmp_dir))  # no local stack's key-secret file either
    raw, record = await create_key(kafka_bootstrap, topics.keys, "agent-s", legacy=KeyCipher(SECRET))
    async with start_bridged(kafka_bootstrap, topics, mosquitto, key_secret=secret) as runtime:
        legacy: list[tuple[str, bytes]] = []
        old_client = await mqtt_client(mosquitto, legacy, login=await new_tenant(mosquitto, legacy=True))
        try:
            await subscribed(old_client, KEYS_UPDATE)
            old_client.publish(KEYS_REQUEST, b"{}", qos=1)
            await eventually(lambda: legacy, 10, "the answer on billing/keys/update")
        finally:
            await close(old_client)
        assert runtime.bridge is not None and runtime.bridge.connected  # nothing else stopped
    assert msgspec.json.decode(legacy[-1][1])["updates"] == []
    why = "METERLINE_KEY_SECRET is not set" if secret is None else "does not decrypt"
    assert any(why in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert raw not in caplog.text and record.legacy_key not in caplog.text


async def test_bridge_resubscribes_after_a_broker_restart(kafka_bootstrap: str, topics: Topics,
                                                         mosquitto_process: LocalMosquitto) -> None:
    ep = mosquitto_process.endpoint
    async with start_bridged(kafka_bootstrap, topics, ep) as runtime:
        key = await new_key(runtime, "agent-m")
        client = await mqtt_client(ep)
        client.publish(REPORT, report(key, report_id="before"), qos=1)
        await read_topic(kafka_bootstrap, runtime.topics.usage, min_count=1)
        await close(client)
        await asyncio.to_thread(mosquitto_process.stop)
        await asyncio.to_thread(mosquitto_process.start)
        assert runtime.bridge is not None
        # ready again only once its subscriptions are granted: Mosquitto restores no shared subscription
        await eventually(lambda: runtime.bridge is not None and runtime.bridge.connected, 20, "the bridge ready")
        client = await mqtt_client(ep)
        try:
            client.publish(REPORT, report(key, report_id="after"), qos=1)
            msgs = await read_topic(kafka_bootstrap, runtime.topics.usage, min_count=2, timeout=15)
        finally:
            await close(client)
    assert {usage_record_decoder.decode(m.value).report_id for m in msgs} == {"before", "after"}
