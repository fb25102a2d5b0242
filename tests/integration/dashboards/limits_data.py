"""Usage rows for the limit tests, inserted as the sink inserts them (a dedupe token, dependent views too)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from meterline.clickhouse import INSERT_SETTINGS

COLUMNS = ["app_id", "report_id", "key_sha256", "module", "model", "usage", "unit_price", "cost", "event_time",
           "ingested_at", "stored_at", "metadata"]


def utc(text: str) -> datetime:
    """An ISO-8601 instant without offset, read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def insert(client: Client, rows: Sequence[tuple[str, str, str, int, str, str | None]]) -> None:
    """``(app, module, model, usage, event time, customer or None)`` rows as one sink batch."""
    out = []
    for i, (app, module, model, usage, when, customer) in enumerate(rows):
        metadata = json.dumps({"customer_id": customer} if customer is not None else {})
        at = utc(when)
        report = hashlib.sha256(f"{app}|{module}|{model}|{usage}|{when}|{customer}|{i}".encode()).hexdigest()[:32]
        out.append([app, report, "ab" * 32, module, model, usage, 0.0, 0.0, at, at, at, metadata])
    token = hashlib.sha256("\n".join(str(r[1]) for r in out).encode()).hexdigest()
    client.insert("usage_events", out, column_names=COLUMNS,
                  settings={**INSERT_SETTINGS, "insert_deduplication_token": token,
                            "deduplicate_blocks_in_dependent_materialized_views": 1})
