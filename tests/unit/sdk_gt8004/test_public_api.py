"""The public surface of gt8004 is pinned: exported names, entry fields, environment variables."""

from __future__ import annotations

import dataclasses

import gt8004
import gt8004.middleware.fastapi as mw
import orjson
import pytest
from gt8004 import GT8004Logger, RequestLogEntry
from gt8004._entry import BODY_LIMIT, encode_entry, truncate_utf8

# The fields of an ingest entry, in order (docs/wire-protocols.md, section 1).
ENTRY_FIELDS = [
    "request_id", "method", "path", "status_code", "response_ms", "timestamp", "customer_id",
    "tool_name", "error_type", "x402_amount", "x402_tx_hash", "x402_token", "x402_payer",
    "request_body", "response_body", "request_body_size", "response_body_size", "headers",
    "protocol", "source", "ip_address", "user_agent", "referer", "content_type",
    "accept_language", "country", "city",
]


def test_exported_names_are_what_we_mean() -> None:
    assert sorted(gt8004.__all__) == sorted([
        "SDK_VERSION", "ConfigError", "GT8004Error", "GT8004Logger", "LimitChecker", "LimitDecision",
        "RequestLogEntry", "TransportConfig", "TransportStats"])
    for name in gt8004.__all__:
        assert hasattr(gt8004, name)
    assert mw.__all__ == ["DEFAULT_EXCLUDE_PATHS", "SENSITIVE_HEADERS", "GT8004Middleware"]
    assert issubclass(gt8004.ConfigError, gt8004.GT8004Error)


def test_entry_has_every_spec_field() -> None:
    assert [f.name for f in dataclasses.fields(RequestLogEntry)] == ENTRY_FIELDS


def test_entry_dict_omits_unset_and_reads_camel_case() -> None:
    entry = RequestLogEntry(request_id="r1", method="POST", path="/x", status_code=201, response_ms=1.5,
                            customer_id="c")
    assert entry.dict() == {"request_id": "r1", "method": "POST", "path": "/x", "status_code": 201,
                            "response_ms": 1.5, "customer_id": "c"}
    again = RequestLogEntry.from_dict({"requestId": "r1", "method": "POST", "path": "/x", "statusCode": 201,
                                       "responseMs": 1.5, "customerId": "c", "bogus": 1})
    assert again == entry


def test_encode_fills_defaults_clamps_and_truncates_bodies() -> None:
    body = "가" * 10_000  # 3 bytes each: 30 000 bytes
    wire = orjson.loads(encode_entry(RequestLogEntry(
        request_id="r", method="M" * 40, path="/", status_code=200, response_ms=0.0, request_body=body,
        user_agent="u" * 5000)))
    assert wire["source"] == "sdk" and wire["timestamp"].endswith("Z")
    assert len(wire["method"]) == 32 and len(wire["user_agent"]) == 1024
    assert len(wire["request_body"].encode()) <= BODY_LIMIT
    assert wire["request_body"] == body[: BODY_LIMIT // 3]
    assert wire["request_body_size"] == 30_000
    assert truncate_utf8("abc", 2) == "ab"


def test_environment_fills_missing_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GT8004_AGENT_ID", "env-agent")
    monkeypatch.setenv("GT8004_API_KEY", "env-key")
    monkeypatch.setenv("GT8004_INGEST_URL", "http://127.0.0.1:1/v1/ingest")
    logger = GT8004Logger()
    assert (logger.agent_id, logger.ingest_url, logger.enabled) == ("env-agent", "http://127.0.0.1:1/v1/ingest",
                                                                   True)
    explicit = GT8004Logger(agent_id="arg-agent", ingest_url="http://h/v1/ingest")
    assert (explicit.agent_id, explicit.ingest_url) == ("arg-agent", "http://h/v1/ingest")
    monkeypatch.delenv("GT8004_INGEST_URL")
    assert GT8004Logger().ingest_url == "http://localhost:9092/v1/ingest"


async def test_without_credentials_the_logger_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GT8004_AGENT_ID", raising=False)
    monkeypatch.delenv("GT8004_API_KEY", raising=False)
    logger = GT8004Logger()
    logger.transport.start_auto_flush()
    entry = RequestLogEntry(request_id="r", method="GET", path="/", status_code=200, response_ms=1.0)
    assert logger.enabled is False
    assert await logger.log(entry) is False
    assert await logger.verify_connection() is False
    await logger.close()


def test_invalid_settings_fail_at_construction() -> None:
    with pytest.raises(gt8004.ConfigError):
        GT8004Logger("a", "k", batch_size=0)
    with pytest.raises(gt8004.ConfigError):
        GT8004Logger("a", "k", max_queue_entries=10, batch_size=50)
