"""The local Mosquitto: TLS with a verified certificate, tenant logins, wrong passwords refused, private files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import stat
import uuid
from pathlib import Path

import pytest
from gmqtt import Client as MqttClient
from gmqtt.mqtt.constants import MQTTv311

from meterline import mqtt_admin
from meterline.local.mosquitto import LocalMosquitto, MqttEndpoint, MqttLogin
from schemas.mqtt import KEYS_STATUS, REPORT
from tests.waiting import subscribed


async def _connect(endpoint: MqttEndpoint, user: str, password: str, *, tls: bool) -> MqttClient:
    client = MqttClient(f"test-{uuid.uuid4().hex[:8]}")
    client.set_auth_credentials(user, password)
    port = endpoint.tls_port if tls else endpoint.port
    ssl_ctx: ssl.SSLContext | bool = endpoint.ssl_context() if tls else False
    await client.connect(endpoint.host, port, ssl=ssl_ctx, version=MQTTv311, keepalive=10)
    return client


async def _close(*clients: MqttClient) -> None:
    for client in clients:
        # A PUBACK crossing our TLS close_notify makes ssl raise on teardown; the test is done by then.
        with contextlib.suppress(ssl.SSLError):
            await client.disconnect()


async def test_a_tenant_reports_over_tls_and_the_bridge_login_receives(mosquitto: MqttEndpoint,
                                                                       tenant: MqttLogin) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()
    bridge = await _connect(mosquitto, mosquitto.username, mosquitto.password, tls=False)
    bridge.on_message = lambda client, topic, payload, qos, props: received.put_nowait(payload) or 0
    await subscribed(bridge, f"$share/g{uuid.uuid4().hex[:8]}/{REPORT}")
    publisher = await _connect(mosquitto, tenant.username, tenant.password, tls=True)
    publisher.publish(REPORT, b'{"usage": 150}', qos=1)
    try:
        assert await asyncio.wait_for(received.get(), 10) == b'{"usage": 150}'
    finally:
        await _close(publisher, bridge)


async def test_wrong_password_is_refused(mosquitto: MqttEndpoint, tenant: MqttLogin) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 - gmqtt raises a bare MQTTConnectError
        client = await _connect(mosquitto, tenant.username, "not-the-password", tls=True)
        await client.disconnect()
    assert "5" in str(info.value) or "auth" in str(info.value).lower()


async def test_tls_rejects_an_unknown_ca(mosquitto: MqttEndpoint, tenant: MqttLogin) -> None:
    client = MqttClient(f"test-{uuid.uuid4().hex[:8]}")
    client.set_auth_credentials(tenant.username, tenant.password)
    with pytest.raises(ssl.SSLCertVerificationError):
        await client.connect(mosquitto.host, mosquitto.tls_port, ssl=ssl.create_default_context(),
                             version=MQTTv311)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_secrets_and_logins_are_private_and_survive_a_restart(mosquitto_process: LocalMosquitto) -> None:
    login = await asyncio.to_thread(mosquitto_process.tenant_login, "acme-billing", "acme")
    data = mosquitto_process.data_dir
    assert login.password_file is not None and _mode(login.password_file) == 0o600
    for secret in ("admin.password", "bridge.password", "dynamic-security.json", "certs/server.key"):
        assert _mode(data / secret) == 0o600, secret
    assert _mode(data) == 0o700 and _mode(data / "persistence") == 0o700
    stored = (data / "dynamic-security.json").read_text()
    for password in (login.password, mosquitto_process.endpoint.password, mosquitto_process.endpoint.admin_password):
        assert password not in stored  # PBKDF2 hashes only
    await asyncio.to_thread(mosquitto_process.stop)
    await asyncio.to_thread(mosquitto_process.start)
    ep = mosquitto_process.endpoint
    client = await _connect(ep, login.username, login.password, tls=True)  # the plugin kept the login
    try:
        await subscribed(client, KEYS_STATUS)
    finally:
        await _close(client)
    roles = {r["rolename"]: r for r in json.loads((data / "dynamic-security.json").read_text())["roles"]}
    assert {mqtt_admin.TENANT_ROLE, mqtt_admin.LEGACY_ROLE, mqtt_admin.BRIDGE_ROLE} <= set(roles)
