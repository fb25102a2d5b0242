"""Validate, price and key usage reports (``UsageRecord`` on the usage topic)."""

from __future__ import annotations

import msgspec

from schemas.events import SCHEMA_VERSION, UsageRecord, usage_record_decoder
from stream_workers.enrich import USAGE_COLUMNS, clamp_event_time, usage_row
from stream_workers.records import Parsed, dead_letter

__all__ = ["UsageHandler"]

_LIMITS = {"app_id": 256, "report_id": 128, "key_sha256": 64, "module": 64, "model": 128}


class UsageHandler:
    kind = "usage"
    table = "usage_events"
    columns = USAGE_COLUMNS

    def __init__(self, max_event_age_days: int = 30) -> None:
        self._max_age_days = max_event_age_days

    def parse(self, value: bytes | None, topic: str, partition: int, offset: int, rows: bool = True) -> Parsed:
        out = Parsed()
        if not value:
            out.dead.append(dead_letter("empty", "record has no value", value, topic, partition, offset))
            return out
        try:
            record = usage_record_decoder.decode(value)
        except msgspec.ValidationError as exc:
            out.dead.append(dead_letter("schema", str(exc), value, topic, partition, offset))
            return out
        except msgspec.DecodeError as exc:
            out.dead.append(dead_letter("invalid_json", str(exc), value, topic, partition, offset))
            return out
        if record.v != SCHEMA_VERSION:
            out.dead.append(dead_letter("unsupported_version", f"schema version {record.v} is not {SCHEMA_VERSION}",
                                        value, topic, partition, offset, record.app_id))
            return out
        problem = self._check(record)
        if problem:
            out.dead.append(dead_letter("schema", problem, value, topic, partition, offset, record.app_id))
            return out
        event_ms, why = clamp_event_time(record.timestamp, record.ingested_at, self._max_age_days)
        if why is not None:
            out.clamped.append(why)
        out.items.append((f"{record.app_id}\x1f{record.report_id}", usage_row(record, event_ms) if rows else []))
        return out

    @staticmethod
    def _check(record: UsageRecord) -> str:
        for name, limit in _LIMITS.items():
            text = getattr(record, name)
            if not text or len(text) > limit:
                return f"{name} must be 1..{limit} characters"
        if not 0 <= record.usage <= 10**12:
            return "usage out of range"
        return ""
