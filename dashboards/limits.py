"""Usage limits (entitlements) over ClickHouse: set, list and delete them, and check usage against them.

A limit (``schemas/limits.py``) caps one app's usage of one meter per UTC day or month, for the whole app
or for one end customer. It is stored as a new row of ``limits`` per write (migration 0005, newest version
wins, ``deleted`` marks a deletion) and read back with ``schemas/queries/limits.sql``. What a limit has used
comes from the per-day rollups of migration 0005 (``schemas/queries/limit_usage.sql``): one small query per
check, whatever the number of the app's customers, and exactly as fresh as the usage the workers stored —
a report still in Kafka is not counted yet (docs/limits.md says what that means for a caller).

``check`` answers "may this customer use ``quantity`` more?": allowed when, for every limit that applies
(the app's own limits on the meter, and the customer's), ``used + quantity <= limit``. Setting or deleting a
limit also puts or deletes the ``usage`` alert rule ``limit:<id>`` through ``RuleSync`` (docs/alerts.md),
so that reaching a limit fires an alert without an evaluator of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from dashboards import alerts
from dashboards.errors import DashboardError
from dashboards.queries import DashboardQueries, utcnow
from meterline.clickhouse import INSERT_SETTINGS
from schemas.alerts import Rule
from schemas.limits import (
    MAX_LIMITS_PER_AGENT,
    Limit,
    LimitError,
    MeterScope,
    alert_rule_id,
    meter_scope,
    parse_quantity,
    period_bounds,
    quantity_text,
)
from schemas.prices import PriceList, price_list

__all__ = ["LimitNotFound", "Limits", "LimitsError", "RuleSync", "Stored", "limit_json", "parse_limit",
           "sync_alert_rule"]

log = logging.getLogger(__name__)

_COLUMNS: Final = ("agent_id", "limit_id", "scope", "customer_id", "meter", "unit", "model", "period", "quantity",
                   "created_at", "updated_at", "version", "deleted")
#: On a cluster ``limits`` is a Distributed table: the write must have reached its shard when the insert
#: returns, or the listing that answers a ``set`` (and the next check) might not see it yet.
_WRITE_SETTINGS: Final[dict[str, Any]] = {**INSERT_SETTINGS, "distributed_foreground_insert": 1}
#: Puts (``deleted`` False; with a webhook URL, or None to keep the rule's) or deletes the alert rule that
#: watches a limit, returning the rule's webhook secret when the rule was created now.
RuleSync = Callable[[Client, Limit, bool, str | None], str | None]


class LimitsError(DashboardError):
    """A limit request that cannot be carried out: an invalid limit, or too many of them."""


class LimitNotFound(LimitsError):
    """No limit with this id for this agent."""


def sync_alert_rule(client: Client, limit: Limit, deleted: bool, webhook_url: str | None) -> str | None:
    """Put (or delete) the ``usage`` alert rule ``limit:<id>`` that fires when ``limit`` is reached (docs/alerts.md).

    The rule keeps its webhook URL unless one is given. A limit of 0 has no rule: it is reached from the
    start, and an alert rule's threshold must be above 0.
    """
    rule_id = alert_rule_id(limit.limit_id)
    if deleted or limit.quantity <= 0:
        alerts.delete_rule(client, limit.agent_id, rule_id)
        return None
    if webhook_url is None:
        existing = alerts.get_rule(client, limit.agent_id, rule_id)
        webhook_url = existing["webhook_url"] if existing else ""
    scope, unit = meter_scope(price_list(), limit.meter, limit.unit, limit.model)
    who = f" of customer {limit.customer_id}" if limit.customer_id is not None else ""
    try:
        rule = Rule.model_validate({
            "agent_id": limit.agent_id, "rule_id": rule_id, "kind": "usage", "customer_id": limit.customer_id or "",
            "name": f"limit {quantity_text(limit.quantity)} {unit}/{limit.period} of {limit.meter}{who}"[:200],
            "threshold": limit.quantity, "meter": scope.module, "model": scope.model, "unit": unit,
            "period": limit.period, "webhook_url": webhook_url})
    except ValueError as exc:  # pydantic's ValidationError: a webhook URL the rule refuses
        raise LimitsError(f"the limit's alert rule: {exc}") from exc
    return alerts.put_rule(client, rule).secret


@dataclass(frozen=True)
class Stored:
    """What ``Limits.put`` did: the limit as stored, whether it is new, and its alert rule's webhook secret
    when that rule was created now (shown once, to verify the webhook's signatures)."""

    limit: Limit
    created: bool
    alert_secret: str | None


@dataclass(frozen=True)
class _Usage:
    """Units of one (module, model) row: of the whole app (``customer`` None), or of one named customer."""

    module: str
    model: str
    customer: str | None
    month: int
    day: int


def limit_json(limit: Limit) -> dict[str, Any]:
    """A limit as the API and the CLI show it (the quantity as decimal text)."""
    return {"limit_id": limit.limit_id, "agent_id": limit.agent_id, "scope": limit.scope,
            "customer_id": limit.customer_id, "meter": limit.meter, "unit": limit.unit, "model": limit.model,
            "period": limit.period, "limit": quantity_text(limit.quantity), "created_at": limit.created_at,
            "updated_at": limit.updated_at}


class Limits:
    """The limits of every agent in one ClickHouse database, checked against one price list's meters."""

    def __init__(self, client: Client, prices: PriceList | None = None, rules: RuleSync | None = None) -> None:
        self.client = client
        self.views = DashboardQueries(client)
        self.prices = prices or price_list()
        self.rules = rules or sync_alert_rule

    # --- writing ----------------------------------------------------------------------------------
    def validate(self, limit: Limit) -> Limit:
        """``limit`` with its meter's unit filled in; ``LimitsError`` if the price list cannot meter it."""
        try:
            _, unit = meter_scope(self.prices, limit.meter, limit.unit or None, limit.model)
            if limit.period not in ("day", "month"):
                raise LimitError(f"period must be day or month, got {limit.period!r}")
        except LimitError as exc:
            raise LimitsError(str(exc)) from exc
        if limit.customer_id == "":
            raise LimitsError("a customer's limit needs a customer id (leave it out for the app's own limit)")
        return replace(limit, unit=unit)

    def put(self, limit: Limit, now: datetime | None = None, webhook_url: str | None = None) -> Stored:
        """Store ``limit`` (a new one, or a new quantity for the same terms) and its alert rule (notifying
        ``webhook_url``, else whom the rule notified before)."""
        limit = self.validate(limit)
        now = now or utcnow()
        existing = self.find(limit.agent_id)
        old = next((x for x in existing if x.limit_id == limit.limit_id), None)
        if old is None and len(existing) >= MAX_LIMITS_PER_AGENT:
            raise LimitsError(f"agent {limit.agent_id!r} has {len(existing)} limits, the most one may have")
        stored = replace(limit, created_at=old.created_at if old else now, updated_at=now)
        self._write(stored, deleted=False)
        secret = self.rules(self.client, stored, False, webhook_url)
        log.info("limit %s of %s: %s %s per %s%s", stored.limit_id, stored.agent_id, quantity_text(stored.quantity),
                 stored.unit, stored.period, f" for customer {stored.customer_id!r}" if stored.customer_id else "")
        return Stored(stored, old is None, secret)

    def delete(self, agent_id: str, limit_id: str) -> Limit:
        """Delete the limit ``limit_id`` of ``agent_id`` (and its alert rule); ``LimitNotFound`` if none."""
        found = self.get(agent_id, limit_id)
        self._write(replace(found, updated_at=utcnow()), deleted=True)
        self.rules(self.client, found, True, None)
        log.info("limit %s of %s deleted", limit_id, agent_id)
        return found

    def _write(self, limit: Limit, *, deleted: bool) -> None:
        row = [limit.agent_id, limit.limit_id, limit.scope, limit.customer_id or "", limit.meter, limit.unit,
               limit.model, limit.period, quantity_text(limit.quantity), limit.created_at, limit.updated_at,
               time.time_ns(), int(deleted)]
        self.client.insert("limits", [row], column_names=list(_COLUMNS), settings=_WRITE_SETTINGS)

    # --- reading ----------------------------------------------------------------------------------
    def find(self, agent_id: str, limit_id: str = "") -> list[Limit]:
        """The limits of ``agent_id`` (only ``limit_id`` when given), ordered by meter, model, period, scope."""
        rows = self.views.run("limits", {"agent_id": agent_id, "limit_id": limit_id})
        return [Limit(agent_id=agent_id, meter=r["meter"], unit=r["unit"], period=r["period"],
                      quantity=Decimal(r["quantity"]), customer_id=r["customer_id"] if r["scope"] == "customer"
                      else None, model=r["model"], created_at=r["created_at"], updated_at=r["updated_at"])
                for r in rows]

    def get(self, agent_id: str, limit_id: str) -> Limit:
        found = self.find(agent_id, limit_id)
        if not found:
            raise LimitNotFound(f"agent {agent_id!r} has no limit {limit_id!r}")
        return found[0]

    def status(self, agent_id: str, at: datetime | None = None, limit_id: str = "") -> list[dict[str, Any]]:
        """Every limit of ``agent_id`` with what it has used in its period holding ``at`` (default now), and
        the state of its alert rule (``ok``, ``firing``; None without one)."""
        return self.states(agent_id, self.find(agent_id, limit_id), at)

    def states(self, agent_id: str, limits: list[Limit], at: datetime | None = None) -> list[dict[str, Any]]:
        """``limits`` (of ``agent_id``, as in hand: a limit just written need not be read back) with their use."""
        at = at or utcnow()
        usage = self._usage(agent_id, limits, at)
        rules = {r["rule_id"]: r["state"] for r in alerts.list_rules(self.client, agent_id)} if limits else {}
        return [self._state(lim, usage, at, Decimal(0))
                | {"alert_rule_id": alert_rule_id(lim.limit_id) if alert_rule_id(lim.limit_id) in rules else None,
                   "alert_state": rules.get(alert_rule_id(lim.limit_id))}
                for lim in limits]

    def check(self, agent_id: str, meter: str, quantity: Decimal, *, unit: str | None = None, model: str = "",
              customer: str | None = None, at: datetime | None = None) -> dict[str, Any]:
        """May ``customer`` (None: the app itself) use ``quantity`` more of ``meter`` (and ``model``) at ``at``?"""
        try:
            _, unit = meter_scope(self.prices, meter, unit, model)
        except LimitError as exc:
            raise LimitsError(str(exc)) from exc
        at = at or utcnow()
        applies = [lim for lim in self.find(agent_id) if lim.meter == meter and lim.model in ("", model)
                   and (lim.customer_id is None or lim.customer_id == customer)]
        usage = self._usage(agent_id, applies, at)
        states = sorted((self._state(lim, usage, at, quantity) for lim in applies),
                        key=lambda s: (Decimal(s["remaining"]), s["period_end"]))
        binding = next((s for s in states if not s["allowed"]), states[0] if states else None)
        return {
            "agent_id": agent_id, "meter": meter, "unit": unit, "model": model, "customer_id": customer,
            "quantity": quantity_text(quantity), "at": at, "allowed": all(s["allowed"] for s in states),
            "limit": binding["limit"] if binding else None, "used": binding["used"] if binding else None,
            "remaining": binding["remaining"] if binding else None,
            "period_start": binding["period_start"] if binding else None,
            "period_end": binding["period_end"] if binding else None,
            "limit_id": binding["limit_id"] if binding else None,
            "limits": states,
        }

    def _usage(self, agent_id: str, limits: Iterable[Limit], at: datetime) -> list[_Usage]:
        limits = list(limits)
        if not limits:
            return []
        modules = sorted({self._scope(lim).module for lim in limits})
        customers = sorted({lim.customer_id for lim in limits if lim.customer_id is not None})
        app_wide = any(lim.customer_id is None for lim in limits)
        rows = self.views.run("limit_usage", {"app_id": agent_id, "day": at.astimezone(UTC).date(),
                                              "modules": modules, "customers": customers, "app_wide": int(app_wide)})
        return [_Usage(r["module"], r["model"], r["customer"] if r["named"] else None, int(r["month_units"]),
                       int(r["day_units"])) for r in rows]

    def _scope(self, limit: Limit) -> MeterScope:
        try:
            return meter_scope(self.prices, limit.meter, None, limit.model)[0]
        except LimitError as exc:  # the price list changed under a stored limit: it meters nothing now
            log.warning("limit %s of %s: %s", limit.limit_id, limit.agent_id, exc)
            return MeterScope("", "\x00", ())

    def _state(self, limit: Limit, usage: Iterable[_Usage], at: datetime, quantity: Decimal) -> dict[str, Any]:
        scope = self._scope(limit)
        start, end = period_bounds(limit.period, at)
        used = sum((u.month if limit.period == "month" else u.day) for u in usage
                   if scope.counts(u.module, u.model) and u.customer == limit.customer_id)
        remaining = max(limit.quantity - used, Decimal(0))
        return limit_json(limit) | {
            "period_start": start, "period_end": end, "used": used, "remaining": quantity_text(remaining),
            "reached": used >= limit.quantity, "allowed": used + quantity <= limit.quantity,
        }


def parse_limit(agent_id: str, body: Mapping[str, Any]) -> Limit:
    """A ``Limit`` of ``agent_id`` from validated body fields (meter, unit, model, period, limit, customer_id)."""
    try:
        quantity = parse_quantity(body["limit"])
    except LimitError as exc:
        raise LimitsError(str(exc)) from exc
    return Limit(agent_id=agent_id, meter=body["meter"], unit=body.get("unit") or "", period=body["period"],
                 quantity=quantity, customer_id=body.get("customer_id"), model=body.get("model") or "")
