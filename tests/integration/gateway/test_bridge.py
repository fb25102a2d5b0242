"""The MQTT bridge against real Mosquitto and Kafka: reports bridged, bad ones dead-lettered, keys answered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
from gmqtt import Client

from gateway.bridge.mqtt import PING
from gateway.keys.admin import revoke_key
from gateway.keys.format import hash_key
from gateway.main import create_app
from gateway.runtime import GatewayRuntime
from meterline.local.mosquitto import LocalMosquitto, MqttEndpoint
from schemas.events import dead_letter_decoder, usage_record_decoder
from schemas.topics import Topics
from tests.integration.gateway.conftest import make_settings, new_key, read_topic
from tests.waiting import eventually, subscribed


def mqtt_url(ep: MqttEndpoint) -> str:
    return f"mqtt://{ep.username}:{ep.password}@{ep.host}:{ep.port}"


@asynccontextmanager
async def start_bridged(kafka_bootstrap: str, topics: Topics, mosquitto: MqttEndpoint,
                        **overrides: Any) -> AsyncIterator[GatewayRuntime]:
    settings = make_settings(kafka_bootstrap, topics, bridge=True, mqtt_url=mqtt_url(mosquitto),
                             bridge_client_id=f"bridge-{uuid.uuid4().hex[:8]}",
                             bridge_share_group=f"g{uuid.uuid4().hex[:8]}", **overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime: GatewayRuntime = app.state.runtime
        assert runtime.bridge is not None
        await runtime.bridge.wait_connected(10)
        await bridge_subscribed(runtime, mosquitto)
        yield runtime


async def bridge_subscribed(runtime: GatewayRuntime, ep: MqttEndpoint) -> None:
    """Until the broker granted the bridge's subscriptions, shown by a ping the bridge counts.

    ``connected`` is set when the bridge's SUBSCRIBE leaves, before its SUBACK: a report published in
    between reaches no subscriber (a shared subscription queues nothing for a session that has not
    made it yet). The bridge subscribes to every topic in one SUBSCRIBE, which Mosquitto handles as a
    whole, so one ping delivered means the report topic is subscribed too.
    """
    def pings() -> float:
        return runtime.metrics.registry.get_sample_value(
            "meterline_bridge_mqtt_messages_total", {"topic": PING, "outcome": "ok"}) or 0.0

    before = pings()
    probe = await mqtt_client(ep)

    def delivered() -> bool:
        if pings() > before:
            return True
        probe.publish(PING, b'{"type": "ping"}', qos=0)  # lost until the subscription exists: sent again
        return False

    try:
        await eventually(delivered, 20, "the bridge's subscriptions (a ping it receives)", interval=0.1)
    finally:
        await probe.disconnect()


@pytest.fixture
async def bridged(kafka_bootstrap: str, topics: Topics, mosquitto: MqttEndpoint) -> AsyncIterator[GatewayRuntime]:
    async with start_bridged(kafka_bootstrap, topics, mosquitto) as runtime:
        yield runtime


async def mqtt_client(ep: MqttEndpoint, received: list[tuple[str, bytes]] | None = None) -> Client:
    client = Client(f"test-{uuid.uuid4().hex[:8]}")
    client.set_auth_credentials(ep.username, ep.password)
    if received is not None:
        def on_message(c: Client, topic: str, payload: bytes, qos: int, props: Any) -> int:
            received.append((topic, payload))
            return 0
        client.on_message = on_message
    await client.connect(ep.host, ep.port)
    return client


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
        client.publish("billing/report", report(key, report_id="rep-1", metadata={"c": 1}), qos=1)
        client.publish("billing/report", report(key), qos=1)  # legacy: no report_id
        client.publish("billing/report", report("ml_sk_" + "0" * 64), qos=1)
        client.publish("billing/report", report(revoked), qos=1)
        client.publish("billing/report", b'{"api_key": "' + key.encode() + b'", "usage": "many"', qos=1)
        client.publish("billing/heartbeat", b'{"type":"heartbeat","timestamp":1}', qos=1)
        boot = bridged.settings.kafka_bootstrap_servers
        usage = await read_topic(boot, bridged.topics.usage, min_count=2)
        dead = await read_topic(boot, bridged.topics.dead_letters, min_count=3)
    finally:
        await client.disconnect()
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


async def test_keys_request_answered_with_hashes_only(bridged: GatewayRuntime, mosquitto: MqttEndpoint) -> None:
    key = await new_key(bridged, "agent-c")
    received: list[tuple[str, bytes]] = []
    client = await mqtt_client(mosquitto, received)
    try:
        await subscribed(client, "billing/keys/update")
        client.publish("billing/keys/request", b'{"timestamp": 1}', qos=1)
        await eventually(lambda: any(t == "billing/keys/update" for t, _ in received), 10)
        update = msgspec.json.decode(received[-1][1])
        assert {"app_id": "agent-c", "api_key_sha256": hash_key(key), "status": "ok"} in update["updates"]
        assert key.encode() not in received[-1][1]
        # a revocation is pushed to clients without asking
        await revoke_key(bridged.settings.kafka_bootstrap_servers, bridged.topics.keys, hash_key(key))
        await eventually(lambda: any(b'"blocked"' in p for _, p in received), 10)
    finally:
        await client.disconnect()


async def test_legacy_mode_announces_raw_keys_it_has_seen(kafka_bootstrap: str, topics: Topics,
                                                          mosquitto: MqttEndpoint) -> None:
    async with start_bridged(kafka_bootstrap, topics, mosquitto, bridge_legacy_raw_keys=True) as runtime:
        seen, unseen = await new_key(runtime, "agent-l"), await new_key(runtime, "agent-l")
        received: list[tuple[str, bytes]] = []
        client = await mqtt_client(mosquitto, received)
        try:
            await subscribed(client, "billing/keys/update")
            client.publish("billing/report", report(seen, report_id="legacy-1"), qos=1)
            await read_topic(kafka_bootstrap, runtime.topics.usage, min_count=1)
            client.publish("billing/keys/request", b"{}", qos=1)
            await eventually(lambda: any(t == "billing/keys/update" for t, _ in received), 10)
        finally:
            await client.disconnect()
        updates = {u["api_key_sha256"]: u for u in msgspec.json.decode(received[-1][1])["updates"]}
        assert updates[hash_key(seen)]["api_key"] == seen  # legacy clients compare raw keys
        assert "api_key" not in updates[hash_key(unseen)]  # the registry itself never had it


async def test_bridge_resubscribes_after_a_broker_restart(kafka_bootstrap: str, topics: Topics,
                                                         mosquitto_process: LocalMosquitto) -> None:
    ep = mosquitto_process.endpoint
    async with start_bridged(kafka_bootstrap, topics, ep) as runtime:
        key = await new_key(runtime, "agent-m")
        client = await mqtt_client(ep)
        client.publish("billing/report", report(key, report_id="before"), qos=1)
        await read_topic(kafka_bootstrap, runtime.topics.usage, min_count=1)
        await client.disconnect()
        await asyncio.to_thread(mosquitto_process.stop)
        await asyncio.to_thread(mosquitto_process.start)
        assert runtime.bridge is not None
        await eventually(lambda: runtime.bridge is not None and runtime.bridge.connected, 20, "the bridge to reconnect")
        await bridge_subscribed(runtime, ep)  # made again: Mosquitto restores no shared subscription
        client = await mqtt_client(ep)
        try:
            client.publish("billing/report", report(key, report_id="after"), qos=1)
            msgs = await read_topic(kafka_bootstrap, runtime.topics.usage, min_count=2, timeout=15)
        finally:
            await client.disconnect()
    assert {usage_record_decoder.decode(m.value).report_id for m in msgs} == {"before", "after"}
