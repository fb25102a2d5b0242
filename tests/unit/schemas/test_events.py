"""Event models: both key casings, limits, truncation, Kafka records without keys."""

from __future__ import annotations

import msgspec
import pytest

import schemas.events as events
from schemas.events import (
    BODY_LIMIT,
    RequestBatchRecord,
    RequestEntry,
    UsageRecord,
    normalise_keys,
    request_batch_decoder,
    request_batch_encoder,
    truncate_utf8,
)
from schemas.topics import Topics

SNAKE = {"request_id": "r1", "method": "tools/call", "path": "/mcp", "status_code": 402,
         "response_ms": 12.5, "customer_id": "c1", "tool_name": "search", "x402_amount": 0.05,
         "x402_tx_hash": "0xabc", "x402_token": "USDC-base-mainnet", "request_body_size": 10}
CAMEL = {"requestId": "r1", "method": "tools/call", "path": "/mcp", "statusCode": 402,
         "responseMs": 12.5, "customerId": "c1", "toolName": "search", "x402Amount": 0.05,
         "x402TxHash": "0xabc", "x402Token": "USDC-base-mainnet", "requestBodySize": 10}


def test_snake_and_camel_entries_decode_to_the_same_model() -> None:
    a = msgspec.convert(normalise_keys(SNAKE), RequestEntry)
    b = msgspec.convert(normalise_keys(CAMEL), RequestEntry)
    assert a == b
    assert a.x402_token == "USDC-base-mainnet" and a.method == "tools/call"


def test_batch_level_keys_accept_camel_case() -> None:
    batch = normalise_keys({"agentId": "a", "sdkVersion": "1.0", "batchId": "b", "entries": []})
    assert batch == {"agent_id": "a", "sdk_version": "1.0", "batch_id": "b", "entries": []}


@pytest.mark.parametrize(("field", "value"), [
    ("method", "x" * 33), ("status_code", 99), ("status_code", "200"), ("response_ms", -1.0),
    ("x402_token", "t" * 65), ("request_id", ""), ("protocol", "smtp"), ("headers", {"a": 1}),
])
def test_invalid_fields_are_rejected_with_a_message(field: str, value: object) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert({**SNAKE, field: value}, RequestEntry)
    assert field in str(info.value)


def test_missing_required_field_is_named() -> None:
    data = dict(SNAKE)
    del data["status_code"]
    with pytest.raises(msgspec.ValidationError, match="status_code"):
        msgspec.convert(data, RequestEntry)


def test_truncate_utf8_keeps_whole_characters() -> None:
    text = "가" * BODY_LIMIT  # 3 bytes each
    cut = truncate_utf8(text)
    assert len(cut.encode()) <= BODY_LIMIT
    assert cut == "가" * (BODY_LIMIT // 3)
    assert truncate_utf8("short") == "short"


def test_request_batch_record_roundtrip_has_no_key_fields() -> None:
    entry = msgspec.convert(SNAKE, RequestEntry)
    record = RequestBatchRecord(agent_id="a", batch_id="b", ingested_at=1, entries=[entry])
    wire = request_batch_encoder.encode(record)
    assert request_batch_decoder.decode(wire) == record
    assert b"api_key" not in wire
    assert "api_key" not in UsageRecord.__struct_fields__


def test_public_names_are_exported() -> None:
    for name in events.__all__:
        assert hasattr(events, name)


def test_topic_specs_keep_keys_compacted_and_partitions_equal() -> None:
    topics = Topics(prefix="p.", partitions=4)
    specs = {s.name: s for s in topics.specs()}
    assert specs["p.keys"].config["cleanup.policy"] == "compact"
    assert specs["p.requests"].partitions == specs["p.usage"].partitions == 4
