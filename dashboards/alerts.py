"""Alert rules as the query side writes and reads them: ``put_rule``, ``delete_rule``, and the listings.

Rules live in ClickHouse (``alert_rules``, a ReplacingMergeTree by version with a deleted flag:
``schemas/migrations/0004_alerts.sql``); the evaluator in the stream workers reads them every interval, so a
rule written here is evaluated from the next tick on, by whichever worker evaluates (docs/alerts.md). The
read API (``dashboards/alerts_api.py``), the CLI and the usage limits (rules ``limit:<id>`` of kind ``usage``)
all write through these functions. Reads go through the ``.sql`` files of ``schemas/queries``.

A rule's webhook secret is made when the rule is first written and returned then only; writing the rule
again keeps it. The listings never include it.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from dashboards.errors import DashboardError
from dashboards.queries import DashboardQueries, utcnow
from meterline.clickhouse import INSERT_SETTINGS
from schemas.alerts import (
    EVENT_COLUMNS,
    RULE_COLUMNS,
    Rule,
    decimal_text,
    event_body,
    new_secret,
    rule_from_row,
    rule_row,
)
from schemas.prices import price_list

__all__ = ["MAX_LIMIT", "PutResult", "check_unit", "delete_rule", "get_rule", "list_deliveries", "list_events",
           "list_rules", "put_rule", "queue_test_event"]

log = logging.getLogger(__name__)

MAX_LIMIT: Final = 1000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PutResult:
    """What ``put_rule`` did: the rule as stored, and its secret if it was created now (else None)."""

    rule: Rule
    created: bool
    secret: str | None


def _version() -> int:
    """A rule version: nanoseconds of the wall clock, so a later write replaces an earlier one."""
    return time.time_ns()


def check_unit(rule: Rule) -> None:
    """Refuse a usage rule whose unit is neither its meter's unit nor the price list's currency."""
    if rule.kind != "usage":
        return
    prices = price_list()
    meter = prices.meters.get(f"{rule.meter}/{rule.model}") or prices.meters.get(rule.meter)
    if meter is None:
        if rule.unit == prices.currency:
            raise DashboardError(f"meter {rule.meter!r} has no price in the price list: spend cannot be computed")
        return
    if rule.unit not in (meter.unit, prices.currency):
        raise DashboardError(f"a {rule.meter!r} rule counts {meter.unit!r} or spend in {prices.currency!r}, "
                             f"not {rule.unit!r}")


def _stored(client: Client, agent_id: str, rule_id: str) -> dict[str, Any] | None:
    rows = DashboardQueries(client).run("alert_rules", {"agent_id": agent_id, "rule_id": rule_id})
    return rows[0] if rows else None


def put_rule(client: Client, rule: Rule, now: datetime | None = None) -> PutResult:
    """Create ``rule`` or replace the rule of the same (agent, id); the secret is made on creation only."""
    check_unit(rule)
    now = now or utcnow()
    old = _stored(client, rule.agent_id, rule.rule_id)
    secret = old["secret"] if old else new_secret()
    created_at = old["created_at"] if old else now
    client.insert("alert_rules", [rule_row(rule, version=_version(), secret=secret, created_at=created_at,
                                           updated_at=now)],
                  column_names=list(RULE_COLUMNS), settings=INSERT_SETTINGS)
    log.info("alert rule %s of agent %s %s (%s)", rule.rule_id, rule.agent_id, "updated" if old else "created",
             rule.kind)
    return PutResult(rule, old is None, None if old else secret)


def delete_rule(client: Client, agent_id: str, rule_id: str, now: datetime | None = None) -> bool:
    """Delete the rule; False if there was none. Its events and deliveries stay (the log is history)."""
    old = _stored(client, agent_id, rule_id)
    if old is None:
        return False
    now = now or utcnow()
    row = rule_row(rule_from_row(old), version=_version(), secret="", created_at=old["created_at"],
                   updated_at=now, deleted=True)
    client.insert("alert_rules", [row], column_names=list(RULE_COLUMNS), settings=INSERT_SETTINGS)
    log.info("alert rule %s of agent %s deleted", rule_id, agent_id)
    return True


def _public(row: dict[str, Any]) -> dict[str, Any]:
    rule = rule_from_row(row).public()
    since = row["state_since"]
    return {**rule, "created_at": row["created_at"], "updated_at": row["updated_at"], "state": row["state"],
            "state_since": None if row["seq"] == 0 or since <= _EPOCH else since,
            "last_value": row["last_value"] or None}


def list_rules(client: Client, agent_id: str = "") -> list[dict[str, Any]]:
    """The rules of ``agent_id`` ('' = every agent) with their state, without secrets."""
    return [_public(r) for r in DashboardQueries(client).run("alert_rules", {"agent_id": agent_id, "rule_id": ""})]


def get_rule(client: Client, agent_id: str, rule_id: str) -> dict[str, Any] | None:
    row = _stored(client, agent_id, rule_id)
    return _public(row) if row else None


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise DashboardError(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def list_events(client: Client, agent_id: str, rule_id: str = "", limit: int = 100) -> list[dict[str, Any]]:
    """Transitions and test events, newest first."""
    return DashboardQueries(client).run("alert_events", {"agent_id": agent_id, "rule_id": rule_id,
                                                         "limit": _limit(limit)})


def list_deliveries(client: Client, agent_id: str, rule_id: str = "", event_id: str = "",
                    limit: int = 100) -> list[dict[str, Any]]:
    """Delivery attempts, newest first."""
    return DashboardQueries(client).run("alert_deliveries", {"agent_id": agent_id, "rule_id": rule_id,
                                                             "event_id": event_id, "limit": _limit(limit)})


def queue_test_event(client: Client, agent_id: str, rule_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Queue a test delivery of the rule's webhook: an event of transition ``test`` that the evaluator
    delivers on its next tick like any other (signed, retried, logged). Returns the event."""
    old = _stored(client, agent_id, rule_id)
    if old is None:
        raise DashboardError(f"no alert rule {rule_id!r} of agent {agent_id!r}")
    if not old["webhook_url"]:
        raise DashboardError(f"alert rule {rule_id!r} has no webhook_url to test")
    now = now or utcnow()
    rule = rule_from_row(old)
    event_id = "evt_test_" + secrets.token_hex(12)
    body = event_body(event_id=event_id, transition="test", created_at=now, rule=rule, value=None,
                      window_start=None, window_end=None)
    row = [agent_id, rule_id, 0, event_id, rule.kind, "test", "", decimal_text(rule.threshold), now, now, now,
           rule.webhook_url, body]
    client.insert("alert_events", [row], column_names=list(EVENT_COLUMNS), settings=INSERT_SETTINGS)
    return {"event_id": event_id, "agent_id": agent_id, "rule_id": rule_id, "transition": "test",
            "evaluated_at": now, "webhook_url": rule.webhook_url}
