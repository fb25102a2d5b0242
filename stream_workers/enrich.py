"""Enrichment: validated events become ClickHouse rows (the rules, step by step: ``stream_workers/README.md``).

Times are epoch milliseconds internally and leave as float epoch seconds (millisecond precision),
which ClickHouse parses into ``DateTime64(3, 'UTC')``. ``stored_at`` is not set here: the table
default (insert time) records when the sink wrote the row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from meterline.customers import derive_customer_id
from schemas.events import RequestBatchRecord, RequestEntry, UsageRecord, truncate_utf8
from schemas.headers import SECRET_HEADERS
from schemas.prices import unit_price

__all__ = [
    "REQUEST_COLUMNS",
    "USAGE_COLUMNS",
    "EventTimeError",
    "clamp_event_time",
    "derive_customer_id",
    "parse_timestamp_ms",
    "request_row",
    "usage_row",
]

REQUEST_COLUMNS: Final = [
    "agent_id", "request_id", "batch_id", "sdk_version", "event_time", "ingested_at", "method", "path",
    "status_code", "response_ms", "is_error", "is_payment_required", "customer_id", "tool_name",
    "error_type", "protocol", "source", "x402_amount", "x402_tx_hash", "x402_token", "x402_payer",
    "request_body", "response_body", "request_body_size", "response_body_size", "headers", "ip_address",
    "user_agent", "referer", "content_type", "accept_language", "country", "city",
]
USAGE_COLUMNS: Final = [
    "app_id", "report_id", "key_sha256", "module", "model", "usage", "unit_price", "cost", "event_time",
    "ingested_at", "metadata",
]
_DAY_MS: Final = 86_400_000
_json = msgspec.json.Encoder()


class EventTimeError(ValueError):
    """A client timestamp that is not ISO-8601."""


def parse_timestamp_ms(text: str) -> int:
    """ISO-8601 (``Z`` or offset; naive means UTC) to epoch milliseconds."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise EventTimeError(f"timestamp {text[:64]!r} is not ISO-8601") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def clamp_event_time(event_ms: int, ingested_ms: int, max_age_days: int) -> tuple[int, str | None]:
    """Client clocks in the future, or older than ``max_age_days``, are replaced by ``ingested_ms``."""
    if event_ms > ingested_ms:
        return ingested_ms, "future"
    if event_ms < ingested_ms - max_age_days * _DAY_MS:
        return ingested_ms, "too_old"
    return event_ms, None


#: Header names (as sent) already seen not to be secret. Header names repeat in every entry of every
#: agent, so most entries pass with one set operation and keep their dict, where the comprehension
#: copied every dict (py-spy: 7 % of the worker's event loop). Bounded: a stream of made-up names
#: falls back to the per-name check.
_SAFE_NAMES: set[str] = set()
_SAFE_NAMES_MAX: Final = 4096


def _headers(headers: dict[str, str] | None) -> dict[str, str]:
    if not headers:
        return {}
    if _SAFE_NAMES.issuperset(headers):
        return headers
    kept = {}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            continue
        kept[name] = value
        if len(_SAFE_NAMES) < _SAFE_NAMES_MAX:
            _SAFE_NAMES.add(name)
    return kept


def request_row(record: RequestBatchRecord, entry: RequestEntry, event_ms: int) -> list[Any]:
    """One ``request_logs`` row in ``REQUEST_COLUMNS`` order (without ``stored_at``)."""
    status = entry.status_code
    return [
        record.agent_id, entry.request_id, record.batch_id, record.sdk_version or "",
        event_ms / 1000, record.ingested_at / 1000, entry.method, entry.path, status, entry.response_ms,
        1 if status >= 400 and status != 402 else 0, 1 if status == 402 else 0,
        derive_customer_id(entry), entry.tool_name or "", entry.error_type or "", entry.protocol or "",
        entry.source or "", entry.x402_amount or 0.0, entry.x402_tx_hash or "", entry.x402_token or "",
        entry.x402_payer or "",
        truncate_utf8(entry.request_body) if entry.request_body else "",
        truncate_utf8(entry.response_body) if entry.response_body else "",
        min(entry.request_body_size or 0, 2**32 - 1), min(entry.response_body_size or 0, 2**32 - 1),
        _headers(entry.headers), entry.ip_address or "", entry.user_agent or "", entry.referer or "",
        entry.content_type or "", entry.accept_language or "", entry.country or "", entry.city or "",
    ]


def usage_row(record: UsageRecord, event_ms: int) -> list[Any]:
    """One ``usage_events`` row in ``USAGE_COLUMNS`` order, priced from ``schemas/prices.toml``.

    ``unit_price`` and ``cost`` are a float snapshot of the price in effect on the event's UTC day (0 when
    nothing prices it), for ad-hoc SQL; statements do not read them: they price the stored quantities
    with the price list as exact decimals (``dashboards/billing.py``).
    """
    price = unit_price(record.module, record.model, datetime.fromtimestamp(event_ms / 1000, UTC).date()) or 0
    metadata = _json.encode(record.metadata).decode() if record.metadata else ""
    return [
        record.app_id, record.report_id, record.key_sha256, record.module, record.model, record.usage,
        float(price), float(record.usage * price), event_ms / 1000, record.ingested_at / 1000, metadata,
    ]
