"""The cluster rendering of every migration file, read back by ClickHouse's own parser.

chDB has no cluster, so nothing here is applied (that is test_cluster_apply.py, against a real
cluster): each rendered statement goes through the engine's ``formatQuery``, which parses it, and the
parser's canonical text of a rendered statement, with the renderer's documented changes undone
(``ON CLUSTER``, the ``_local`` names, the Replicated engine, the replicated dedup window), must be
the canonical text of the statement in the file: nothing else (columns, TTLs, keys, view queries)
was touched.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from meterline.cluster_sql import DEDUP_WINDOW_SECONDS, LOCAL_SUFFIX, render_migrations
from meterline.migrations import Migration, discover

CLUSTER, DB = "meterline", "meterline"
MIGRATIONS = discover()
_REPLICATED = re.compile(r"ENGINE = Replicated(\w*MergeTree)\('/clickhouse/tables/\{shard\}/\{database\}/\w+', "
                         r"'\{replica\}'(?:, (.*?))?\)$", re.M)
_DISTRIBUTED = re.compile(rf"^CREATE TABLE (?:IF NOT EXISTS )?(\w+) ON CLUSTER {CLUSTER} AS \1{LOCAL_SUFFIX}\s")


def canonical(client: Any, sql: str) -> str:
    text: str = client.query("SELECT formatQuery({q:String})", parameters={"q": sql}).result_rows[0][0]
    return re.sub(r"ENGINE = (\w+)\(\)", r"ENGINE = \1", text)


def undo(text: str, sharded: set[str]) -> str:
    """The renderer's documented changes, undone on the parser's canonical text."""
    text = text.replace(f" ON CLUSTER {CLUSTER}", "")
    text = _REPLICATED.sub(lambda m: f"ENGINE = {m[1]}" + (f"({m[2]})" if m[2] else ""), text)
    text = re.sub(rf"\b(\w+){LOCAL_SUFFIX}\b", lambda m: m[1] if m[1] in sharded else m[0], text)
    return re.sub(rf"replicated_deduplication_window = (\d+), replicated_deduplication_window_seconds = "
                  rf"{DEDUP_WINDOW_SECONDS}", r"non_replicated_deduplication_window = \1", text)


@pytest.mark.parametrize("upto", range(len(MIGRATIONS)), ids=lambda i: MIGRATIONS[i].path.name)
def test_rendered_statements_parse_and_change_only_what_cluster_mode_changes(clickhouse: Any, upto: int) -> None:
    migrations: list[Migration] = MIGRATIONS[:upto + 1]
    out = render_migrations([(m.version, m.statements()) for m in migrations], CLUSTER, DB)
    migration = migrations[-1]
    sharded = {m[1] for v in out for s in out[v] if (m := _DISTRIBUTED.match(s))}
    expected = [canonical(clickhouse, s) for s in migration.statements()]
    seen: list[str] = []
    for statement in out[migration.version]:
        text = canonical(clickhouse, statement)  # raises on a syntax error
        assert f"ON CLUSTER {CLUSTER}" in text or text.startswith("INSERT")
        if _DISTRIBUTED.match(statement):
            engine = rf"ENGINE = Distributed\({CLUSTER}, {DB}, \w+{LOCAL_SUFFIX}, (cityHash64\(.+\)|rand\(\))\)"
            assert re.search(engine, text), text
            continue
        undone = undo(text, sharded)
        altered = re.match(r"ALTER TABLE (\w+) ", statement)
        if altered and altered[1] in sharded:
            continue  # the Distributed twin of an ALTER (the file's column changes without TTL): parsed
        assert undone in expected, f"rendered:\n{text}\nundone:\n{undone}"
        seen.append(undone)
    assert sorted(set(seen)) == sorted(set(expected)), "a statement of the file is missing from the rendering"
