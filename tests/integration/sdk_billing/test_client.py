"""BillingClient against the real Mosquitto: TLS + password, clear errors, reports with every field, keys."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from billing_sdk import (
    AuthenticationError,
    BillingClient,
    InvalidApiKeyError,
    MissingApiKeyError,
    NotConnectedError,
    TlsVerificationError,
    UsageData,
    get_billing_client,
    report_usage,
    require_api_key,
)

from meterline.local.mosquitto import MqttEndpoint, make_certificates

from .peer import BillingPeer, sha256


def _client(endpoint: MqttEndpoint, **kwargs: object) -> BillingClient:
    options: dict[str, object] = {"ca_file": endpoint.ca_file, "heartbeat_interval": 0.3, "connect_timeout": 5.0}
    options.update(kwargs)
    return BillingClient("localhost", endpoint.tls_port, endpoint.username, endpoint.password, **options)  # type: ignore[arg-type]


async def test_tls_report_arrives_with_every_field(mqtt_server: MqttEndpoint, mosquitto: MqttEndpoint) -> None:
    key = f"key-{uuid.uuid4().hex}"
    peer = await BillingPeer(mqtt_server, {key: "ok"}).start()
    try:
        client = _client(mosquitto)
        await client.connect()
        assert client.is_connected() and get_billing_client() is client
        await client.validate_api_key(key)  # waits for the key list the peer sends on billing/keys/request
        before = int(time.time() * 1000)
        await report_usage(api_key=key, module="llm", model="gpt-4", usage=150,
                           metadata={"prompt_tokens": 100, "completion_tokens": 50, "temperature": 0.7})
        await client.report_usage(UsageData(api_key=key, module="tts", model="eleven-labs", usage=42))
        assert await client.flush(5)
        await peer.wait_until(lambda: len(peer.reports) == 2 and len(peer.heartbeats) >= 2)
        first, second = sorted(peer.reports, key=lambda r: r["module"])
        assert set(first) == {"app_id", "api_key", "module", "model", "usage", "timestamp", "metadata", "report_id"}
        assert first["app_id"] == f"app-{sha256(key)[:6]}"  # learnt from billing/keys/update
        assert (first["api_key"], first["model"], first["usage"]) == (key, "gpt-4", 150)
        assert first["metadata"] == {"prompt_tokens": 100, "completion_tokens": 50, "temperature": 0.7}
        assert before <= first["timestamp"] <= int(time.time() * 1000)
        assert uuid.UUID(first["report_id"]).version == 4
        assert (second["module"], second["usage"], "metadata" in second) == ("tts", 42, False)
        assert peer.key_requests >= 1
        assert all(h["type"] == "heartbeat" and isinstance(h["timestamp"], int) for h in peer.heartbeats)
        stats = client.stats()
        assert (stats.accepted, stats.acknowledged, stats.pending, stats.inflight) == (2, 2, 0, 0)
        await client.disconnect()
        assert not client.is_connected()
        with pytest.raises(NotConnectedError):
            await report_usage(api_key=key, module="llm", model="gpt-4", usage=1)
        await client.connect()  # the same singleton connects again
        assert client.is_connected()
    finally:
        await peer.stop()


async def test_wrong_password_is_a_clear_error(mosquitto: MqttEndpoint) -> None:
    client = BillingClient("localhost", mosquitto.tls_port, mosquitto.username, "wrong-password",
                           ca_file=mosquitto.ca_file, connect_timeout=5)
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match=f"refused user '{mosquitto.username}'.*(password|not authorised)"):
        await client.connect()
    assert time.monotonic() - started < 4  # refused at once, not retried until the timeout
    assert not client.is_connected()


async def test_unknown_ca_fails_verification(mosquitto: MqttEndpoint, tmp_path: Path) -> None:
    make_certificates(tmp_path)  # another, unrelated CA
    client = _client(mosquitto, ca_file=tmp_path / "ca.crt")
    with pytest.raises(TlsVerificationError, match="did not verify.*ca_file"):
        await client.connect()


async def test_system_trust_store_refuses_a_private_ca(mosquitto: MqttEndpoint) -> None:
    client = _client(mosquitto, ca_file=None)
    with pytest.raises(TlsVerificationError):
        await client.connect()


async def test_ssl_cert_file_is_honoured(mosquitto: MqttEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(mosquitto.ca_file))
    client = _client(mosquitto, ca_file=None)
    await client.connect()
    assert client.is_connected()


async def test_insecure_opt_out_and_plain_mqtt(mosquitto: MqttEndpoint) -> None:
    client = _client(mosquitto, ca_file=None, insecure=True)
    await client.connect()
    assert client.is_connected()
    await client.disconnect()
    BillingClient._reset_singleton()
    # the services' plain listener keeps the client id a client asks for: a tenant's must be its login
    plain = BillingClient("127.0.0.1", mosquitto.port, mosquitto.username, mosquitto.password, tls=False,
                          client_id=mosquitto.username)
    await plain.connect()
    assert plain.is_connected()


async def test_env_overrides_hard_coded_settings(mosquitto: MqttEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_MQTT_PORT", str(mosquitto.tls_port))
    monkeypatch.setenv("BILLING_MQTT_USERNAME", mosquitto.username)
    monkeypatch.setenv("BILLING_MQTT_PASSWORD", mosquitto.password)
    monkeypatch.setenv("BILLING_MQTT_CA_FILE", str(mosquitto.ca_file))
    client = BillingClient("localhost", 8883, "user", "pass")
    await client.connect()
    assert client.is_connected()


async def test_blocked_and_unknown_keys_fail_fast(mqtt_server: MqttEndpoint, mosquitto: MqttEndpoint) -> None:
    good, bad = f"good-{uuid.uuid4().hex}", f"bad-{uuid.uuid4().hex}"
    peer = await BillingPeer(mqtt_server, {good: "ok", bad: "blocked"}, full=True).start()

    class Service:
        @require_api_key
        async def chat(self, stream: object, messages: list[str]) -> str:
            return "served"

    class Stream:
        def __init__(self, key: str | None) -> None:
            self.metadata = [("apikey", key)] if key else []

    try:
        client = _client(mosquitto)
        await client.connect()
        assert await Service().chat(Stream(good), ["hi"]) == "served"
        with pytest.raises(InvalidApiKeyError, match="blocked.*revoked in test"):
            await Service().chat(Stream(bad), ["hi"])
        with pytest.raises(InvalidApiKeyError, match="unknown"):
            await Service().chat(Stream("never-issued"), ["hi"])
        with pytest.raises(MissingApiKeyError):
            await Service().chat(Stream(None), ["hi"])
        started = time.monotonic()
        with pytest.raises(InvalidApiKeyError):
            await report_usage(api_key=bad, module="llm", model="gpt-4", usage=1)
        assert time.monotonic() - started < 0.5 and client.stats().accepted == 0  # refused, never queued
        # The server unblocks the key: the next update is applied as it arrives.
        peer.announce({bad: "ok"}, full=False)
        await asyncio.wait_for(_until(lambda: client.is_key_valid(bad)), 5)
        await report_usage(api_key=bad, module="llm", model="gpt-4", usage=1)
        await peer.wait_until(lambda: len(peer.reports) == 1)
    finally:
        await peer.stop()


async def test_unknown_key_waits_briefly_for_the_key_list_then_passes(mqtt_server: MqttEndpoint,
        mosquitto: MqttEndpoint) -> None:
    peer = await BillingPeer(mqtt_server, answer=False).start()  # a server that never answers
    try:
        client = _client(mosquitto, key_wait_timeout=0.5)
        await client.connect()
        started = time.monotonic()
        await client.validate_api_key("some-key")
        assert 0.2 < time.monotonic() - started < 2
        started = time.monotonic()
        await client.validate_api_key("some-key")  # the wait happens once per connection, not per call
        assert time.monotonic() - started < 0.1
    finally:
        await peer.stop()


async def test_one_client_across_two_event_loops(mqtt_server: MqttEndpoint, mosquitto: MqttEndpoint) -> None:
    """Module-level construction, then two ``asyncio.run`` calls (in a thread: this test has its own loop)."""
    peer = await BillingPeer(mqtt_server).start()
    client = await asyncio.to_thread(BillingClient, "localhost", mosquitto.tls_port, mosquitto.username,
                                     mosquitto.password, ca_file=mosquitto.ca_file)  # no loop: no auto-connect

    async def session(usage: int) -> None:
        await client.connect()
        await report_usage(api_key="k", module="llm", model="m", usage=usage)
        await client.disconnect()

    try:
        await asyncio.to_thread(asyncio.run, session(1))
        await asyncio.to_thread(asyncio.run, session(2))
        await peer.wait_until(lambda: len(peer.reports) == 2)
        assert sorted(r["usage"] for r in peer.reports) == [1, 2]
    finally:
        await peer.stop()


async def _until(predicate: object) -> None:
    while not predicate():  # type: ignore[operator]
        await asyncio.sleep(0.02)
