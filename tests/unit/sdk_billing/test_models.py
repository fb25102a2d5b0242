"""Report payloads: the fields of docs/wire-protocols.md (section 2), stable ids, and the protocol's limits
enforced before queueing."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from billing_sdk import InvalidUsageError, UsageData
from billing_sdk._models import MAX_PAYLOAD_BYTES, build_report, key_sha256


def test_payload_fields() -> None:
    before = int(time.time() * 1000)
    report_id, payload = build_report(UsageData("key-1", "llm", "gpt-4", 150, {"prompt_tokens": 100}), "app-7")
    body = orjson.loads(payload)
    assert body == {"app_id": "app-7", "api_key": "key-1", "module": "llm", "model": "gpt-4", "usage": 150,
                    "timestamp": body["timestamp"], "metadata": {"prompt_tokens": 100}, "report_id": report_id}
    assert before <= body["timestamp"] <= int(time.time() * 1000)
    assert uuid.UUID(report_id).version == 4


def test_optional_fields_left_out_and_ids_unique() -> None:
    first_id, payload = build_report(UsageData("k", "tts", "voice", 0), None)
    body = orjson.loads(payload)
    assert "app_id" not in body and "metadata" not in body
    second_id, _ = build_report(UsageData("k", "tts", "voice", 0), None)
    assert first_id != second_id


def test_given_report_id_and_timestamp_are_kept() -> None:
    report_id, payload = build_report(UsageData("k", "asr", "whisper", 30, report_id="r-1", timestamp=123), None)
    assert report_id == "r-1"
    assert orjson.loads(payload)["timestamp"] == 123


@pytest.mark.parametrize("data", [
    UsageData("", "llm", "m", 1),
    UsageData("k", "", "m", 1),
    UsageData("k", "llm", "", 1),
    UsageData("k", "x" * 65, "m", 1),
    UsageData("k", "llm", "m", -1),
    UsageData("k", "llm", "m", 10**13),
    UsageData("k", "llm", "m", True),
    UsageData("k", "llm", "m", 1.5),  # type: ignore[arg-type]
    UsageData("k" * 257, "llm", "m", 1),
    UsageData("k", "llm", "m", 1, {"x": object()}),
    UsageData("k", "llm", "m", 1, {"blob": "x" * MAX_PAYLOAD_BYTES}),
])
def test_invalid_reports_refused(data: UsageData) -> None:
    with pytest.raises(InvalidUsageError):
        build_report(data, None)


def test_invalid_usage_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="usage"):
        build_report(UsageData("k", "llm", "m", -5), None)


def test_key_hash() -> None:
    assert key_sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
