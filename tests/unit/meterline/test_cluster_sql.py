"""meterline.cluster_sql: every migration file rendered for a cluster, checked statement by statement.

The structural checks run over whatever files ``schemas/migrations`` holds (a new migration is
checked the moment it exists); the parser's own view of the rendered SQL (ClickHouse's
``formatQuery``) is in tests/integration/meterline/test_cluster_sql_parse.py, and applying it to a
real cluster in test_cluster_apply.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meterline.cluster_sql import (
    DEDUP_WINDOW_SECONDS,
    ClusterRenderer,
    ClusterRenderError,
    local_name,
    render_migrations,
)
from meterline.errors import ConfigError
from meterline.migrations import discover, rendered

CLUSTER, DB = "meterline", "meterline"
MIGRATIONS = discover()
RENDERED = rendered(MIGRATIONS, CLUSTER, DB)
_CREATE = re.compile(r"^CREATE TABLE (IF NOT EXISTS )?(\w+)\s*\(.*?\bENGINE\s*=\s*(\w*)MergeTree\b", re.S | re.I)
_MV = re.compile(r"^CREATE MATERIALIZED VIEW (IF NOT EXISTS )?(\w+)(?: ON CLUSTER \w+)? TO (\w+)", re.I)
_SOURCES = re.compile(r"\b(?:FROM|JOIN)\s+(\w+)", re.I)


def sharded_tables() -> set[str]:
    """Every MergeTree-family table the migration files create, read from the files themselves."""
    return {m.group(2) for mig in MIGRATIONS for s in mig.statements() if (m := _CREATE.match(s))}


def test_there_are_migrations_and_each_renders() -> None:
    assert MIGRATIONS and set(RENDERED) == {m.version for m in MIGRATIONS}
    assert {"request_logs", "usage_events", "dead_letters"} <= sharded_tables()


@pytest.mark.parametrize("migration", MIGRATIONS, ids=lambda m: m.path.name)
def test_each_merge_tree_table_gets_a_replicated_local_twin_and_a_distributed_table(migration: object) -> None:
    from meterline.migrations import Migration

    assert isinstance(migration, Migration)
    out = RENDERED[migration.version]
    for statement in migration.statements():
        match = _CREATE.match(statement)
        if not match:
            continue
        if_not_exists, name, kind = match.group(1) or "", match.group(2), match.group(3)
        local = local_name(name)
        [create_local] = [s for s in out if s.startswith(f"CREATE TABLE {if_not_exists}{local} ON CLUSTER {CLUSTER}")]
        path = f"'/clickhouse/tables/{{shard}}/{{database}}/{local}', '{{replica}}'"
        assert f"ENGINE = Replicated{kind}MergeTree({path}" in create_local
        assert "non_replicated_deduplication_window" not in create_local
        window = re.search(r"non_replicated_deduplication_window\s*=\s*(\d+)", statement)
        if window:  # the same number of blocks, now kept in Keeper, for as long as a batch can come back
            assert f"replicated_deduplication_window = {window.group(1)}," in create_local
            assert f"replicated_deduplication_window_seconds = {DEDUP_WINDOW_SECONDS}" in create_local
        [distributed] = [s for s in out if s.startswith(f"CREATE TABLE {if_not_exists}{name} ON CLUSTER")]
        assert re.fullmatch(rf"CREATE TABLE {if_not_exists}{name} ON CLUSTER {CLUSTER} AS {local} ENGINE = "
                            rf"Distributed\({CLUSTER}, {DB}, {local}, cityHash64\([^;]+\)\)", distributed)
        assert out.index(create_local) < out.index(distributed)  # AS <local> needs the local table first


@pytest.mark.parametrize("migration", MIGRATIONS, ids=lambda m: m.path.name)
def test_views_read_and_write_the_local_tables(migration: object) -> None:
    from meterline.migrations import Migration

    assert isinstance(migration, Migration)
    sharded = sharded_tables()
    views = [m for s in RENDERED[migration.version] if (m := _MV.match(s))]
    assert len(views) == sum(bool(_MV.match(s)) for s in migration.statements())  # none skipped unseen
    for match in views:
        statement = match.string
        assert f" ON CLUSTER {CLUSTER} TO " in statement
        target = match.group(3)
        assert target.endswith("_local") and target.removesuffix("_local") in sharded, statement[:80]
        for source in _SOURCES.findall(statement):
            # a view over the Distributed table would never fire: workers insert into the local ones
            assert source not in sharded, f"{match.group(2)} reads {source}, not {local_name(source)}"


@pytest.mark.parametrize("migration", MIGRATIONS, ids=lambda m: m.path.name)
def test_every_statement_runs_on_the_cluster_and_stays_idempotent(migration: object) -> None:
    from meterline.migrations import Migration

    assert isinstance(migration, Migration)
    out = RENDERED[migration.version]
    assert len(out) >= len(migration.statements())
    for statement in out:
        if statement.upper().startswith("INSERT"):
            continue  # through the Distributed tables, as a client would
        assert statement.count(f" ON CLUSTER {CLUSTER}") == 1, statement[:80]
    originals = [s for s in migration.statements() if s.upper().startswith("CREATE")]
    creates = [s for s in out if s.upper().startswith("CREATE")]
    assert all("IF NOT EXISTS" in s for s in creates) == all("IF NOT EXISTS" in s for s in originals)


def test_alters_on_sharded_tables_reach_both_twins_without_column_ttls() -> None:
    r = ClusterRenderer(CLUSTER, DB, {"request_logs"})
    local, distributed = r.render("ALTER TABLE request_logs MODIFY COLUMN stored_at DateTime64(3, 'UTC') "
                                  "DEFAULT now64(3), MODIFY COLUMN request_body String TTL toDateTime(stored_at)"
                                  " + INTERVAL 7 DAY, ADD INDEX idx agent_id TYPE bloom_filter GRANULARITY 4")
    assert local.startswith(f"ALTER TABLE request_logs_local ON CLUSTER {CLUSTER} MODIFY COLUMN stored_at")
    assert "INTERVAL 7 DAY" in local and "ADD INDEX idx" in local
    # a Distributed table holding a column TTL accepts the ALTER and then fails to start (ClickHouse #33344)
    assert distributed == (f"ALTER TABLE request_logs ON CLUSTER {CLUSTER} MODIFY COLUMN stored_at "
                           "DateTime64(3, 'UTC') DEFAULT now64(3), MODIFY COLUMN request_body String")
    [only_local] = r.render("ALTER TABLE request_logs MODIFY TTL toDateTime(stored_at) + INTERVAL 1 YEAR")
    assert only_local.startswith("ALTER TABLE request_logs_local ")
    [ttl_only] = r.render("ALTER TABLE request_logs MODIFY COLUMN headers TTL toDateTime(stored_at) + INTERVAL 1 DAY")
    assert ttl_only.startswith("ALTER TABLE request_logs_local ")
    [view] = r.render("ALTER TABLE agent_minute_mv MODIFY COMMENT 'x'")
    assert view == f"ALTER TABLE agent_minute_mv ON CLUSTER {CLUSTER} MODIFY COMMENT 'x'"


def test_engine_arguments_strings_and_comments_are_kept() -> None:
    r = ClusterRenderer(CLUSTER, DB)
    local, distributed = r.render(
        "CREATE TABLE IF NOT EXISTS versions -- FROM request_logs ENGINE = MergeTree\n"
        "(k String DEFAULT 'ENGINE = MergeTree', v UInt64)\n"
        "ENGINE = ReplacingMergeTree(v) ORDER BY k SETTINGS index_granularity = 1024")
    assert ("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/versions_local', "
            "'{replica}', v)") in local
    assert "DEFAULT 'ENGINE = MergeTree'" in local and "-- FROM request_logs ENGINE = MergeTree" in local
    assert "SETTINGS index_granularity = 1024" in local and "replicated_deduplication_window" not in local
    assert distributed.endswith("Distributed(meterline, meterline, versions_local, cityHash64(k))")
    _, no_key = r.render("CREATE TABLE t (a UInt8) ENGINE = MergeTree() ORDER BY tuple()")
    assert no_key.endswith("t_local, rand())") and not no_key.startswith("CREATE TABLE IF")


def test_later_files_see_tables_earlier_files_sharded() -> None:
    out = render_migrations([
        (1, ["CREATE TABLE IF NOT EXISTS raw (a String, t DateTime) ENGINE = MergeTree ORDER BY (a, t)"]),
        (2, ["CREATE TABLE IF NOT EXISTS hourly (a String, n SimpleAggregateFunction(sum, UInt64)) "
             "ENGINE = AggregatingMergeTree ORDER BY a",
             "CREATE MATERIALIZED VIEW IF NOT EXISTS hourly_mv TO hourly AS SELECT a, count() AS n "
             "FROM raw AS r LEFT JOIN raw USING (a) WHERE a != 'FROM raw' GROUP BY a",
             "CREATE VIEW IF NOT EXISTS latest AS SELECT * FROM raw ORDER BY t DESC LIMIT 1",
             "CREATE TABLE IF NOT EXISTS inbox (a String) ENGINE = Null",
             "INSERT INTO hourly SELECT a, count() FROM raw GROUP BY a"]),
        (3, ["DROP TABLE IF EXISTS raw", "TRUNCATE TABLE hourly", "OPTIMIZE TABLE hourly FINAL"]),
    ], CLUSTER, DB)
    mv = out[2][2]
    assert mv.startswith(f"CREATE MATERIALIZED VIEW IF NOT EXISTS hourly_mv ON CLUSTER {CLUSTER} TO hourly_local AS")
    assert "FROM raw_local AS r LEFT JOIN raw_local USING (a) WHERE a != 'FROM raw'" in mv
    # a plain view answers a reader: it reads the whole cluster through the Distributed table
    on = f"ON CLUSTER {CLUSTER}"
    assert out[2][3] == ("CREATE VIEW IF NOT EXISTS latest ON CLUSTER meterline AS "
                         "SELECT * FROM raw ORDER BY t DESC LIMIT 1")
    assert out[2][4] == f"CREATE TABLE IF NOT EXISTS inbox {on} (a String) ENGINE = Null"
    assert out[2][5] == "INSERT INTO hourly SELECT a, count() FROM raw GROUP BY a"
    assert out[3] == [f"DROP TABLE IF EXISTS raw {on}", f"DROP TABLE IF EXISTS raw_local {on}",
                      f"TRUNCATE TABLE hourly_local {on}", f"OPTIMIZE TABLE hourly_local {on} FINAL"]


@pytest.mark.parametrize("statement, reason", [
    ("CREATE TABLE t ENGINE = MergeTree ORDER BY a AS SELECT 1 AS a", "AS <table or SELECT>"),
    ("CREATE TABLE t AS other", "AS <table or SELECT>"),
    ("CREATE TABLE t (a UInt8)", "without ENGINE"),
    ("CREATE TABLE db.t (a UInt8) ENGINE = MergeTree ORDER BY a", "unqualified"),
    ("CREATE TABLE t ON CLUSTER c (a UInt8) ENGINE = MergeTree ORDER BY a", "names a cluster"),
    ("CREATE TABLE t (a UInt8) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY a", "Replicated engine"),
    ("CREATE TABLE t (a UInt8) ENGINE = MergeTree", "without ORDER BY"),
    ("CREATE MATERIALIZED VIEW v ENGINE = MergeTree ORDER BY a AS SELECT 1 AS a", "needs TO"),
    ("RENAME TABLE a TO b", "not supported"),
    ("DELETE FROM request_logs WHERE 1", "not supported"),
    ("SYSTEM STOP MERGES", "not supported"),
])
def test_shapes_it_cannot_shard_fail_loudly(statement: str, reason: str) -> None:
    renderer = ClusterRenderer(CLUSTER, DB)
    with pytest.raises(ClusterRenderError, match=reason):
        renderer.render(statement)


def test_names_that_cannot_be_bound_are_checked() -> None:
    with pytest.raises(ConfigError, match="cluster name"):
        ClusterRenderer("a cluster; DROP", DB)
    with pytest.raises(ConfigError, match="database name"):
        ClusterRenderer(CLUSTER, "db`")


def test_the_migration_files_are_untouched_by_rendering(tmp_path: Path) -> None:
    before = {m.path: m.path.read_bytes() for m in MIGRATIONS}
    rendered(MIGRATIONS, CLUSTER, DB)
    assert {m.path: m.path.read_bytes() for m in MIGRATIONS} == before
    assert rendered(MIGRATIONS, None, None) == {m.version: m.statements() for m in MIGRATIONS}
