"""Validate, enrich and key request entries (``RequestBatchRecord`` on the requests topic).

The fast path decodes a whole record with the typed decoder. A record that fails it takes the slow
path: undecodable bytes or a wrong schema version send the whole record to the dead letters, an
invalid entry sends only that entry, and the record's valid entries go on.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.events import SCHEMA_VERSION, RequestBatchRecord, RequestEntry, request_batch_decoder
from schemas.headers import SECRET_HEADERS
from stream_workers.enrich import (
    REQUEST_COLUMNS,
    EventTimeError,
    clamp_event_time,
    parse_timestamp_ms,
    request_row,
)
from stream_workers.records import Parsed, dead_letter

__all__ = ["RequestHandler"]

_encode = msgspec.json.Encoder().encode
_NO_ROW: list[Any] = []


def _scrubbed(entry: Any) -> bytes:
    """An entry for a dead letter, without credentials in its headers."""
    item = msgspec.to_builtins(entry) if isinstance(entry, RequestEntry) else entry
    if isinstance(item, dict) and isinstance(item.get("headers"), dict):
        item = {**item, "headers": {k: v for k, v in item["headers"].items()
                                    if str(k).lower() not in SECRET_HEADERS}}
    return _encode(item)


class RequestHandler:
    kind = "request"
    table = "request_logs"
    columns = REQUEST_COLUMNS

    def __init__(self, max_event_age_days: int = 30) -> None:
        self._max_age_days = max_event_age_days

    def parse(self, value: bytes | None, topic: str, partition: int, offset: int, rows: bool = True) -> Parsed:
        out = Parsed()
        if not value:
            out.dead.append(dead_letter("empty", "record has no value", value, topic, partition, offset))
            return out
        record: RequestBatchRecord | None
        try:
            record = request_batch_decoder.decode(value)
        except (msgspec.ValidationError, msgspec.DecodeError):
            record = self._slow(value, topic, partition, offset, out)
        if record is None:
            return out
        if record.v != SCHEMA_VERSION:
            out.dead.append(dead_letter("unsupported_version", f"schema version {record.v} is not {SCHEMA_VERSION}",
                                        value, topic, partition, offset, record.agent_id))
            return out
        self._entries(record, record.entries, topic, partition, offset, out, rows)
        return out

    def _entries(self, record: RequestBatchRecord, entries: list[RequestEntry], topic: str, partition: int,
                 offset: int, out: Parsed, rows: bool) -> None:
        agent = record.agent_id
        for entry in entries:
            event_ms = record.ingested_at
            if entry.timestamp is not None:
                try:
                    event_ms = parse_timestamp_ms(entry.timestamp)
                except EventTimeError as exc:
                    out.dead.append(dead_letter("bad_timestamp", str(exc), _scrubbed(entry), topic, partition,
                                                offset, agent))
                    continue
                event_ms, why = clamp_event_time(event_ms, record.ingested_at, self._max_age_days)
                if why is not None:
                    out.clamped.append(why)
            row = request_row(record, entry, event_ms) if rows else _NO_ROW
            out.items.append((f"{agent}\x1f{entry.request_id}", row))

    def _slow(self, value: bytes, topic: str, partition: int, offset: int, out: Parsed) -> RequestBatchRecord | None:
        try:
            raw = msgspec.json.decode(value)
        except msgspec.DecodeError as exc:
            out.dead.append(dead_letter("invalid_json", str(exc), value, topic, partition, offset))
            return None
        if not isinstance(raw, dict):
            out.dead.append(dead_letter("schema", "record is not a JSON object", value, topic, partition, offset))
            return None
        agent = raw.get("agent_id") if isinstance(raw.get("agent_id"), str) else None
        if raw.get("v", SCHEMA_VERSION) != SCHEMA_VERSION:
            out.dead.append(dead_letter("unsupported_version", f"schema version {raw.get('v')!r} is not "
                                        f"{SCHEMA_VERSION}", value, topic, partition, offset, agent))
            return None
        entries: Any = raw.get("entries")
        try:
            record = msgspec.convert({**raw, "entries": []}, RequestBatchRecord)
        except msgspec.ValidationError as exc:
            out.dead.append(dead_letter("schema", str(exc), value, topic, partition, offset, agent))
            return None
        if not isinstance(entries, list):
            out.dead.append(dead_letter("schema", "entries is not a list", value, topic, partition, offset, agent))
            return None
        for item in entries:
            try:
                record.entries.append(msgspec.convert(item, RequestEntry))
            except msgspec.ValidationError as exc:
                out.dead.append(dead_letter("schema", f"entry: {exc}", _scrubbed(item), topic, partition, offset,
                                            agent))
        return record
