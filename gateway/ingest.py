"""The ingest path's pure part: body decoding, batch validation, Kafka record building.

The contract these functions implement is section 1 of ``docs/wire-protocols.md``.

No I/O here, so every limit is unit-testable: ``decode_body`` (gzip with bounded decompression),
``parse_batch`` (both casings, per-entry rejection, truncation, timestamp normalisation, secret
headers stripped) and ``build_records`` (one record per batch or per entry, split under a byte limit).

Secret headers (``schemas/headers.py``) never reach Kafka: our SDK leaves them out, other clients may
not. The customer an ``Authorization`` header names is derived before that header is dropped.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from gateway.errors import IngestRefused
from meterline.customers import derive_customer_id
from schemas.events import (
    BODY_LIMIT,
    CAMEL_TO_SNAKE,
    IngestBatch,
    RequestBatchRecord,
    RequestEntry,
    normalise_keys,
    request_batch_encoder,
    truncate_utf8,
)
from schemas.headers import SECRET_HEADERS

SDK_PING: str = "sdk_ping"
_CAMEL_KEYS: frozenset[str] = frozenset(CAMEL_TO_SNAKE)


class _StrictEntry(RequestEntry, forbid_unknown_fields=True):
    """Fast path: a snake_case entry with only known fields (what our SDK sends)."""


class _StrictBatch(msgspec.Struct, forbid_unknown_fields=True):
    entries: list[_StrictEntry]
    agent_id: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    sdk_version: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    batch_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None


_strict_decoder = msgspec.json.Decoder(_StrictBatch)
_MAX_HEADER_NAME = 256
_MAX_TIMESTAMP = 64
_CHUNK = 64 * 1024


@dataclass
class ParsedBatch:
    """A validated ingest call: publishable entries, sdk pings, and the per-entry rejections."""

    claimed_agent_id: str | None
    sdk_version: str | None
    batch_id: str
    entries: list[RequestEntry] = field(default_factory=list)
    pings: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.entries) + self.pings


def decode_body(raw: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding`` (identity or gzip); refuse output over ``max_bytes`` with 413.

    Decompression is incremental and stops as soon as the limit is passed, so a gzip bomb costs at
    most ``max_bytes`` of memory.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        if len(raw) > max_bytes:
            raise _too_large(max_bytes)
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise IngestRefused(f"unsupported Content-Encoding {encoding[:32]!r}: use gzip or none",
                            status_code=415, code="unsupported_encoding")
    inflater = zlib.decompressobj(wbits=31)
    out = bytearray()
    data = raw
    try:
        while data:
            out += inflater.decompress(data, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise _too_large(max_bytes, "after gzip decompression")
            data = inflater.unconsumed_tail
        out += inflater.flush(_CHUNK)
    except zlib.error as exc:
        raise IngestRefused(f"invalid gzip body: {exc}", code="invalid_gzip") from exc
    if len(out) > max_bytes:
        raise _too_large(max_bytes, "after gzip decompression")
    if not inflater.eof:
        raise IngestRefused("invalid gzip body: truncated stream", code="invalid_gzip")
    return bytes(out)


def _too_large(max_bytes: int, where: str = "") -> IngestRefused:
    suffix = f" {where}" if where else ""
    return IngestRefused(f"request body exceeds {max_bytes} bytes{suffix}; split the batch",
                         status_code=413, code="body_too_large")


def parse_batch(body: bytes, *, max_entries: int, now: datetime, body_limit: int = BODY_LIMIT) -> ParsedBatch:
    """Validate an ingest body; invalid entries are listed by index, valid ones kept.

    A body of snake_case, schema-valid entries (the common case) is decoded straight into typed
    structs; anything else (camelCase, unknown or invalid fields) takes the per-entry path.
    """
    received = _iso(now)
    try:
        strict = _strict_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        pass
    else:
        if 0 < len(strict.entries) <= max_entries:
            parsed = ParsedBatch(claimed_agent_id=strict.agent_id, sdk_version=strict.sdk_version,
                                 batch_id=strict.batch_id or uuid.uuid4().hex)
            for index, typed in enumerate(strict.entries):
                try:
                    parsed_entry: RequestEntry = _finish(typed, body_limit, received)
                except ValueError as exc:
                    parsed.rejected.append({"index": index, "error": str(exc)[:300]})
                    continue
                _keep(parsed, parsed_entry)
            return parsed
    try:
        doc = msgspec.json.decode(body)
    except RecursionError as exc:
        raise IngestRefused("malformed JSON: nested too deeply", code="invalid_json") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise IngestRefused(f"malformed JSON: {exc}", code="invalid_json") from exc
    if not isinstance(doc, dict):
        raise IngestRefused("body must be a JSON object with an 'entries' list", code="invalid_body")
    if "entries" not in doc:
        raise IngestRefused("no entries: the body needs a non-empty 'entries' list", code="no_entries")
    try:
        batch = msgspec.convert(normalise_keys(doc), IngestBatch)
    except msgspec.ValidationError as exc:
        raise IngestRefused(f"invalid batch: {exc}", code="invalid_body") from exc
    if not batch.entries:
        raise IngestRefused("no entries: the body needs a non-empty 'entries' list", code="no_entries")
    if len(batch.entries) > max_entries:
        raise IngestRefused(f"{len(batch.entries)} entries exceed the limit of {max_entries} per batch; "
                            "split the batch", status_code=413, code="too_many_entries")
    parsed = ParsedBatch(claimed_agent_id=batch.agent_id, sdk_version=batch.sdk_version,
                         batch_id=batch.batch_id or uuid.uuid4().hex)
    for index, raw_entry in enumerate(batch.entries):
        try:
            entry = _entry(raw_entry, body_limit, received)
        except (msgspec.ValidationError, ValueError) as exc:
            parsed.rejected.append({"index": index, "error": str(exc)[:300]})
            continue
        _keep(parsed, entry)
    return parsed


def _keep(parsed: ParsedBatch, entry: RequestEntry) -> None:
    if entry.source == SDK_PING:
        parsed.pings += 1
    else:
        parsed.entries.append(entry)


def _entry(raw: Any, body_limit: int, received: str) -> RequestEntry:
    if not isinstance(raw, dict):
        raise ValueError(f"entry must be an object, got {type(raw).__name__}")
    if not _CAMEL_KEYS.isdisjoint(raw):
        raw = normalise_keys(raw)
    return _finish(msgspec.convert(raw, RequestEntry), body_limit, received)


def _finish(entry: RequestEntry, body_limit: int, received: str) -> RequestEntry:
    """Checks msgspec cannot express, secret headers, timestamp normalisation and body truncation."""
    if entry.headers:
        secret = False
        for name in entry.headers:
            if len(name) > _MAX_HEADER_NAME:
                raise ValueError(f"header name longer than {_MAX_HEADER_NAME} characters - at `$.headers`")
            secret = secret or name.lower() in SECRET_HEADERS
        if secret:
            _strip_secrets(entry, entry.headers)
    entry.timestamp = _normalise_timestamp(entry.timestamp) if entry.timestamp is not None else received
    if entry.request_body is not None:
        cut = truncate_utf8(entry.request_body, body_limit)
        if cut is not entry.request_body:
            if entry.request_body_size is None:
                entry.request_body_size = len(entry.request_body.encode("utf-8", "surrogatepass"))
            entry.request_body = cut
    if entry.response_body is not None:
        cut = truncate_utf8(entry.response_body, body_limit)
        if cut is not entry.response_body:
            if entry.response_body_size is None:
                entry.response_body_size = len(entry.response_body.encode("utf-8", "surrogatepass"))
            entry.response_body = cut
    return entry


def _strip_secrets(entry: RequestEntry, headers: dict[str, str]) -> None:
    """Drop the secret headers; keep the customer one of them names (as the worker would derive it)."""
    if not entry.customer_id:
        entry.customer_id = derive_customer_id(entry) or None
    entry.headers = {k: v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}


def _normalise_timestamp(value: str) -> str:
    if len(value) > _MAX_TIMESTAMP:
        raise ValueError("timestamp is not ISO-8601 (too long) - at `$.timestamp`")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"timestamp {value[:40]!r} is not ISO-8601 - at `$.timestamp`") from exc
    if len(value) > 19 and value[-1] == "Z" and value[10] == "T":
        return value  # already UTC in the canonical ISO form: keep the client's precision as sent
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return _iso(parsed.astimezone(UTC))
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"timestamp {value[:40]!r} is out of range - at `$.timestamp`") from exc


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_records(agent_id: str, parsed: ParsedBatch, ingested_at: int, *,
                  granularity: Literal["batch", "entry"] = "batch",
                  max_bytes: int = 900 * 1024) -> list[bytes]:
    """Kafka values (``RequestBatchRecord`` JSON) for the publishable entries of one ingest call."""
    def record(entries: list[RequestEntry]) -> bytes:
        return request_batch_encoder.encode(RequestBatchRecord(
            agent_id=agent_id, batch_id=parsed.batch_id, ingested_at=ingested_at, entries=entries,
            sdk_version=parsed.sdk_version))

    if not parsed.entries:
        return []
    if granularity == "entry":
        return [record([entry]) for entry in parsed.entries]
    out: list[bytes] = []
    pending = [parsed.entries]
    while pending:
        chunk = pending.pop()
        value = record(chunk)
        if len(value) <= max_bytes or len(chunk) == 1:
            out.append(value)
        else:
            half = len(chunk) // 2
            pending += [chunk[half:], chunk[:half]]
    return out


__all__ = ["SDK_PING", "ParsedBatch", "build_records", "decode_body", "parse_batch"]
