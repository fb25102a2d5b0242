"""One way to reach ClickHouse, whichever engine is behind the DSN.

``chdb:///path/to/dir[?database=db]`` opens the embedded engine (chDB) in this process (one process
per directory: chDB locks it). ``http(s)://user:pass@host:8123/db`` talks to a ClickHouse server.
Both return a ``clickhouse_connect`` client, so every caller uses the same API.

ClickHouse 26.x turns ``async_insert`` on by default, which acknowledges inserts before they are
written and would break our insert-deduplication tokens; ``INSERT_SETTINGS`` turns it off and waits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from clickhouse_connect.driver.client import Client

from meterline.chdb_repair import repair_deduplication_logs
from meterline.errors import ConfigError, InfrastructureError
from meterline.paths import data_home

INSERT_SETTINGS: Final[dict[str, Any]] = {
    "async_insert": 0,
    "wait_for_async_insert": 1,
    "insert_deduplicate": 1,
}
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
DEFAULT_DATABASE: Final = "meterline"


def default_dsn() -> str:
    """The embedded engine under ``METERLINE_HOME``: where ``CLICKHOUSE_URL`` points when it is unset."""
    return f"chdb://{data_home() / 'chdb'}?database={DEFAULT_DATABASE}"


def valid_database_name(name: str) -> str:
    """Return ``name`` if it is a plain identifier (database names cannot be bound as parameters)."""
    if not _DB_NAME.match(name):
        raise ConfigError(f"invalid ClickHouse database name {name!r}: use letters, digits and _")
    return name


def parse_dsn(dsn: str) -> tuple[str, str]:
    """Split a DSN into (engine DSN without database, database). Raises ``ConfigError`` if unusable."""
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        if parts.netloc and parts.netloc != "memory":
            raise ConfigError(f"chDB DSN must be chdb:///absolute/path or chdb://memory, got {dsn!r}")
        database = parse_qs(parts.query).get("database", [DEFAULT_DATABASE])[0]
        if parts.netloc == "memory":
            return "chdb://memory", valid_database_name(database)
        if not parts.path or not parts.path.startswith("/"):
            raise ConfigError(f"chDB DSN needs an absolute directory path, got {dsn!r}")
        return f"chdb://{parts.path}", valid_database_name(database)
    if parts.scheme in ("http", "https", "clickhouse", "clickhouses"):
        if not parts.hostname:
            raise ConfigError(f"ClickHouse DSN has no host: {dsn!r}")
        database = parts.path.strip("/") or DEFAULT_DATABASE
        netloc = parts.netloc
        scheme = {"clickhouse": "http", "clickhouses": "https"}.get(parts.scheme, parts.scheme)
        return f"{scheme}://{netloc}", valid_database_name(database)
    raise ConfigError(f"unsupported ClickHouse DSN scheme {parts.scheme!r} in {dsn!r}: use chdb:// or http(s)://")


def get_client(dsn: str, *, create_database: bool = True, connect_timeout: float = 5.0) -> Client:
    """Return a client for ``dsn`` with the database created (unless told not to) and selected."""
    import clickhouse_connect

    engine_dsn, database = parse_dsn(dsn)
    try:
        if engine_dsn.startswith("chdb:"):
            path = engine_dsn.removeprefix("chdb://")
            if path != "memory":
                Path(path).mkdir(parents=True, exist_ok=True)
                repair_deduplication_logs(Path(path))  # before the engine reads them (chdb_repair.py says why)
            client = clickhouse_connect.get_client(dsn=engine_dsn)
        else:
            client = clickhouse_connect.get_client(dsn=engine_dsn, connect_timeout=connect_timeout,
                                                   send_receive_timeout=60, autogenerate_session_id=False)
        if create_database:
            client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        client.database = database
    except ConfigError:
        raise
    except Exception as exc:
        shown = urlsplit(dsn)._replace(netloc=urlsplit(dsn).hostname or "").geturl()
        raise InfrastructureError(f"cannot reach ClickHouse at {shown}: {exc}") from exc
    return client
