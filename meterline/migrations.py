"""Apply the versioned ``.sql`` files of ``schemas/migrations`` once each.

Files are named ``NNNN_description.sql``; statements are separated by a ``;`` at the end of a line.
Applied versions are recorded in ``schema_migrations``; a version is recorded only after all its
statements succeeded, and statements are written to be idempotent (``IF NOT EXISTS``), so a run
interrupted half-way is safe to repeat.

With a ``cluster`` (``METERLINE_CLICKHOUSE_CLUSTER``) the same files are rendered by
``meterline.cluster_sql`` into replicated, sharded tables created ``ON CLUSTER``, and
``schema_migrations`` is one table replicated to every server, so any server knows what was applied.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from meterline.clickhouse import INSERT_SETTINGS
from meterline.cluster_sql import render_migrations, valid_cluster_name
from meterline.errors import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self) -> list[str]:
        text = "\n".join(line for line in self.path.read_text().splitlines()
                         if not line.lstrip().startswith("--"))
        return [s.strip() for s in re.split(r";\s*$", text, flags=re.MULTILINE) if s.strip()]


def discover(directory: Path | None = None) -> list[Migration]:
    """Return the migrations in ``directory`` (default: ``schemas/migrations``), ordered by version."""
    directory = directory or _default_dir()
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ConfigError(f"migration file {path.name!r} is not named NNNN_description.sql")
        version = int(match.group(1))
        if version in found:
            raise ConfigError(f"two migrations share version {version}: {found[version].path.name}, {path.name}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def _default_dir() -> Path:
    if MIGRATIONS_DIR.is_dir():
        return MIGRATIONS_DIR
    import schemas

    return Path(schemas.__file__).resolve().parent / "migrations"


_LEDGER_COLUMNS = "(version UInt32, name String, applied_at DateTime64(3, 'UTC'))"
#: settings of every statement in cluster mode: an INSERT in a migration goes through the Distributed
#: tables and must have reached the shards when the statement returns
_CLUSTER_SETTINGS: dict[str, Any] = {"distributed_foreground_insert": 1}


def applied_versions(client: Client, cluster: str | None = None) -> set[int]:
    if cluster is None:
        client.command(f"CREATE TABLE IF NOT EXISTS schema_migrations {_LEDGER_COLUMNS} "
                       "ENGINE = ReplacingMergeTree ORDER BY version")
    elif not client.query("EXISTS TABLE schema_migrations").result_rows[0][0]:
        # one replica per server (no {shard} in its path): every server sees every version. Created only
        # when missing: ON CLUSTER waits for every server, and a worker must start with one of them down.
        client.command(f"CREATE DATABASE IF NOT EXISTS `{client.database}` ON CLUSTER {cluster}")
        client.command(f"CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER {cluster} {_LEDGER_COLUMNS} "
                       "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/schema_migrations',"
                       " '{replica}') ORDER BY version")
    return {int(row[0]) for row in client.query("SELECT DISTINCT version FROM schema_migrations").result_rows}


def rendered(migrations: list[Migration], cluster: str | None, database: str | None) -> dict[int, list[str]]:
    """Version → statements to run: as written, or rendered for ``cluster`` (from the first file on)."""
    pairs = [(m.version, m.statements()) for m in migrations]
    if cluster is None:
        return dict(pairs)
    if not database:
        raise ConfigError("cluster migrations need a client bound to a database")
    return render_migrations(pairs, cluster, database)


def apply_migrations(client: Client, directory: Path | None = None, cluster: str | None = None) -> list[int]:
    """Apply pending migrations to the client's database; return the versions applied now.

    ``cluster`` names the ClickHouse cluster (``remote_servers``) to render them for (docs/cluster.md).
    """
    if cluster is not None:
        valid_cluster_name(cluster)
    migrations = discover(directory)
    statements = rendered(migrations, cluster, client.database)  # a statement it cannot render fails here
    done = applied_versions(client, cluster)
    settings = _CLUSTER_SETTINGS if cluster else None
    applied: list[int] = []
    for migration in migrations:
        if migration.version in done:
            continue
        log.info("applying migration %04d_%s%s", migration.version, migration.name,
                 f" on cluster {cluster}" if cluster else "")
        for statement in statements[migration.version]:
            client.command(statement, settings=settings)
        client.insert("schema_migrations", [[migration.version, migration.name, datetime.now(UTC)]],
                      column_names=["version", "name", "applied_at"], settings=INSERT_SETTINGS)
        applied.append(migration.version)
    return applied
