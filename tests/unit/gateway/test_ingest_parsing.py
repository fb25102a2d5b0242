"""The pure ingest path: decoding, limits, casings, per-entry rejection, truncation, record building."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.errors import IngestRefused
from gateway.ingest import build_records, decode_body, parse_batch
from schemas.events import request_batch_decoder

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def entry(i: int, **extra: Any) -> dict[str, Any]:
    return {"request_id": f"r-{i}", "method": "GET", "path": "/", "status_code": 200, "response_ms": 1, **extra}


def parse(doc: Any, max_entries: int = 1000) -> Any:
    return parse_batch(json.dumps(doc).encode(), max_entries=max_entries, now=NOW)


def test_gzip_is_decoded_and_bombs_refused_with_413() -> None:
    assert decode_body(gzip.compress(b'{"a":1}'), "gzip", 1000) == b'{"a":1}'
    bomb = gzip.compress(b"\0" * 50_000_000)  # ~50 KB on the wire
    assert len(bomb) < 100_000
    with pytest.raises(IngestRefused) as info:
        decode_body(bomb, "gzip", 8 * 1024 * 1024)
    assert info.value.status_code == 413 and "decompression" in info.value.message


def test_bad_encodings_refused() -> None:
    with pytest.raises(IngestRefused) as info:
        decode_body(b"xx", "br", 1000)
    assert info.value.status_code == 415
    with pytest.raises(IngestRefused) as info:
        decode_body(b"not gzip", "gzip", 1000)
    assert info.value.status_code == 400
    with pytest.raises(IngestRefused) as info:
        decode_body(gzip.compress(b"x" * 1000)[:-12], "gzip", 10_000)
    assert info.value.code == "invalid_gzip"
    with pytest.raises(IngestRefused) as info:
        decode_body(b"x" * 1001, None, 1000)
    assert info.value.status_code == 413


@pytest.mark.parametrize("body, code", [
    (b'{"entries": [', "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    (b'"entries"', "invalid_body"),
    (b"{}", "no_entries"),
    (b'{"entries": []}', "no_entries"),
    (b'{"entries": {"a": 1}}', "invalid_body"),
    (b'{"entries": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "invalid_json"),
    (b'{"entries": [{"request_id": "a\\ud800"}]}', "invalid_json"),
    (b'{"sdk_version": 5, "entries": [{}]}', "invalid_body"),
])
def test_malformed_bodies_are_400(body: bytes, code: str) -> None:
    with pytest.raises(IngestRefused) as info:
        parse_batch(body, max_entries=10, now=NOW)
    assert info.value.status_code == 400 and info.value.code == code


def test_too_many_entries_is_413() -> None:
    with pytest.raises(IngestRefused) as info:
        parse({"entries": [entry(i) for i in range(11)]}, max_entries=10)
    assert info.value.status_code == 413 and "split" in info.value.message


def test_both_casings_and_per_entry_rejections() -> None:
    parsed = parse({"agentId": "a", "sdkVersion": "1.0", "batchId": "b", "entries": [
        entry(0),
        {"requestId": "r-1", "method": "tools/call", "path": "/mcp", "statusCode": 200, "responseMs": 2.5,
         "x402Token": "USDC-base-mainnet", "toolName": "t"},
        entry(2, status_code="200"),
        entry(3, method="M" * 33),
        "not an object",
        {"method": "GET"},
        entry(6, timestamp="yesterday"),
        entry(7, source="sdk_ping"),
        entry(8, headers={"h" * 300: "v"}),
        entry(9, request_body="nul\u0000 and emoji 😀"),
    ]})
    assert (parsed.claimed_agent_id, parsed.sdk_version, parsed.batch_id) == ("a", "1.0", "b")
    assert [e.request_id for e in parsed.entries] == ["r-0", "r-1", "r-9"]
    assert parsed.entries[1].tool_name == "t" and parsed.entries[1].x402_token == "USDC-base-mainnet"
    assert parsed.entries[2].request_body == "nul\u0000 and emoji 😀"
    assert parsed.pings == 1 and parsed.accepted == 4
    rejected = {r["index"]: r["error"] for r in parsed.rejected}
    assert sorted(rejected) == [2, 3, 4, 5, 6, 8]
    assert "status_code" in rejected[2] and "method" in rejected[3] and "object" in rejected[4]
    assert "request_id" in rejected[5] and "timestamp" in rejected[6] and "header" in rejected[8]


def test_timestamps_normalised_to_utc_and_defaulted() -> None:
    parsed = parse({"entries": [entry(0, timestamp="2026-01-02T03:04:05+02:00"), entry(1),
                                entry(2, timestamp="2026-01-02T03:04:05")]})
    assert [e.timestamp for e in parsed.entries] == [
        "2026-01-02T01:04:05.000Z", "2026-11-23T12:00:00.000Z", "2026-01-02T03:04:05.000Z"]


def test_bodies_truncated_to_16_kib_with_original_size() -> None:
    parsed = parse({"entries": [entry(0, request_body="ü" * 10_000, response_body="ok")]})
    e = parsed.entries[0]
    assert e.request_body is not None and len(e.request_body.encode()) == 16 * 1024
    assert e.request_body_size == 20_000 and e.response_body == "ok" and e.response_body_size is None


def test_records_keep_contract_and_split_under_the_limit() -> None:
    parsed = parse({"batch_id": "b", "sdk_version": "2", "entries": [entry(i, request_body="x" * 16_000)
                                                                     for i in range(100)]})
    one = build_records("agent", parsed, 123, granularity="batch", max_bytes=10 * 1024 * 1024)
    assert len(one) == 1
    split = build_records("agent", parsed, 123, granularity="batch", max_bytes=200 * 1024)
    assert len(split) > 1 and all(len(v) <= 200 * 1024 for v in split)
    per_entry = build_records("agent", parsed, 123, granularity="entry")
    assert len(per_entry) == 100
    for values in (one, split, per_entry):
        records = [request_batch_decoder.decode(v) for v in values]
        assert [e.request_id for r in records for e in r.entries] == [f"r-{i}" for i in range(100)]
        assert {(r.agent_id, r.batch_id, r.ingested_at, r.sdk_version, r.v) for r in records} == {
            ("agent", "b", 123, "2", 1)}


def test_missing_batch_id_is_generated() -> None:
    assert len(parse({"entries": [entry(0)]}).batch_id) == 32


def _jwt(claims: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"Bearer eyJhbGciOiJub25lIn0.{body}.sig"


# What a client other than our SDK may send: credentials, a payment signature, in any letter case.
SECRETS = {"Authorization": _jwt({"sub": "user-42"}), "X-PAYMENT": "eyJwYXltZW50IjoxfQ==",
           "x-auth-token": "tok-secret", "X-Csrf-Token": "csrf-secret", "Cookie": "session=cookie-secret"}


@pytest.mark.parametrize("casing", ["snake", "camel"])  # the typed fast path and the per-entry path
def test_secret_headers_never_reach_the_kafka_record(casing: str) -> None:
    headers = {**SECRETS, "Accept": "*/*", "X-Customer-ID-Hint": "kept"}
    if casing == "snake":
        doc = {"entries": [entry(0, headers=headers), entry(1, headers=headers, customer_id="given")]}
    else:
        doc = {"entries": [{"requestId": f"r-{i}", "method": "GET", "path": "/", "statusCode": 200, "responseMs": 1,
                            "headers": headers, **extra} for i, extra in enumerate([{}, {"customerId": "given"}])]}
    (value,) = build_records("agent", parse(doc), 123)
    for secret in SECRETS.values():
        assert secret.encode() not in value
    (record,) = [request_batch_decoder.decode(value)]
    assert [e.headers for e in record.entries] == [{"Accept": "*/*", "X-Customer-ID-Hint": "kept"}] * 2
    # the customer the Authorization header named is kept; a customer the client gave wins
    assert [e.customer_id for e in record.entries] == ["user-42", "given"]


def test_entries_without_secret_headers_are_left_as_they_are() -> None:
    headers = {"accept": "*/*", "user-agent": "sdk"}
    (kept, bare) = parse({"entries": [entry(0, headers=headers), entry(1)]}).entries
    assert kept.headers == headers and kept.customer_id is None
    assert bare.headers is None
