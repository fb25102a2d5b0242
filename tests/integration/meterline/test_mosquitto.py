"""The local Mosquitto: TLS with a verified certificate and a password; wrong passwords refused."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid

import pytest
from gmqtt import Client as MqttClient
from gmqtt.mqtt.constants import MQTTv311

from meterline.local.mosquitto import MqttEndpoint
from tests.waiting import subscribed


async def _connect(endpoint: MqttEndpoint, password: str, *, tls: bool) -> MqttClient:
    client = MqttClient(f"test-{uuid.uuid4().hex[:8]}")
    client.set_auth_credentials(endpoint.username, password)
    port = endpoint.tls_port if tls else endpoint.port
    ssl_ctx: ssl.SSLContext | bool = endpoint.ssl_context() if tls else False
    await client.connect(endpoint.host, port, ssl=ssl_ctx, version=MQTTv311, keepalive=10)
    return client


async def test_publish_and_receive_over_tls_with_password(mosquitto: MqttEndpoint) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()
    subscriber = await _connect(mosquitto, mosquitto.password, tls=True)
    subscriber.on_message = lambda client, topic, payload, qos, props: received.put_nowait(payload) or 0
    topic = f"test/{uuid.uuid4().hex}"
    await subscribed(subscriber, topic)
    publisher = await _connect(mosquitto, mosquitto.password, tls=True)
    publisher.publish(topic, b'{"usage": 150}', qos=1)
    try:
        assert await asyncio.wait_for(received.get(), 10) == b'{"usage": 150}'
    finally:
        for client in (publisher, subscriber):
            # A PUBACK crossing our TLS close_notify makes ssl raise on teardown; the test is done by then.
            with contextlib.suppress(ssl.SSLError):
                await client.disconnect()


async def test_wrong_password_is_refused(mosquitto: MqttEndpoint) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 - gmqtt raises a bare MQTTConnectError
        client = await _connect(mosquitto, "not-the-password", tls=True)
        await client.disconnect()
    assert "5" in str(info.value) or "auth" in str(info.value).lower()


async def test_tls_rejects_an_unknown_ca(mosquitto: MqttEndpoint) -> None:
    client = MqttClient(f"test-{uuid.uuid4().hex[:8]}")
    client.set_auth_credentials(mosquitto.username, mosquitto.password)
    with pytest.raises(ssl.SSLCertVerificationError):
        await client.connect(mosquitto.host, mosquitto.tls_port, ssl=ssl.create_default_context(),
                             version=MQTTv311)
