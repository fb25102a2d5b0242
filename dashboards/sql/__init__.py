"""Read-only ad-hoc SQL (``meterline sql`` and the operator's ``POST /v1/sql``).

Two locks: a statement check that gives a clear refusal (one statement, a reading keyword), and
the engine's own ``readonly=2`` setting on the query, which refuses any write whatever the text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from dashboards.errors import DashboardError

#: Statements ad-hoc SQL may start with.
READ_ONLY_STATEMENTS: Final = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
MAX_SQL_BYTES: Final = 256 * 1024
MAX_ROWS: Final = 1_000_000
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def check_read_only(sql: str) -> str:
    """Return ``sql`` without a trailing ``;`` if it is one read-only statement; else raise DashboardError."""
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
    """Run one read-only statement; return (columns, at most ``max_rows`` rows, whether more existed)."""
    checked = check_read_only(sql)
    max_rows = max(1, min(max_rows, MAX_ROWS))
    settings = {"readonly": 2, "max_result_rows": max_rows, "result_overflow_mode": "break"}
    result = client.query(checked, parameters=dict(params) if params else None, settings=settings)
    rows = [list(r) for r in result.result_rows]
    return list(result.column_names), rows[:max_rows], len(rows) > max_rows


__all__ = ["MAX_ROWS", "MAX_SQL_BYTES", "READ_ONLY_STATEMENTS", "check_read_only", "run_read_only"]
