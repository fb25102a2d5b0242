"""Ad-hoc SQL in a sandbox: it reads Meterline's database and nothing else, within limits it cannot lift.

Three locks, each enough for what it covers:

1. **One statement, the text that was checked.** The engine formats the caller's text
   (``formatQuerySingleLine``, the text bound as a parameter, so it is data to that query), which
   refuses more than one statement; that canonical text is what is checked and what runs (the client
   library's binding is verified to leave it as it is). The embedded engine runs every statement of a
   ``;``-separated text, so running the caller's own text would run what was never checked.
2. **The engine's parse.** ``EXPLAIN AST`` of the canonical text, judged by ``dashboards/sql/tree.py``:
   table functions but a few that make rows from their arguments, ``file``/``dict*``/``joinGet``, other
   databases, ``INTO OUTFILE``, ``FORMAT`` and ``SETTINGS`` are refused before anything runs.
3. **The engine's settings.** The client's session carries the limits of ``SqlSettings`` and then
   ``readonly=1``, after which the session refuses to change any setting: the caller's text gets no
   ``SET``, no ``SETTINGS``, no table function that reads files or URLs (``readonly=1`` refuses those
   too), and every query stops at the limits. On a ClickHouse server the session is the user's settings
   profile (``deploy/clickhouse``): the client is checked to have ``readonly=1`` and every limit before it
   is used, and refused otherwise.

One ad-hoc query runs at a time per client; the next waits ``busy_timeout`` and is then turned away. With
the embedded engine the allocator's free memory is handed back to the system after each query, so a
query that hit ``max_memory_usage`` leaves the process's RSS where it was.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from clickhouse_connect.driver.binding import bind_query
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from dashboards.errors import DashboardError
from dashboards.sql.limits import PINNED, SqlSettings, human, limit_code, limit_hit
from dashboards.sql.tree import SqlRefused, check_tree, parse_dump

log = logging.getLogger(__name__)

#: Rows a caller may ask for at most (the result rows limit stops the query past it anyway).
MAX_ROWS: Final = 1_000_000
#: Statements ad-hoc SQL may start with (the quick check; the engine's parse decides).
READ_ONLY_STATEMENTS: Final = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
MAX_SQL_BYTES: Final = 256 * 1024
_READONLY: Final = 164  # the engine's READONLY error
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


class SqlBusy(DashboardError):
    """Another ad-hoc query holds the client past the wait: try again shortly."""


class SqlLimitExceeded(DashboardError):
    """The engine stopped the query at a limit (the message names it and its value)."""


class SqlSandboxError(DashboardError):
    """The client cannot be made a sandbox (a server user without readonly=1 or without the limits)."""


@dataclass
class Sandbox:
    """What a confined client runs under."""

    database: str
    #: the limits in force, as the engine reports them (for the messages of stopped queries)
    limits: dict[str, int]
    busy_timeout: float
    #: embedded engine: a second handle on it, for SYSTEM JEMALLOC PURGE (the confined one may not)
    purge: Client | None = None
    table_functions: frozenset[str] = frozenset()
    busy: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))

    def release_memory(self) -> None:
        """Hand the allocator's free memory back to the system (embedded engine; best effort)."""
        if self.purge is None:
            return
        try:
            self.purge.command("SYSTEM JEMALLOC PURGE")
        except Exception as exc:  # an engine built without jemalloc: stop trying
            log.info("cannot release the engine's free memory (%s); not trying again", exc)
            self.purge = None


_SANDBOXES: weakref.WeakKeyDictionary[Client, Sandbox] = weakref.WeakKeyDictionary()
_CONFINING = threading.Lock()


def embedded(client: Client) -> bool:
    """Whether ``client`` is the in-process chDB engine (whose session this process may set)."""
    from clickhouse_connect.driver._chdbclient import ChdbClient  # imports chDB: only when asked

    return isinstance(client, ChdbClient)


def confine(client: Client, settings: SqlSettings | None = None) -> Sandbox:
    """Make ``client`` a sandbox for ad-hoc SQL (once; the client stays read-only for good: give it a client
    of its own) and return what it runs under. Raises ``SqlSandboxError`` for a server user that is not one."""
    with _CONFINING:
        box = _SANDBOXES.get(client)
        if box is None:
            box = _confine(client, settings or SqlSettings())
            _SANDBOXES[client] = box
        return box


def _confine(client: Client, settings: SqlSettings) -> Sandbox:
    database = client.database or "default"
    purge = None
    if embedded(client):
        for name, value in settings.session().items():
            client.command(f"SET {name} = '{value}'")  # names and values are ours, not the caller's
        purge = _purge_handle(client)
    names = (*PINNED, "readonly")
    row = client.query("SELECT " + ", ".join(f"toString(getSetting('{n}'))" for n in names)).result_rows[0]
    found = {n: int(v) for n, v in zip(names, row, strict=True) if str(v).isdigit()}
    unlimited = [n for n in PINNED if not found.get(n)]
    if found.get("readonly") != 1 or unlimited:
        raise SqlSandboxError(
            "ad-hoc SQL needs a ClickHouse user with readonly=1 and every limit set ("
            + ", ".join(f"{n}={'unlimited' if not found.get(n) else found[n]}" for n in (*PINNED, "readonly"))
            + "): point METERLINE_SQL_CLICKHOUSE_URL at the read-only user of deploy/clickhouse/users.d")
    limits = {n: found[n] for n in PINNED}
    log.debug("ad-hoc SQL confined to %s: %s", database, ", ".join(f"{n} {human(n, v)}" for n, v in limits.items()))
    return Sandbox(database, limits, settings.busy_timeout, purge, _table_functions(client))


def _purge_handle(client: Client) -> Client | None:
    import clickhouse_connect

    path = getattr(client, "path", ":memory:")
    try:
        return clickhouse_connect.get_client(dsn="chdb://memory" if path == ":memory:" else f"chdb://{path}")
    except Exception as exc:
        log.info("no second handle on the embedded engine to release memory with: %s", exc)
        return None


def _table_functions(client: Client) -> frozenset[str]:
    try:
        return frozenset(str(r[0]) for r in client.query("SELECT name FROM system.table_functions").result_rows)
    except DatabaseError:  # a server that does not show them: tree.KNOWN_TABLE_FUNCTIONS still applies
        return frozenset()


def open_client(dsn: str, settings: SqlSettings | None = None) -> Client:
    """A client of its own for ad-hoc SQL on ``dsn``, confined (``confine``)."""
    from meterline.clickhouse import get_client

    client = get_client(dsn, create_database=False)
    confine(client, settings)
    return client


def canonical(client: Client, sql: str) -> str:
    """The engine's own single-line formatting of ``sql``; ``SqlRefused`` if it is not exactly one statement."""
    try:
        rows = client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": sql}).result_rows
    except DatabaseError as exc:
        reason = str(exc).split(": In scope SELECT formatQuerySingleLine", 1)[0]
        raise SqlRefused(f"not one statement the engine can parse: {_first_line(reason)}") from exc
    return str(rows[0][0])


def check(client: Client, sql: str, params: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(the canonical text, its statement's node kind) of ``sql`` if the sandbox runs it; else raise
    ``SqlRefused`` saying why."""
    box = confine(client)
    text = canonical(client, sql)
    bound = _bound(text, params)
    try:
        dump = [str(r[0]) for r in client.query(f"EXPLAIN AST {text}", parameters=bound).result_rows]
    except DatabaseError as exc:  # readonly=1 refuses a SETTINGS clause while it parses
        if limit_code(exc) == _READONLY:
            raise SqlRefused(f"SETTINGS refused: ad-hoc SQL runs under fixed limits ({_engine_words(exc)})") from exc
        raise
    databases = [str(r[0]) for r in client.query("SELECT name FROM system.databases").result_rows]
    root = parse_dump(dump)
    check_tree(root, canonical=text, database=box.database, databases=databases, table_functions=box.table_functions)
    return text, root.kind


def _bound(text: str, params: Mapping[str, str] | None) -> dict[str, str] | None:
    """``params`` for the engine to bind, if the client library sends ``text`` unchanged with them."""
    if not params:
        return None
    bad = [name for name in params if not name.isidentifier()]
    if bad:
        raise SqlRefused(f"parameter names must be identifiers: {', '.join(map(repr, bad))}")
    if bind_query(text, dict(params))[0] != text:  # no {name:Type} in it: the library would format it itself
        raise SqlRefused("parameters are bound by the engine: name each one in the query as {name:Type}")
    return dict(params)


def check_read_only(sql: str) -> str:
    """A quick check that needs no engine, for an early and clear refusal (``meterline sql`` runs it before it
    sends anything): ``sql`` without a trailing ``;`` if it looks like one read-only statement, else
    ``DashboardError``. It is not the lock: the engine's parse in ``check`` is."""
    if len(sql.encode()) > MAX_SQL_BYTES:
        raise DashboardError(f"query is longer than {MAX_SQL_BYTES} bytes")
    bare = _COMMENTS.sub(" ", sql).strip().rstrip(";").strip()
    if not bare:
        raise DashboardError("no SQL given")
    if ";" in bare:
        raise DashboardError("one statement at a time (found ';' inside the query)")
    keyword = bare.split(None, 1)[0].upper()
    if keyword not in READ_ONLY_STATEMENTS:
        raise DashboardError(f"SQL here is read-only: {keyword} refused (allowed: {', '.join(READ_ONLY_STATEMENTS)})")
    return sql.strip().rstrip(";").strip()


def run_read_only(client: Client, sql: str, params: Mapping[str, str] | None = None,
                  max_rows: int = 1000) -> tuple[list[str], list[list[Any]], bool]:
    """Run one read-only statement in the sandbox; return (columns, at most ``max_rows`` rows, whether more
    existed). Raises ``SqlRefused`` (not run), ``SqlLimitExceeded`` (stopped at a limit) or ``SqlBusy``."""
    check_read_only(sql)
    box = confine(client)
    max_rows = max(1, min(max_rows, MAX_ROWS))
    if not box.busy.acquire(timeout=box.busy_timeout):
        raise SqlBusy(f"another ad-hoc query is running (waited {box.busy_timeout:g} s): try again when it is done")
    try:
        text, kind = check(client, sql, params)
        return _rows(client, text, _bound(text, params), max_rows, streaming=kind == "SelectWithUnionQuery")
    except DatabaseError as exc:
        stopped = limit_hit(exc, box.limits)
        if stopped:
            log.warning("ad-hoc SQL: %s", stopped)
            raise SqlLimitExceeded(stopped) from exc
        raise
    finally:
        box.busy.release()
        box.release_memory()


def _rows(client: Client, text: str, bound: dict[str, str] | None, max_rows: int,
          streaming: bool) -> tuple[list[str], list[list[Any]], bool]:
    """Stream a SELECT's result and stop after ``max_rows`` + 1 rows (closing the stream cancels the rest);
    the short answers of SHOW, DESCRIBE, EXISTS and EXPLAIN (which the embedded engine does not stream) whole."""
    if not streaming:
        result = client.query(text, parameters=bound)
        whole = [list(r) for r in result.result_rows]
        return list(result.column_names), whole[:max_rows], len(whole) > max_rows
    rows: list[list[Any]] = []
    with client.query_rows_stream(text, parameters=bound) as stream:
        columns = list(stream.source.column_names)
        for row in stream:
            rows.append(list(row))
            if len(rows) > max_rows:
                break
    return columns, rows[:max_rows], len(rows) > max_rows


def _engine_words(exc: Exception) -> str:
    """The engine's message without its code prefixes and version trailer."""
    text = _first_line(str(exc))
    text = re.sub(r"(Code: \d+\. DB::Exception: )+", "", text)
    text = re.sub(r" \(version [^)]*\)", "", text)
    return re.sub(r"(\.? \([A-Z_]+\))+\.?$", "", text).strip(". ")


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:500] if lines else "query refused"


__all__ = ["MAX_ROWS", "MAX_SQL_BYTES", "READ_ONLY_STATEMENTS", "Sandbox", "SqlBusy", "SqlLimitExceeded",
           "SqlSandboxError", "canonical", "check", "check_read_only", "confine", "embedded", "open_client",
           "run_read_only"]
