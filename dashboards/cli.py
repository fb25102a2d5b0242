"""``meterline sql``, ``meterline dashboard --agent X`` and ``meterline export usage``: dashboards in a shell.

All three read ClickHouse at ``CLICKHOUSE_URL`` (default: the local stack's embedded chDB). Only one
process can open an embedded engine: while ``meterline up`` holds it, or when told ``--gateway URL``,
they read through the gateway's read API instead (``remote``), with an agent's key or the operator token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from dashboards.billing import Billing, StatementRequest
from dashboards.export import csv_value, statement_to_csv
from dashboards.queries import PERIODS, DashboardQueries, TimeRange, utcnow
from dashboards.remote import RemoteViews
from dashboards.sql import check_read_only, run_read_only
from meterline.clickhouse import get_client, parse_dsn
from meterline.errors import ConfigError, InfrastructureError, MeterlineError
from meterline.settings import StackSettings

_SPARK: Final = "▁▂▃▄▅▆▇█"


def register(sub: Any) -> None:
    p = sub.add_parser("sql", help="run a read-only SQL query against CLICKHOUSE_URL and print a table")
    p.add_argument("query", nargs="?", help="the SQL text (or use --file)")
    p.add_argument("-f", "--file", type=Path, help="read the SQL from a file, e.g. schemas/queries/daily.sql")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="bind a {NAME:Type} parameter (repeatable)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--max-rows", type=int, default=1000, help="print at most this many rows (default 1000)")
    _remote_options(p, "an operator token (METERLINE_OPERATOR_TOKEN)")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("dashboard", help="terminal summary of one agent's dashboard")
    p.add_argument("--agent", required=True, help="agent id")
    p.add_argument("--days", type=int, default=14, help="days of daily trend to show (default 14)")
    p.add_argument("--window", default="24h", help="speed-insights window: 1h, 6h, 24h, 7d, 30d")
    _remote_options(p, "the agent's API key or the operator token")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("export", help="export data as CSV or JSON")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    u = what.add_parser("usage", help="billing statements: usage per app and end customer, priced with the price "
                                      "list (schemas/prices.toml), and x402 revenue in its token (CSV or JSON)")
    u.add_argument("--app", default="", help="the app (the owner of the reporting key) to export "
                                             "(default: every app, which needs the operator token)")
    u.add_argument("--customer", default=None, help="only this end customer: a report's metadata.customer_id or "
                                                    "a request's customer_id (default: every one, line by line)")
    u.add_argument("--period", default=None, help="calendar month YYYY-MM, or days FROM..TO (YYYY-MM-DD, both "
                                                  "included); default: the current UTC month")
    u.add_argument("--granularity", choices=PERIODS, default=None,
                   help="rows per day, week or month inside the period (default: one row per line for the "
                        "whole period: a month gives monthly rows)")
    u.add_argument("--as-of", type=datetime.fromisoformat, default=None, metavar="TIME",
                   help="count only what was stored before this ISO-8601 time (default: now); the same --as-of "
                        "gives the same statement again")
    u.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
    u.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    _remote_options(u, "the app's API key (its own statement) or the operator token (any app, every app)")
    u.set_defaults(func=cmd_export_usage)


def _remote_options(p: argparse.ArgumentParser, token_help: str) -> None:
    p.add_argument("--gateway", metavar="URL", default=os.environ.get("METERLINE_GATEWAY_URL"),
                   help="read through this gateway's HTTP API instead of CLICKHOUSE_URL (METERLINE_GATEWAY_URL); "
                        "used by itself when a running local stack holds the embedded engine")
    p.add_argument("--token", default=None,
                   help=f"bearer token for --gateway: {token_help} (default METERLINE_TOKEN, "
                        "then METERLINE_OPERATOR_TOKEN)")


def _token(args: argparse.Namespace) -> str:
    token: str = args.token or os.environ.get("METERLINE_TOKEN") or os.environ.get("METERLINE_OPERATOR_TOKEN") or ""
    return token


def _source(args: argparse.Namespace) -> Client | RemoteViews:
    """ClickHouse at CLICKHOUSE_URL, or the gateway's read API when asked or when the engine is busy."""
    if args.gateway:
        return RemoteViews(args.gateway, _token(args))
    settings = StackSettings()
    url = settings.effective_clickhouse_url()
    try:
        return get_client(url, create_database=False)
    except InfrastructureError:
        if not _engine_locked(url):
            raise
        gateway = f"http://127.0.0.1:{settings.meterline_gateway_port}"
        print(f"meterline: the embedded engine at {url} belongs to a running stack; reading through {gateway}",
              file=sys.stderr)
        return RemoteViews(gateway, _token(args))


def _engine_locked(url: str) -> bool:
    """Whether ``url`` is an embedded chDB directory another process holds (its status file is locked)."""
    import fcntl

    engine = parse_dsn(url)[0]
    if not engine.startswith("chdb:///"):
        return False
    try:
        with (Path(engine.removeprefix("chdb://")) / "status").open("rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


# ----------------------------------------------------------------------------- meterline sql


def _params(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise ConfigError(f"--param wants NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def cmd_sql(args: argparse.Namespace) -> int:
    if bool(args.query) == bool(args.file):
        raise ConfigError("give the SQL either as an argument or with --file")
    text = args.file.read_text() if args.file else args.query
    check_read_only(text)
    params = _params(args.param)
    source = _source(args)
    try:
        if isinstance(source, RemoteViews):
            columns, rows, truncated = source.sql(text, params, args.max_rows)
        else:
            columns, rows, truncated = run_read_only(source, text, params, args.max_rows)
    except ClickHouseError as exc:
        raise MeterlineError(f"query failed: {exc}") from exc
    write_rows(sys.stdout, columns, rows, args.format)
    if args.format == "table":
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{' (truncated)' if truncated else ''})")
    return 0


def write_rows(out: TextIO, columns: list[str], rows: list[list[Any]], fmt: str) -> None:
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(dict(zip(columns, row, strict=True)), default=csv_value) + "\n")
        return
    if fmt == "csv":
        import csv

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[csv_value(v) for v in row] for row in rows])
        return
    out.write(format_table(columns, rows))


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value == value else "nan"
    if isinstance(value, datetime | date):
        return csv_value(value)
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= 60 else text[:57] + "..."


def format_table(columns: list[str], rows: list[list[Any]]) -> str:
    """A plain text table: header, rule, one line per row, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) for r in rows) for i in range(len(columns))]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- meterline dashboard


def sparkline(values: Sequence[float]) -> str:
    top = max(values, default=0) or 1
    return "".join(_SPARK[min(len(_SPARK) - 1, int(v / top * (len(_SPARK) - 1) + 0.5))] if v else " " for v in values)


def render_summary(views: DashboardQueries | RemoteViews, agent: str, days: int, window: str,
                   now: datetime | None = None) -> str:
    now = now or utcnow()
    ov = views.overview(agent, now)
    daily = views.daily(agent, days, now)
    rng = TimeRange(now - timedelta(days=30), now + timedelta(seconds=1))
    customers = views.customers(agent, rng, limit=5)
    tools = views.tools(agent, rng, limit=5)
    perf = views.performance(agent, window, now)
    cur, change = perf["current"], perf["change_pct"]

    def pct(key: str) -> str:
        c = change.get(key)
        return f" ({c:+.1f}%)" if c is not None else ""

    last = ov["last_request_at"]
    out = [
        f"Agent {agent}   (as of {csv_value(now)}; last request {csv_value(last) if last else 'never'})",
        "",
        f"Requests  total {ov['total_requests']:,}   today {ov['today_requests']:,}   "
        f"7 days {ov['week_requests']:,}   30 days {ov['month_requests']:,}",
        f"Revenue   {ov['revenue']:.4f} USDC from {ov['paid_requests']:,} paid requests   "
        f"402s {ov['payment_required']:,}",
        f"Quality   avg latency {ov['avg_latency_ms']:.1f} ms   error rate {ov['error_rate'] * 100:.2f}%",
        "",
        f"Daily requests, last {days} days ({daily[0]['day']} .. {daily[-1]['day']}):",
        f"  {sparkline([d['requests'] for d in daily])}  max {max(d['requests'] for d in daily):,}/day",
        "",
        f"Speed insights, last {window} (change vs the {window} before):",
        f"  p50 {cur['p50_latency_ms']:.1f} ms{pct('p50_latency_ms')}   p95 {cur['p95_latency_ms']:.1f} ms"
        f"{pct('p95_latency_ms')}   p99 {cur['p99_latency_ms']:.1f} ms{pct('p99_latency_ms')}",
        f"  {cur['requests']:,} requests ({cur['requests_per_minute']:.2f}/min{pct('requests_per_minute')}), "
        f"{cur['successes']:,} ok, {cur['errors']:,} errors",
        "",
        "Top customers (30 days):",
    ]
    out += _indent(format_table(["customer", "requests", "revenue", "avg ms", "error rate"],
                                [[c["customer_id"], c["requests"], c["revenue"], c["avg_latency_ms"],
                                  c["error_rate"]] for c in customers]))
    out += ["", "Top tools (30 days):"]
    out += _indent(format_table(["tool", "requests", "p95 ms", "error rate", "revenue"],
                                [[t["tool_name"], t["requests"], t["p95_latency_ms"], t["error_rate"], t["revenue"]]
                                 for t in tools]))
    return "\n".join(out) + "\n"


def _indent(text: str) -> list[str]:
    return ["  " + line for line in text.rstrip("\n").splitlines()]


def cmd_dashboard(args: argparse.Namespace) -> int:
    source = _source(args)
    views = source if isinstance(source, RemoteViews) else DashboardQueries(source)
    try:
        sys.stdout.write(render_summary(views, args.agent, args.days, args.window))
    except ClickHouseError as exc:
        raise MeterlineError(f"query failed: {exc}") from exc
    return 0


# ----------------------------------------------------------------------------- meterline export usage


def parse_period(period: str) -> TimeRange:
    """``YYYY-MM`` (a calendar month) or ``YYYY-MM-DD..YYYY-MM-DD`` (inclusive days)."""
    if ".." in period:
        first, _, last = period.partition("..")
        try:
            start = datetime.strptime(first, "%Y-%m-%d").replace(tzinfo=UTC)
            end = datetime.strptime(last, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)
        except ValueError as exc:
            raise ConfigError(f"period range must be YYYY-MM-DD..YYYY-MM-DD, got {period!r}") from exc
        return TimeRange(start, end)
    return TimeRange.month(period)


def cmd_export_usage(args: argparse.Namespace) -> int:
    """The statements of ``--app`` (or every app) for ``--period`` (default: this UTC month), as CSV or JSON."""
    period = args.period or f"{datetime.now(UTC):%Y-%m}"
    if args.period is None:
        print(f"meterline: period {period} (the current UTC month; choose another with --period)", file=sys.stderr)
    rng = parse_period(period)
    as_of = args.as_of.replace(tzinfo=UTC) if args.as_of and args.as_of.tzinfo is None else args.as_of
    req = StatementRequest(rng, args.app, args.customer, args.granularity, as_of=as_of)
    source = _source(args)
    try:
        if isinstance(source, RemoteViews):
            params = {"from": rng.start.isoformat(), "to": rng.end.isoformat(), "period": args.granularity,
                      "customer": args.customer, "as_of": as_of.isoformat() if as_of else None}
            got = source.statement(args.app, {k: v for k, v in params.items() if v is not None}, args.format)
            text = got if isinstance(got, str) else json.dumps(got, indent=2) + "\n"
        else:
            billing = Billing(source)
            body = billing.statement(req) if args.app else billing.statements(req)
            text = (statement_to_csv(body) if args.format == "csv"
                    else json.dumps(body, indent=2, default=csv_value) + "\n")
    except ClickHouseError as exc:
        raise MeterlineError(f"query failed: {exc}") from exc
    if args.output:
        args.output.write_text(text)
        what = f"{text.count(chr(10)) - 1} rows" if args.format == "csv" else "the statements"
        print(f"wrote {what} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


__all__ = ["check_read_only", "format_table", "parse_period", "register", "render_summary", "sparkline"]
