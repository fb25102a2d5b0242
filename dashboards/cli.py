"""``meterline sql``, ``meterline dashboard --agent X`` and ``meterline export usage``: dashboards in a shell.

All three read ClickHouse at ``CLICKHOUSE_URL`` (default: the local stack's embedded chDB under
``METERLINE_HOME``). Only one process can open an embedded engine: while ``meterline up`` holds it, or
when told ``--gateway URL``, they read through the gateway's read API instead (``remote``), with an
agent's key or the operator token — for the local stack, by default the one ``meterline up`` keeps in
its home. The terminal dashboard's layout and number formats are in ``dashboards/terminal.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from dashboards.billing import Billing, StatementRequest
from dashboards.errors import DashboardError
from dashboards.export import csv_value, statement_to_csv
from dashboards.queries import MAX_DAYS, PERIODS, WINDOWS, DashboardQueries, TimeRange
from dashboards.remote import GatewayRefused, RemoteViews, Token
from dashboards.sql import check_read_only, run_read_only
from dashboards.terminal import render_summary, sparkline
from meterline.clickhouse import get_client, parse_dsn
from meterline.errors import ConfigError, MeterlineError
from meterline.local.secret_file import operator_token_path, read_secret
from meterline.paths import data_home
from meterline.settings import StackSettings

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("sql", help="run a read-only SQL query against CLICKHOUSE_URL and print a table")
    p.add_argument("query", nargs="?", help="the SQL text (or use --file)")
    p.add_argument("-f", "--file", type=Path, help="read the SQL from a file, e.g. schemas/queries/daily.sql")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="bind a {NAME:Type} parameter (repeatable)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--max-rows", type=int, default=1000, help="print at most this many rows (default 1000)")
    _remote_options(p, "the operator token", operator_only=True)
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("dashboard", help="terminal summary of one agent's dashboard")
    p.add_argument("--agent", required=True, help="agent id")
    p.add_argument("--days", type=_days, default=14, help=f"days of daily trend to show, 1 to {MAX_DAYS} (default 14)")
    p.add_argument("--window", default="24h", choices=WINDOWS, metavar="WINDOW",
                   help=f"speed-insights window, compared with the one before: {', '.join(WINDOWS)} (default 24h)")
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


#: Where a token comes from when ``--token`` is not given, in order: an agent's key, then the operator's.
_TOKEN_VARIABLES = (("METERLINE_TOKEN", "the key"), ("METERLINE_OPERATOR_TOKEN", "the operator token"))


def _remote_options(p: argparse.ArgumentParser, token_help: str, *, operator_only: bool = False) -> None:
    """``--gateway`` and ``--token``; ``operator_only``: METERLINE_TOKEN (usually an agent's key) is not read."""
    variables = _TOKEN_VARIABLES[1:] if operator_only else _TOKEN_VARIABLES
    p.add_argument("--gateway", metavar="URL", default=os.environ.get("METERLINE_GATEWAY_URL"),
                   help="read through this gateway's HTTP API instead of CLICKHOUSE_URL (METERLINE_GATEWAY_URL); "
                        "used by itself when a running local stack holds the embedded engine")
    p.add_argument("--token", default=None,
                   help=f"bearer token for the gateway: {token_help} (default {', then '.join(v for v, _ in variables)}"
                        ", then for the local stack the operator token `meterline up` keeps in "
                        "$METERLINE_HOME/operator-token)")
    p.set_defaults(token_variables=variables)


def _given_token(args: argparse.Namespace) -> Token | None:
    """The token the user gave: ``--token``, else the first of the command's token variables that is set."""
    if args.token:
        return Token(args.token, "the token given with --token")
    for name, what in args.token_variables:
        if os.environ.get(name):
            return Token(os.environ[name], f"{what} in {name}")
    return None


def _local_token(args: argparse.Namespace, gateway: str) -> Token:
    """A given token, else the local stack's operator token from its home; ``ConfigError`` naming both if none."""
    given = _given_token(args)
    if given:
        return given
    path = operator_token_path()
    token = read_secret(path)
    if token is None:
        raise ConfigError(f"reading through the local stack's gateway at {gateway} needs a token, and there is "
                          f"no operator token at {path} (`meterline up` writes it there unless "
                          "METERLINE_OPERATOR_TOKEN is set; is METERLINE_HOME the stack's?). Give one with --token or "
                          + " or ".join(v for v, _ in args.token_variables))
    return Token(token, f"the operator token in {path}")


def _source(args: argparse.Namespace) -> Client | RemoteViews:
    """ClickHouse at CLICKHOUSE_URL, or the gateway's read API when asked or when a running stack holds the engine.

    The embedded engine is checked before it is opened: a locked one belongs to a running stack (opening
    it would only fail, loudly), and a missing one is reported with the path instead of being created empty.
    """
    if args.gateway:
        given = _given_token(args)
        if given is None:
            raise ConfigError(f"reading through the gateway at {args.gateway} needs a token: --token or "
                              + " or ".join(v for v, _ in args.token_variables))
        return RemoteViews(args.gateway, given)
    settings = StackSettings()
    url = settings.effective_clickhouse_url()
    engine, database = parse_dsn(url)
    if not engine.startswith("chdb:///"):
        return get_client(url, create_database=False)
    directory = Path(engine.removeprefix("chdb://"))
    where = f"{directory}" + ("" if settings.clickhouse_url else f" (METERLINE_HOME={data_home()})")
    if _engine_locked(directory):
        gateway = f"http://127.0.0.1:{settings.meterline_gateway_port}"
        log.debug("the embedded engine at %s belongs to a running process; reading through %s", directory, gateway)
        return RemoteViews(gateway, _local_token(args, gateway))
    if not (directory / "metadata").is_dir():  # what an engine that ever ran leaves (its status file goes)
        raise ConfigError(f"no Meterline data at {where}: start the local stack with `meterline up`, or point "
                          "METERLINE_HOME (or CLICKHOUSE_URL) at the one it uses")
    client = get_client(url, create_database=False)
    if str(client.command(f"EXISTS DATABASE `{database}`")) != "1":
        raise ConfigError(f"no database {database!r} in the embedded engine at {where}: "
                          "`meterline up` or `meterline migrate` creates it")
    return client


def _engine_locked(directory: Path) -> bool:
    """Whether the embedded chDB ``directory`` is held by another process: its status file is locked, and
    does not name this process (which may open it again: chDB shares one engine within a process)."""
    import fcntl

    status = directory / "status"
    try:
        with status.open("rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
    except BlockingIOError:
        try:
            return f"PID: {os.getpid()}\n" not in status.read_text(errors="replace")
        except OSError:
            return True
    except OSError:
        return False
    return False


def _days(text: str) -> int:
    """``--days``: a whole number of days the views accept (argparse reports the error in plain words)."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"days must be between 1 and {MAX_DAYS}, got {days}")
    return days


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


def cmd_dashboard(args: argparse.Namespace) -> int:
    source = _source(args)
    views = source if isinstance(source, RemoteViews) else DashboardQueries(source)
    try:
        text = render_summary(views, args.agent, args.days, args.window)
    except GatewayRefused as exc:
        if exc.status == 403 and isinstance(source, RemoteViews):
            raise DashboardError(f"{exc.detail} ({source.token.source})") from exc
        raise
    except ClickHouseError as exc:
        raise MeterlineError(f"query failed: {exc}") from exc
    sys.stdout.write(text)
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
