"""``meterline alerts create|list|delete|test|events|deliveries``: alert rules (docs/alerts.md) from a shell.

Like the other read commands (``dashboards/cli.py``), they use ClickHouse at ``CLICKHOUSE_URL`` when they can
open it and the gateway's read API otherwise — while ``meterline up`` holds the embedded engine, or when told
``--gateway URL`` — with the agent's key (its own rules) or the operator token (any agent's; for the local
stack, the one ``meterline up`` keeps). Both ways run the same code: ``dashboards/alerts.py`` here, or behind
``dashboards/alerts_api.py`` there. ``create`` prints the webhook secret once, on stderr.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from typing import Any
from urllib.parse import quote

import httpx
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from pydantic import ValidationError

from dashboards import alerts
from dashboards.cli import _remote_options, _source, format_table
from dashboards.errors import DashboardError
from dashboards.export import csv_value
from dashboards.remote import RemoteViews
from meterline.errors import MeterlineError
from schemas.alerts import KINDS, PERIODS, Rule

__all__ = ["RemoteAlerts", "register"]

_TOKEN_HELP = "the agent's API key (its own rules) or the operator token (any agent's)"  # noqa: S105 - help text


class RemoteAlerts(RemoteViews):
    """The alert routes of the read API (``/v1/agents/{agent}/alerts``)."""

    def _path(self, agent_id: str, rest: str) -> str:
        return f"/v1/agents/{quote(agent_id, safe='')}/alerts{rest}"

    def create(self, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", self._path(agent_id, "/rules"), json=body)
        return result

    def rules(self, agent_id: str | None) -> list[dict[str, Any]]:
        url = self._path(agent_id, "/rules") if agent_id else "/v1/alerts/rules"
        result: list[dict[str, Any]] = self._call("GET", url)["rules"]
        return result

    def delete(self, agent_id: str, rule_id: str) -> None:
        """``DELETE``: answered 204 without a body (which ``_call`` would read as JSON)."""
        try:
            resp = self._http.delete(self._path(agent_id, "/rules/" + quote(rule_id, safe="")))
        except httpx.HTTPError as exc:
            raise DashboardError(f"cannot reach the gateway at {self.base_url}: {exc}") from exc
        if resp.status_code >= 400:
            raise self._refusal(resp)

    def test(self, agent_id: str, rule_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", self._path(agent_id, f"/rules/{quote(rule_id, safe='')}/test"))
        return result

    def events(self, agent_id: str, rule_id: str, limit: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", self._path(agent_id, "/events"),
                                                  params={"rule_id": rule_id, "limit": limit})["events"]
        return result

    def deliveries(self, agent_id: str, rule_id: str, event_id: str, limit: int) -> list[dict[str, Any]]:
        params = {"rule_id": rule_id, "event_id": event_id, "limit": limit}
        result: list[dict[str, Any]] = self._call("GET", self._path(agent_id, "/deliveries"),
                                                  params=params)["deliveries"]
        return result


class _LocalAlerts:
    """The same calls as ``RemoteAlerts``, on ClickHouse directly."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def create(self, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "rule_id": body.get("rule_id") or "r_" + secrets.token_hex(8), "agent_id": agent_id}
        try:
            rule = Rule.model_validate(body)
        except ValidationError as exc:
            raise DashboardError("; ".join(e["msg"] for e in exc.errors())) from exc
        if alerts.get_rule(self.client, agent_id, rule.rule_id) is not None:
            raise DashboardError(f"agent {agent_id!r} has a rule {rule.rule_id!r} already")
        result = alerts.put_rule(self.client, rule)
        return {"rule": alerts.get_rule(self.client, agent_id, rule.rule_id), "secret": result.secret}

    def rules(self, agent_id: str | None) -> list[dict[str, Any]]:
        return alerts.list_rules(self.client, agent_id or "")

    def delete(self, agent_id: str, rule_id: str) -> None:
        if not alerts.delete_rule(self.client, agent_id, rule_id):
            raise DashboardError(f"no alert rule {rule_id!r} of agent {agent_id!r}")

    def test(self, agent_id: str, rule_id: str) -> dict[str, Any]:
        return alerts.queue_test_event(self.client, agent_id, rule_id)

    def events(self, agent_id: str, rule_id: str, limit: int) -> list[dict[str, Any]]:
        return alerts.list_events(self.client, agent_id, rule_id, limit)

    def deliveries(self, agent_id: str, rule_id: str, event_id: str, limit: int) -> list[dict[str, Any]]:
        return alerts.list_deliveries(self.client, agent_id, rule_id, event_id, limit)

    def close(self) -> None:
        """Nothing to close: the client is the process's."""


def register(sub: Any) -> None:
    p = sub.add_parser("alerts", help="alert rules on error rate, p95 latency, traffic stopping and usage/spend, "
                                      "with signed webhooks (docs/alerts.md)")
    what = p.add_subparsers(dest="what", required=True, metavar="ACTION")

    c = what.add_parser("create", help="create a rule (prints its webhook secret once, on stderr)")
    c.add_argument("--agent", required=True, help="agent id")
    c.add_argument("--kind", required=True, choices=KINDS)
    c.add_argument("--threshold", default="0", help="error_rate: a fraction (0.05); p95_latency: ms; usage: the "
                                                    "unit's quantity (decimal)")
    c.add_argument("--window", type=int, default=300, metavar="SECONDS",
                   help="error_rate/p95_latency/no_traffic: window in whole minutes, as seconds (default 300)")
    c.add_argument("--min-requests", type=int, default=1, help="error_rate: fewer requests decide nothing")
    c.add_argument("--customer", default="", help="only this end customer (default: the whole agent)")
    c.add_argument("--meter", default="", help="usage: a usage report's module (llm, tts, asr, tool)")
    c.add_argument("--model", default="", help="usage: only this model")
    c.add_argument("--unit", default="", help="usage: the meter's unit (tokens, ...) or the currency (USD) for spend")
    c.add_argument("--period", default="day", choices=PERIODS, help="usage: UTC calendar day or month")
    c.add_argument("--webhook", default="", metavar="URL", help="where events are POSTed (default: none, recorded)")
    c.add_argument("--name", default="", help="a name shown in lists and webhooks")
    c.add_argument("--id", dest="rule_id", default=None, help="the rule's id (default: one is made)")
    _common(c)
    c.set_defaults(func=cmd_create)

    lst = what.add_parser("list", help="rules with their state (every agent's for the operator without --agent)")
    lst.add_argument("--agent", default=None, help="agent id")
    _common(lst)
    lst.set_defaults(func=cmd_list)

    d = what.add_parser("delete", help="delete a rule (its events and deliveries stay)")
    d.add_argument("rule_id")
    d.add_argument("--agent", required=True, help="agent id")
    _common(d)
    d.set_defaults(func=cmd_delete)

    t = what.add_parser("test", help="queue a test delivery of a rule's webhook (sent on the evaluator's next tick)")
    t.add_argument("rule_id")
    t.add_argument("--agent", required=True, help="agent id")
    _common(t)
    t.set_defaults(func=cmd_test)

    e = what.add_parser("events", help="transitions (fired, resolved) and test events, newest first")
    e.add_argument("--agent", required=True, help="agent id")
    e.add_argument("--rule", default="", help="only this rule's")
    e.add_argument("--limit", type=int, default=50)
    _common(e)
    e.set_defaults(func=cmd_events)

    dl = what.add_parser("deliveries", help="the webhook delivery log, newest attempt first")
    dl.add_argument("--agent", required=True, help="agent id")
    dl.add_argument("--rule", default="", help="only this rule's")
    dl.add_argument("--event", default="", help="only this event's")
    dl.add_argument("--limit", type=int, default=50)
    _common(dl)
    dl.set_defaults(func=cmd_deliveries)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table")
    _remote_options(p, _TOKEN_HELP)


def _backend(args: argparse.Namespace) -> RemoteAlerts | _LocalAlerts:
    source = _source(args)
    if isinstance(source, RemoteViews):
        source.close()
        return RemoteAlerts(source.base_url, source.token)
    return _LocalAlerts(source)


def _call(args: argparse.Namespace, action: str, *call: Any) -> Any:
    backend = _backend(args)
    try:
        return getattr(backend, action)(*call)
    except ClickHouseError as exc:
        raise MeterlineError(f"query failed: {exc}") from exc
    finally:
        backend.close()


def _print(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str]) -> None:
    if args.format == "json":
        sys.stdout.write(json.dumps(rows, indent=2, default=csv_value) + "\n")
        return
    sys.stdout.write(format_table(columns, [["" if r.get(c) is None else _cell(r.get(c)) for c in columns]
                                            for r in rows]))


def _cell(value: Any) -> Any:
    return value if isinstance(value, int | float | str) else csv_value(value)


_RULE_COLUMNS = ["agent_id", "rule_id", "kind", "state", "threshold", "window_s", "period", "customer_id", "meter",
                 "unit", "webhook_url", "state_since"]


def cmd_create(args: argparse.Namespace) -> int:
    body = {"kind": args.kind, "threshold": args.threshold, "window_s": args.window, "min_requests": args.min_requests,
            "customer_id": args.customer, "meter": args.meter, "model": args.model, "unit": args.unit,
            "period": args.period, "webhook_url": args.webhook, "name": args.name, "rule_id": args.rule_id}
    created = _call(args, "create", args.agent, {k: v for k, v in body.items() if v is not None})
    _print(args, [created["rule"]] if args.format == "table" else [created], _RULE_COLUMNS)
    if args.format == "table":
        print(f"created alert rule {created['rule']['rule_id']}; its webhook signing secret (shown once): "
              f"{created['secret']}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    _print(args, _call(args, "rules", args.agent), _RULE_COLUMNS)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _call(args, "delete", args.agent, args.rule_id)
    print(f"deleted alert rule {args.rule_id} of agent {args.agent}", file=sys.stderr)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    event = _call(args, "test", args.agent, args.rule_id)
    _print(args, [event], ["event_id", "rule_id", "transition", "webhook_url", "evaluated_at"])
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    rows = _call(args, "events", args.agent, args.rule, args.limit)
    _print(args, rows, ["evaluated_at", "rule_id", "seq", "transition", "value", "threshold", "event_id"])
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    rows = _call(args, "deliveries", args.agent, args.rule, args.event, args.limit)
    _print(args, rows, ["attempted_at", "rule_id", "event_id", "attempt", "status_code", "outcome", "latency_ms",
                        "error", "next_attempt_at"])
    return 0
