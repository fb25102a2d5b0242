"""Apply the versioned ``.sql`` files of ``schemas/migrations`` once each.

Files are named ``NNNN_description.sql``; statements are separated by a ``;`` at the end of a line.
Applied versions are recorded in ``schema_migrations``; a version is recorded only after all its
statements succeeded, and statements are written to be idempotent (``IF NOT EXISTS``), so a run
interrupted half-way is safe to repeat.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from clickhouse_connect.driver.client import Client

from meterline.clickhouse import INSERT_SETTINGS
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


def applied_versions(client: Client) -> set[int]:
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    return {int(row[0]) for row in client.query("SELECT DISTINCT version FROM schema_migrations").result_rows}


def apply_migrations(client: Client, directory: Path | None = None) -> list[int]:
    """Apply pending migrations to the client's database; return the versions applied now."""
    done = applied_versions(client)
    applied: list[int] = []
    for migration in discover(directory):
        if migration.version in done:
            continue
        log.info("applying migration %04d_%s", migration.version, migration.name)
        for statement in migration.statements():
            client.command(statement)
        client.insert("schema_migrations", [[migration.version, migration.name, datetime.now(UTC)]],
                      column_names=["version", "name", "applied_at"], settings=INSERT_SETTINGS)
        applied.append(migration.version)
    return applied
