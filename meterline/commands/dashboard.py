"""``meterline sql``, ``meterline dashboard --agent X`` and ``meterline export usage``: dashboards in a shell.

All three read ClickHouse at ``CLICKHOUSE_URL`` (default: the local stack's embedded chDB, which
only one process can open — while ``meterline up`` runs, point ``CLICKHOUSE_URL`` at a server or
use the HTTP dashboard instead).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from gateway.dashboard.export import csv_value, usage_to_csv
from gateway.dashboard.queries import PERIODS, DashboardQueries, TimeRange, utcnow
from meterline.clickhouse import get_client
from meterline.errors import ConfigError, MeterlineError
from meterline.settings import StackSettings

#: Statements ``meterline sql`` runs; the engine enforces it too (``readonly=2``).
READ_ONLY_STATEMENTS: Final = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
MAX_SQL_BYTES: Final = 256 * 1024
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_SPARK = "▁▂▃▄▅▆▇█"


def register(sub: Any) -> None:
    p = sub.add_parser("sql", help="run a read-only SQL query against CLICKHOUSE_URL and print a table")
    p.add_argument("query", nargs="?", help="the SQL text (or use --file)")
    p.add_argument("-f", "--file", type=Path, help="read the SQL from a file, e.g. schemas/queries/daily.sql")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="bind a {NAME:Type} parameter (repeatable)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--max-rows", type=int, default=1000, help="print at most this many rows (default 1000)")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("dashboard", help="terminal summary of one agent's dashboard")
    p.add_argument("--agent", required=True, help="agent id")
    p.add_argument("--days", type=int, default=14, help="days of daily trend to show (default 14)")
    p.add_argument("--window", default="24h", help="speed-insights window: 1h, 6h, 24h, 7d, 30d")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("export", help="export data as CSV")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    u = what.add_parser("usage", help="billing usage per customer app and period (CSV)")
    u.add_argument("--customer", default="", help="the customer's app id (default: every app)")
    u.add_argument("--period", required=True, help="calendar month YYYY-MM, or a range FROM..TO (dates)")
    u.add_argument("--granularity", choices=PERIODS, default="day", help="rows per day, week or month")
    u.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    u.set_defaults(func=cmd_export_usage)


def _client() -> Client:
    return get_client(StackSettings().effective_clickhouse_url(), create_database=False)


# ----------------------------------------------------------------------------- meterline sql


def check_read_only(sql: str) -> str:
    """Return ``sql`` without a trailing ``;`` if it is one read-only statement; else raise ConfigError."""
    if len(sql.encode()) > MAX_SQL_BYTES:
        raise ConfigError(f"query is longer than {MAX_SQL_BYTES} bytes")
    bare = _COMMENTS.sub(" ", sql).strip().rstrip(";").strip()
    if not bare:
        raise ConfigError("no SQL given")
    if ";" in bare:
        raise ConfigError("one statement at a time (found ';' inside the query)")
    keyword = bare.split(None, 1)[0].upper()
    if keyword not in READ_ONLY_STATEMENTS:
        raise ConfigError(f"meterline sql is read-only: {keyword} refused (allowed: {', '.join(READ_ONLY_STATEMENTS)})")
    return sql.strip().rstrip(";").strip()


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
    sql = check_read_only(text)
    max_rows = max(1, min(args.max_rows, 1_000_000))
    settings = {"readonly": 2, "max_result_rows": max_rows, "result_overflow_mode": "break"}
    try:
        result = _client().query(sql, parameters=_params(args.param) or None, settings=settings)
    except ClickHouseError as exc:
        raise MeterlineError(f"query failed: {exc}") from exc
    rows = [list(r) for r in result.result_rows[:max_rows]]
    write_rows(sys.stdout, list(result.column_names), rows, args.format)
    if args.format == "table":
        more = " (truncated)" if len(result.result_rows) > max_rows else ""
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{more})")
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


def render_summary(views: DashboardQueries, agent: str, days: int, window: str, now: datetime | None = None) -> str:
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
    views = DashboardQueries(_client())
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
    rng = parse_period(args.period)
    try:
        rows = DashboardQueries(_client()).usage(args.customer, rng, args.granularity)
    except ClickHouseError as exc:
        raise MeterlineError(f"query failed: {exc}") from exc
    text = usage_to_csv(rows)
    if args.output:
        args.output.write_text(text)
        print(f"wrote {len(rows)} rows to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


__all__ = ["check_read_only", "format_table", "parse_period", "register", "render_summary", "sparkline"]
