"""The evaluator's reads and writes in ClickHouse: rules with their state, the rollups a rule compares,
events (the webhooks' outbox) and the delivery log.

Synchronous (chDB has no async client): the evaluator calls these on its one ClickHouse thread. Every SQL
text is a file of ``schemas/queries`` (``alert_*.sql``) with parameters bound by the engine. Inserts carry an
``insert_deduplication_token`` made of what they record (an event's id, an (event, attempt) pair), so an
evaluator that repeats a write after a crash, or a second evaluator while the lease moves, adds no row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

from clickhouse_connect.driver.client import Client

import schemas
from meterline.clickhouse import INSERT_SETTINGS
from schemas.alerts import DELIVERY_COLUMNS, EVENT_COLUMNS, Rule, rule_from_row

__all__ = ["Pending", "StoredRule", "insert_attempt", "insert_event", "pending", "read_requests", "read_usage",
           "rules"]

_QUERIES: Final = Path(schemas.__file__).resolve().parent / "queries"


@cache
def _sql(name: str) -> str:
    return (_QUERIES / f"{name}.sql").read_text()


def _run(client: Client, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    result = client.query(_sql(name), parameters=params)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class StoredRule:
    """A rule as the evaluator sees it: the rule, the secret that signs its webhooks, its state and the seq
    of its last transition (0: none yet)."""

    rule: Rule
    secret: str
    state: str
    seq: int


def rules(client: Client) -> list[StoredRule]:
    """Every rule of every agent with its state."""
    return [StoredRule(rule_from_row(r), r["secret"], r["state"], int(r["seq"]))
            for r in _run(client, "alert_rules", {"agent_id": "", "rule_id": ""})]


def read_requests(client: Client, rule: Rule, start: datetime, end: datetime) -> dict[str, Any]:
    """requests, errors, p95_ms and last_seen of the rule's agent (or customer) in ``[start, end)``."""
    row = _run(client, "alert_eval_requests", {"agent_id": rule.agent_id, "customer": rule.customer_id,
                                               "start": start, "end": end})[0]
    if row["last_seen"] is not None:
        row["last_seen"] = _utc(row["last_seen"])
    return row


def read_usage(client: Client, rule: Rule, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Quantity per (day, model) of the rule's meter in ``[start, end)``."""
    return _run(client, "alert_eval_usage", {"app_id": rule.agent_id, "module": rule.meter, "model": rule.model,
                                             "customer": rule.customer_id, "start": start, "end": end})


def insert_event(client: Client, row: list[Any]) -> None:
    """One ``alert_events`` row (``EVENT_COLUMNS``), deduplicated by its event id."""
    event_id = row[EVENT_COLUMNS.index("event_id")]
    client.insert("alert_events", [row], column_names=list(EVENT_COLUMNS),
                  settings={**INSERT_SETTINGS, "insert_deduplication_token": f"alert-event/{event_id}"})


def insert_attempt(client: Client, row: list[Any]) -> None:
    """One ``alert_deliveries`` row (``DELIVERY_COLUMNS``), deduplicated by (event, attempt)."""
    event_id = row[DELIVERY_COLUMNS.index("event_id")]
    attempt = row[DELIVERY_COLUMNS.index("attempt")]
    client.insert("alert_deliveries", [row], column_names=list(DELIVERY_COLUMNS),
                  settings={**INSERT_SETTINGS, "insert_deduplication_token": f"alert-delivery/{event_id}/{attempt}"})


@dataclass(frozen=True)
class Pending:
    """An event whose next delivery attempt is due."""

    agent_id: str
    rule_id: str
    event_id: str
    url: str
    body: str
    attempts: int


def pending(client: Client, now: datetime, since: datetime, limit: int = 1000) -> list[Pending]:
    """Events since ``since`` whose next attempt is due at ``now``, oldest first."""
    rows = _run(client, "alert_pending", {"now": now, "since": since, "limit": limit})
    return [Pending(r["agent_id"], r["rule_id"], r["event_id"], r["webhook_url"], r["body"], int(r["attempts"]))
            for r in rows]
