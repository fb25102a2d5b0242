"""Read-only ad-hoc SQL (``meterline sql`` and the operator's ``POST /v1/sql``) in a sandbox, and the limits
every read-side query runs under.

``sandbox`` runs the caller's statement only if the engine's own parse of it reads nothing but Meterline's
database, on a session whose limits the caller cannot lift; ``limits`` holds those limits (``SqlSettings``)
and turns a query stopped by one into a message that names it; ``tree`` is the judgement on the parse.
"""

from __future__ import annotations

from dashboards.sql.limits import SqlSettings, limit_hit
from dashboards.sql.sandbox import (
    MAX_ROWS,
    MAX_SQL_BYTES,
    READ_ONLY_STATEMENTS,
    SqlBusy,
    SqlLimitExceeded,
    SqlSandboxError,
    check,
    check_read_only,
    confine,
    open_client,
    run_read_only,
)
from dashboards.sql.tree import SqlRefused

__all__ = ["MAX_ROWS", "MAX_SQL_BYTES", "READ_ONLY_STATEMENTS", "SqlBusy", "SqlLimitExceeded", "SqlRefused",
           "SqlSandboxError", "SqlSettings", "check", "check_read_only", "confine", "limit_hit", "open_client",
           "run_read_only"]
