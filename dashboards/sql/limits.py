"""The limits every query of the read side runs under, and the words a query stopped by one gets.

With the embedded engine the gateway, the MQTT bridge, the worker and the read API share one process,
so one query that reads without bound takes all of them down; these limits are what stand between an
ad-hoc query and ingest. Ad-hoc SQL gets them as session settings pinned by ``readonly=1`` (the
caller's text can neither ``SET`` nor ``SETTINGS`` them away: ``dashboards/sql/sandbox.py``); the read
API's own SQL files get the same limits as per-query settings. On a ClickHouse server the ad-hoc user's
settings profile carries them as constraints (``deploy/clickhouse/users.d/meterline-sql.xml``).

Every value is an environment variable ``METERLINE_SQL_<FIELD>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB: Final = 1024 * 1024
GiB: Final = 1024 * MiB


class SqlSettings(BaseSettings):
    """Where ad-hoc SQL runs and the limits of every read-side query."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_SQL_", extra="ignore")

    #: METERLINE_SQL_CLICKHOUSE_URL — the DSN ad-hoc SQL (`POST /v1/sql`) runs on; unset: CLICKHOUSE_URL.
    #: On a ClickHouse server it must log in as a read-only user whose profile pins the limits below
    #: (deploy/clickhouse/users.d/meterline-sql.xml); a user without them is refused.
    clickhouse_url: str | None = None
    #: METERLINE_SQL_MAX_EXECUTION_TIME — seconds a query may run.
    max_execution_time: int = Field(default=30, ge=1)
    #: METERLINE_SQL_MAX_MEMORY_USAGE — bytes one query may hold (the embedded engine shares the process
    #: with ingest: this is what keeps an ad-hoc query from the out-of-memory killer).
    max_memory_usage: int = Field(default=512 * MiB, ge=16 * MiB)
    #: METERLINE_SQL_MAX_ROWS_TO_READ — rows a query may read (checked before reading, from the marks).
    max_rows_to_read: int = Field(default=500_000_000, ge=1)
    #: METERLINE_SQL_MAX_BYTES_TO_READ — uncompressed bytes a query may read.
    max_bytes_to_read: int = Field(default=32 * GiB, ge=1)
    #: METERLINE_SQL_MAX_RESULT_ROWS — rows an ad-hoc result may have (a caller's max_rows is at most this).
    max_result_rows: int = Field(default=1_000_000, ge=1)
    #: METERLINE_SQL_MAX_RESULT_BYTES — uncompressed bytes an ad-hoc result may have.
    max_result_bytes: int = Field(default=256 * MiB, ge=MiB)
    #: METERLINE_SQL_MAX_THREADS — threads one ad-hoc query may use (the rest of the cores stay with ingest).
    max_threads: int = Field(default=1, ge=1)
    #: METERLINE_SQL_BUSY_TIMEOUT — seconds an ad-hoc query waits for the one running before it (one runs at
    #: a time per process) before it is turned away with 429.
    busy_timeout: float = Field(default=5.0, ge=0)

    def session(self) -> dict[str, str]:
        """The settings ad-hoc SQL runs under, in the order to ``SET`` them: ``readonly`` last, which pins the rest."""
        return {
            "max_execution_time": str(self.max_execution_time),
            "timeout_overflow_mode": "throw",
            "max_memory_usage": str(self.max_memory_usage),
            "max_rows_to_read": str(self.max_rows_to_read),
            "max_bytes_to_read": str(self.max_bytes_to_read),
            "read_overflow_mode": "throw",
            "max_result_rows": str(self.max_result_rows),
            "max_result_bytes": str(self.max_result_bytes),
            "result_overflow_mode": "throw",
            "max_threads": str(self.max_threads),
            "readonly": "1",
        }

    def views(self) -> dict[str, Any]:
        """Per-query settings of the read API's own SQL files: the same time, memory and read limits."""
        return {
            "max_execution_time": self.max_execution_time,
            "timeout_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_usage,
            "max_rows_to_read": self.max_rows_to_read,
            "max_bytes_to_read": self.max_bytes_to_read,
            "read_overflow_mode": "throw",
        }


#: The limits a server's ad-hoc user must have (each at most ours, none unlimited), checked when its client opens.
PINNED: Final = ("max_execution_time", "max_memory_usage", "max_rows_to_read", "max_bytes_to_read",
                 "max_result_rows", "max_result_bytes")
_CODE: Final = re.compile(r"Code: (\d+)\.")
_BYTES: Final = frozenset({"max_memory_usage", "max_bytes_to_read", "max_result_bytes"})
#: ClickHouse error codes of a query stopped by a limit, with the settings that stop it that way.
LIMIT_CODES: Final[dict[int, tuple[str, ...]]] = {
    159: ("max_execution_time",),  # TIMEOUT_EXCEEDED
    241: ("max_memory_usage",),  # MEMORY_LIMIT_EXCEEDED
    158: ("max_rows_to_read", "max_result_rows"),  # TOO_MANY_ROWS
    307: ("max_bytes_to_read", "max_result_bytes"),  # TOO_MANY_BYTES
    396: ("max_result_rows", "max_result_bytes"),  # TOO_MANY_ROWS_OR_BYTES
}


def human(name: str, value: int) -> str:
    """A limit's value as a person reads it: bytes in MiB/GiB, seconds with 's', rows with separators."""
    if name in _BYTES:
        return f"{value / GiB:g} GiB" if value >= GiB and value % GiB == 0 else f"{value / MiB:g} MiB"
    if name == "max_execution_time":
        return f"{value} s"
    return f"{value:,} rows"


def limit_code(exc: Exception) -> int | None:
    """The engine's error code of ``exc`` (its message starts "Code: <n>." whatever the client made of it)."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    found = _CODE.search(str(exc))
    return int(found.group(1)) if found else None


def limit_hit(exc: Exception, limits: Mapping[str, int]) -> str | None:
    """``query stopped: <setting> (<value>) exceeded`` if ``exc`` is a query stopped by a limit, else None."""
    code = limit_code(exc)
    names = LIMIT_CODES.get(code) if code is not None else None
    if names is None:
        return None
    text = str(exc)
    name = next((n for n in names if f"'{n}'" in text), names[0])
    if code == 307 and "result" in text.lower() and "max_result_bytes" in names:
        name = "max_result_bytes"
    shown = f" ({human(name, limits[name])})" if name in limits else ""
    return f"query stopped: {name}{shown} exceeded"


__all__ = ["GiB", "LIMIT_CODES", "MiB", "PINNED", "SqlSettings", "human", "limit_code", "limit_hit"]
