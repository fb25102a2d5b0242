"""Validation of Kafka records: the fast path, per-entry dead letters, poison records."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.events import UsageRecord
from stream_workers.batch import OpenBatch, decode_batch, encode_batch
from stream_workers.handlers.requests import RequestHandler
from stream_workers.handlers.usage import UsageHandler

enc = msgspec.json.Encoder()
GOOD = {"request_id": "r1", "method": "tools/call", "path": "/mcp", "status_code": 200, "response_ms": 2.0,
        "timestamp": "2023-11-14T22:13:20Z", "x402_token": "USDC-base-mainnet"}


def record(entries: list[object], v: int = 1) -> bytes:
    return enc.encode({"v": v, "agent_id": "ag", "batch_id": "b", "ingested_at": 1_700_000_000_000,
                       "entries": entries})


def test_valid_record_yields_keyed_rows() -> None:
    parsed = RequestHandler().parse(record([GOOD, {**GOOD, "request_id": "r2"}]), "t", 0, 5)
    assert [k for k, _ in parsed.items] == ["ag\x1fr1", "ag\x1fr2"]
    assert not parsed.dead


def test_keys_only_parse_accepts_exactly_the_same_entries() -> None:
    value = record([GOOD, {**GOOD, "request_id": "r2", "timestamp": "bad"}, {**GOOD, "request_id": "r3"},
                    {**GOOD, "request_id": "r4", "status_code": 42}])
    full, keys = RequestHandler().parse(value, "t", 0, 0), RequestHandler().parse(value, "t", 0, 0, rows=False)
    assert [k for k, _ in full.items] == [k for k, _ in keys.items] == ["ag\x1fr1", "ag\x1fr3"]
    assert all(row for _, row in full.items) and not any(row for _, row in keys.items)


def test_invalid_entry_is_dead_lettered_alone() -> None:
    parsed = RequestHandler().parse(record([GOOD, {**GOOD, "request_id": "r2", "status_code": 999},
                                            {**GOOD, "request_id": "r3", "timestamp": "soon"}]), "t", 1, 9)
    assert [k for k, _ in parsed.items] == ["ag\x1fr1"]
    assert sorted(d.reason for d in parsed.dead) == ["bad_timestamp", "schema"]
    assert all(d.partition == 1 and d.offset == 9 and d.agent_id == "ag" for d in parsed.dead)


def test_dead_lettered_entries_keep_no_credentials() -> None:
    bad = {**GOOD, "status_code": 999, "headers": {"Authorization": "Bearer s3cret", "Accept": "x"}}
    late = {**GOOD, "timestamp": "never", "headers": {"Cookie": "s3cret"}}
    dead = RequestHandler().parse(record([bad, late]), "t", 0, 0).dead
    assert len(dead) == 2 and all("s3cret" not in d.payload for d in dead)
    assert '"Accept"' in dead[0].payload


def test_poison_records() -> None:
    h = RequestHandler()
    assert [d.reason for d in h.parse(b"\x00\xffgarbage", "t", 0, 0).dead] == ["invalid_json"]
    assert [d.reason for d in h.parse(record([GOOD], v=2), "t", 0, 0).dead] == ["unsupported_version"]
    assert [d.reason for d in h.parse(b"[1,2]", "t", 0, 0).dead] == ["schema"]
    assert [d.reason for d in h.parse(None, "t", 0, 0).dead] == ["empty"]
    big = h.parse(b"\xff" * 200_000, "t", 0, 0).dead[0]
    assert len(big.payload) <= 64 * 1024


def test_usage_validation() -> None:
    h = UsageHandler()
    ok = UsageRecord(app_id="a", report_id="r", key_sha256="f" * 64, module="llm", model="m", usage=3,
                     timestamp=1_700_000_000_000, ingested_at=1_700_000_000_000)
    assert [k for k, _ in h.parse(enc.encode(ok), "u", 0, 0).items] == ["a\x1fr"]
    bad = msgspec.structs.replace(ok, module="")
    assert [d.reason for d in h.parse(enc.encode(bad), "u", 0, 0).dead] == ["schema"]
    assert [d.reason for d in h.parse(b"{", "u", 0, 0).dead] == ["invalid_json"]


def test_sealed_batch_token_is_the_offset_range_and_survives_the_sink_topic() -> None:
    parsed = RequestHandler().parse(record([GOOD, {**GOOD, "status_code": 999}]), "t", 2, 40)
    batch = OpenBatch(40)
    batch.rows.extend(row for _, row in parsed.items)
    batch.dead.extend(parsed.dead)
    batch.end = 43
    sealed = batch.seal("topic", 2, "request_logs", RequestHandler.columns)
    assert sealed.token == "topic/2/40-43"
    assert [(b.table, b.rows) for b in sealed.blocks] == [("request_logs", 1)]  # dead letters: via the topic
    assert decode_batch(encode_batch(sealed)) == sealed


def test_a_handler_bug_becomes_a_dead_letter_not_a_stopped_partition() -> None:
    from types import SimpleNamespace

    from aiokafka.structs import TopicPartition

    from stream_workers.records import parse_record

    class Broken(RequestHandler):
        def parse(self, value: bytes | None, topic: str, partition: int, offset: int, rows: bool = True) -> Any:
            raise OverflowError("bug")

    rec = SimpleNamespace(value=b"{}", offset=3)
    for rows in (True, False):  # processing and rebuilding decide the same way
        parsed = parse_record(Broken(), rec, TopicPartition("t", 1), rows=rows)
        assert not parsed.items and [(d.reason, d.offset) for d in parsed.dead] == [("processing_error", 3)]


def test_dead_letter_mirror_keys_ignore_the_publish_time_of_replayed_worker_letters() -> None:
    from schemas.events import DeadLetter
    from stream_workers.handlers.dead_letters import DeadLetterHandler

    h = DeadLetterHandler()
    worker = DeadLetter(reason="schema", error="e", stage="worker", source_topic="req", payload="{}", failed_at=1,
                        partition=0, offset=7)
    again = msgspec.structs.replace(worker, failed_at=2)  # the same letter, published again by a replay
    other = msgspec.structs.replace(worker, payload='{"x":1}')  # another bad entry of the same record
    bridge1 = DeadLetter(reason="unknown_key", error="e", stage="bridge", source_topic="billing/report",
                         payload="{}", failed_at=5)
    bridge2 = msgspec.structs.replace(bridge1, failed_at=6)  # a second, separate report
    keys = [h.parse(enc.encode(d), "dlq", 0, i).items[0][0] for i, d in enumerate((worker, again, other, bridge1,
                                                                                   bridge2))]
    assert keys[0] == keys[1] and len(set(keys)) == 4
    row = h.parse(enc.encode(worker), "dlq", 0, 0).items[0][1]
    assert row[:3] == [0.001, "worker", "schema"]
    junk = h.parse(b"not a dead letter", "dlq", 2, 9)
    assert junk.items[0][1][2] == "invalid_dead_letter" and not junk.dead
