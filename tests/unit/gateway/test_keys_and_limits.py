"""Key format/hashing, constant-time auth, token buckets, bridge message helpers, public surface."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

import gateway.deps
import gateway.keys
from gateway.bridge.messages import dead_letter, key_status, key_updates, legacy_report_id, usage_record
from gateway.errors import MissingKey, RevokedKey, UnknownKey
from gateway.keys.admin import match_keys
from gateway.keys.format import display_prefix, generate_key, hash_key, is_key_format
from gateway.keys.registry import KeyRegistry
from gateway.ratelimit import TokenBuckets
from gateway.settings import GatewaySettings
from schemas.events import ApiKeyRecord, UsageReport, dead_letter_decoder, usage_record_decoder


def record(raw: str, agent: str = "a", status: str = "active") -> ApiKeyRecord:
    return ApiKeyRecord(key_sha256=hash_key(raw), agent_id=agent, status=status,  # type: ignore[arg-type]
                        created_at=1, prefix=display_prefix(raw))


def test_key_format_and_hash() -> None:
    key = generate_key()
    assert key.startswith("ml_sk_") and len(key) == 70 and is_key_format(key)
    assert is_key_format(generate_key("gt8004_sk_"))
    assert not is_key_format("ml_sk_" + "G" * 64) and not is_key_format(key + "0")
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert display_prefix(key) == key[:10] and display_prefix("gt8004_sk_abcd" + "0" * 60) == "gt8004_sk_abcd"


async def test_registry_authenticates_by_hash() -> None:
    reg = KeyRegistry("unused:1", "keys")
    good, revoked = generate_key(), generate_key()
    reg.apply(hash_key(good).encode(), msgspec.json.encode(record(good, "agent-1")))
    reg.apply(hash_key(revoked).encode(), msgspec.json.encode(record(revoked, status="revoked")))
    assert reg.authenticate(good).agent_id == "agent-1"
    with pytest.raises(MissingKey):
        reg.authenticate(None)
    with pytest.raises(UnknownKey):
        reg.authenticate("ml_sk_" + "0" * 64)
    with pytest.raises(UnknownKey):
        reg.authenticate("forged")
    with pytest.raises(RevokedKey):
        reg.authenticate(revoked)
    reg.apply(hash_key(good).encode(), None)  # tombstone
    with pytest.raises(UnknownKey):
        reg.authenticate(good)
    reg.apply(b"x", b"not json")  # malformed records are skipped
    assert [r.status for r in reg.records()] == ["revoked"]


def test_match_keys_needs_unambiguous_identifiers() -> None:
    keys = [generate_key() for _ in range(3)]
    records = [record(k) for k in keys]
    assert match_keys(records, keys[0]) == [records[0]]
    assert match_keys(records, hash_key(keys[1])) == [records[1]]
    assert match_keys(records, hash_key(keys[2])[:12]) == [records[2]]
    assert match_keys(records, "ml_sk_") == [] and match_keys(records, "abc") == []


def test_token_bucket() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0], max_keys=4)
    assert [buckets.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.acquire("k")
    assert wait == pytest.approx(0.5) and TokenBuckets.retry_after(wait) == 1
    assert buckets.acquire("other") == 0.0
    now[0] = 0.5
    assert buckets.acquire("k") == 0.0
    for i in range(10):
        buckets.acquire(f"many-{i}")
    assert len(buckets._buckets) <= 4


def test_bridge_messages_never_carry_raw_keys() -> None:
    key = generate_key()
    owner = record(key, "app-1")
    report = UsageReport(app_id="other", api_key=key, module="llm", model="m", usage=3, timestamp=5)
    rec = usage_record_decoder.decode(usage_record(report, owner, hash_key(key), 9))
    assert rec.app_id == "app-1" and rec.metadata == {"reported_app_id": "other"}
    assert rec.report_id == legacy_report_id(hash_key(key), report) and rec.timestamp == 5
    payload = msgspec.json.encode({"api_key": key, "apiKey": key, "x": f"text {key}"})
    letter = dead_letter("unknown_key", "e", "billing/report", payload)
    assert key.encode() not in letter and dead_letter_decoder.decode(letter).payload.count("<redacted>") == 3
    updates = key_updates([key_status(owner)] * 1001, chunk=500, full=True)
    assert len(updates) == 3 and b'"status":"ok"' in updates[0] and key.encode() not in updates[0]
    assert all(b'"full"' not in u for u in updates)  # a chunked snapshot is not a complete list per message
    (single,) = key_updates([key_status(owner)] * 3, full=True)
    assert msgspec.json.decode(single)["full"] is True
    (change,) = key_updates([key_status(owner)])
    assert b'"full"' not in change
    assert key_status(record(key, status="revoked"), key).api_key == key  # legacy mode only


def test_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:1")
    monkeypatch.setenv("METERLINE_TOPIC_PREFIX", "p.")
    monkeypatch.setenv("METERLINE_OPERATOR_TOKEN", "s3cr3t-op")
    monkeypatch.setenv("METERLINE_GATEWAY_MAX_BODY_BYTES", "1048576")
    monkeypatch.setenv("MQTT_URL", "mqtts://u:p@broker:8884")
    s = GatewaySettings()
    assert (s.kafka_bootstrap_servers, s.topics.prefix, s.max_body_bytes) == ("k:1", "p.", 1048576)
    assert s.operator_token is not None and s.operator_token.get_secret_value() == "s3cr3t-op"
    assert "s3cr3t-op" not in repr(s)
    assert s.mqtt_parts() == ("broker", 8884, "u", "p", True)
    monkeypatch.delenv("METERLINE_GATEWAY_MAX_BODY_BYTES")
    # the default body limit fits 50 entries with two 16 KiB bodies each (upstream: 50 KB cap)
    assert GatewaySettings().max_body_bytes > 50 * 2 * 16 * 1024 * 2


def test_public_surface() -> None:
    assert set(gateway.keys.__all__) == {"KEY_PREFIXES", "AgentIdentity", "KeyRegistry", "generate_key",
                                         "hash_key", "is_key_format"}
    assert set(gateway.deps.__all__) == {"Principal", "RuntimeDep", "authenticate_agent", "authenticate_reader",
                                         "authorize_agent_access", "bearer_token", "get_runtime", "is_operator_token",
                                         "require_operator"}


def test_json_log_lines() -> None:
    import json
    import logging

    from gateway.logs import JsonFormatter

    record = logging.LogRecord("gateway.x", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "hello world" and line["level"] == "WARNING" and line["ts"].endswith("Z")
