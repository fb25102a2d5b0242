"""``meterline limits set|list|delete|check``: usage limits (docs/limits.md) from a shell.

Like ``meterline dashboard`` (``dashboards/cli.py``), the commands write and read ClickHouse at
``CLICKHOUSE_URL`` when they can open it, and go through the gateway's read API otherwise — while
``meterline up`` holds the embedded engine, or when told ``--gateway URL`` — with the agent's key (its own
limits) or the operator token (any agent's; for the local stack, the one ``meterline up`` keeps). Both ways
run the same code: ``dashboards/limits.py`` here, or behind ``dashboards/limits_api.py`` there.

``check`` exits 0 when the usage is allowed and 1 when a limit refuses it, so a script can branch on it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
from clickhouse_connect.driver.exceptions import ClickHouseError

from dashboards.cli import _remote_options, _source, format_table
from dashboards.errors import DashboardError
from dashboards.export import csv_value
from dashboards.limits import Limits, parse_limit
from dashboards.remote import RemoteViews
from meterline.errors import MeterlineError
from schemas.limits import PERIODS, QUANTITY_PATTERN, limit_id

__all__ = ["RemoteLimits", "register"]

_TOKEN_HELP = "the agent's API key (its own limits) or the operator token (any agent's)"  # noqa: S105 - help


class RemoteLimits(RemoteViews):
    """The limit routes of the read API (``/v1/agents/{agent}/limits``)."""

    def _path(self, agent_id: str, rest: str = "") -> str:
        return f"/v1/agents/{quote(agent_id, safe='')}/limits{rest}"

    def set_limit(self, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", self._path(agent_id), json=body)
        return result

    def limits(self, agent_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", self._path(agent_id))["limits"]
        return result

    def delete_limit(self, agent_id: str, limit: str) -> None:
        """``DELETE``: answered 204 without a body (which ``_call`` would read as JSON)."""
        try:
            resp = self._http.delete(self._path(agent_id, "/" + quote(limit, safe="")))
        except httpx.HTTPError as exc:
            raise DashboardError(f"cannot reach the gateway at {self.base_url}: {exc}") from exc
        if resp.status_code >= 400:
            raise self._refusal(resp)

    def check(self, agent_id: str, params: dict[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", self._path(agent_id, "/check"), params=params)
        return result


def _quantity(text: str) -> str:
    if not re.match(QUANTITY_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a quantity: digits, optionally a point and up to 9 more "
                                         "(at most 15 before the point)")
    return text


def register(sub: Any) -> None:
    p = sub.add_parser("limits", help="usage limits (entitlements) per agent or end customer: set, list, delete, "
                                      "check (docs/limits.md)")
    what = p.add_subparsers(dest="what", required=True, metavar="ACTION")

    s = what.add_parser("set", help="set a limit: at most LIMIT of a meter per UTC day or month (setting the same "
                                    "terms again changes the quantity)")
    _terms(s)
    s.add_argument("--limit", required=True, type=_quantity, help="the most usage per period (exact decimal)")
    s.add_argument("--unit", default=None, help="the meter's unit, checked if given (tokens, characters, ...)")
    s.add_argument("--webhook", default=None, metavar="URL",
                   help="where the limit's alert is POSTed when it is reached (default: as before)")
    _common(s)
    s.set_defaults(func=cmd_set)

    lst = what.add_parser("list", help="the agent's limits, with what each has used in its period")
    lst.add_argument("--agent", required=True, help="agent id (the app of usage reports)")
    _common(lst)
    lst.set_defaults(func=cmd_list)

    d = what.add_parser("delete", help="delete a limit, by id or by its terms (--meter, --period, ...)")
    d.add_argument("limit_id", nargs="?", help="the limit's id (lim_...), as `meterline limits list` shows it")
    _terms(d, required=False)
    _common(d)
    d.set_defaults(func=cmd_delete)

    c = what.add_parser("check", help="may the agent (or an end customer) use QUANTITY more? exit 0 yes, 1 no")
    c.add_argument("--agent", required=True, help="agent id")
    c.add_argument("--meter", required=True, help="the meter: llm, tts, asr, tool (schemas/prices.toml)")
    c.add_argument("--quantity", default="1", type=_quantity, help="how much more (default 1)")
    c.add_argument("--customer", default=None, help="the end customer (default: the agent's own limits only)")
    c.add_argument("--model", default="", help="the model to be used")
    c.add_argument("--unit", default=None, help="the meter's unit, checked if given")
    _common(c)
    c.set_defaults(func=cmd_check)


def _terms(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--agent", required=True, help="agent id (the app of usage reports)")
    p.add_argument("--meter", required=required, default=None, help="the meter: llm, tts, asr, tool "
                                                                    "(schemas/prices.toml)")
    p.add_argument("--period", required=required, default=None, choices=PERIODS, help="UTC calendar day or month")
    p.add_argument("--customer", default=None, help="one end customer's usage (default: the whole agent's)")
    p.add_argument("--model", default="", help="count this model only (default: every model of the meter)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table")
    _remote_options(p, _TOKEN_HELP)


class _LocalLimits:
    """The same calls as ``RemoteLimits``, on ClickHouse directly (``dashboards/limits.py``)."""

    def __init__(self, limits: Limits) -> None:
        self.store = limits

    def set_limit(self, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
        stored = self.store.put(parse_limit(agent_id, body), webhook_url=body.get("webhook_url"))
        return self.store.states(agent_id, [stored.limit])[0] | {
            "created": stored.created, "alert_secret": stored.alert_secret}

    def limits(self, agent_id: str) -> list[dict[str, Any]]:
        return self.store.status(agent_id)

    def delete_limit(self, agent_id: str, limit: str) -> None:
        self.store.delete(agent_id, limit)

    def check(self, agent_id: str, params: dict[str, str]) -> dict[str, Any]:
        return self.store.check(agent_id, params["meter"], Decimal(params["quantity"]), unit=params.get("unit"),
                                model=params.get("model", ""), customer=params.get("customer"))

    def close(self) -> None:
        """Nothing to close: the client is the process's."""


def _backend(args: argparse.Namespace) -> RemoteLimits | _LocalLimits:
    source = _source(args)
    if isinstance(source, RemoteViews):
        source.close()
        return RemoteLimits(source.base_url, source.token)
    return _LocalLimits(Limits(source))


def _print(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str]) -> None:
    if args.format == "json":
        sys.stdout.write(json.dumps(rows, indent=2, default=csv_value) + "\n")
        return
    sys.stdout.write(format_table(columns, [[_cell(r.get(c)) for c in columns] for r in rows]))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return csv_value(value) if not isinstance(value, int | str) else value


_LIST_COLUMNS = ["limit_id", "customer_id", "meter", "model", "period", "limit", "used", "remaining", "reached",
                 "period_end", "alert_state"]


def _call(args: argparse.Namespace, action: str, *call: Any) -> Any:
    """``action`` of the backend ``args`` lead to, ClickHouse errors made readable; the backend closed after."""
    backend = _backend(args)
    try:
        return getattr(backend, action)(*call)
    except ClickHouseError as exc:
        raise MeterlineError(f"query failed: {exc}") from exc
    finally:
        backend.close()


def cmd_set(args: argparse.Namespace) -> int:
    body = {"meter": args.meter, "unit": args.unit, "model": args.model, "period": args.period, "limit": args.limit,
            "customer_id": args.customer, "webhook_url": args.webhook}
    state = _call(args, "set_limit", args.agent, {k: v for k, v in body.items() if v is not None})
    _print(args, [state], _LIST_COLUMNS)
    if args.format == "table":
        print(f"{'created' if state['created'] else 'updated'} limit {state['limit_id']} (alert rule "
              f"limit:{state['limit_id']})", file=sys.stderr)
        if state.get("alert_secret"):
            print(f"the alert's webhook signing secret (shown once): {state['alert_secret']}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = _call(args, "limits", args.agent)
    _print(args, rows, _LIST_COLUMNS)
    if args.format == "table" and not rows:
        print(f"agent {args.agent!r} has no limits", file=sys.stderr)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    if args.limit_id:
        target = args.limit_id
    elif args.meter and args.period:
        target = limit_id(args.agent, args.customer, args.meter, args.model, args.period)
    else:
        raise DashboardError("name the limit: its id, or --meter and --period (with --customer/--model if it has them)")
    _call(args, "delete_limit", args.agent, target)
    print(f"deleted limit {target} of {args.agent} (and its alert rule)", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    params = {"meter": args.meter, "quantity": args.quantity, "model": args.model, "unit": args.unit,
              "customer": args.customer}
    answer = _call(args, "check", args.agent, {k: v for k, v in params.items() if v is not None})
    if args.format == "json":
        sys.stdout.write(json.dumps(answer, indent=2, default=csv_value) + "\n")
    else:
        who = f"customer {args.customer!r} of {args.agent}" if args.customer else args.agent
        verdict = "allowed" if answer["allowed"] else "NOT allowed"
        print(f"{verdict}: {who} using {answer['quantity']} {answer['unit']} more of {args.meter}")
        if answer["limit_id"]:
            print(f"deciding limit {answer['limit_id']}: {answer['used']} of {answer['limit']} used, "
                  f"{answer['remaining']} remaining, resets {csv_value(answer['period_end'])}")
        else:
            print("no limit applies")
    return 0 if answer["allowed"] else 1
