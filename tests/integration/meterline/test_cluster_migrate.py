"""Cluster mode of the migration runner on the embedded engine, which has no cluster at all.

That makes chDB a witness: every ``ON CLUSTER`` statement fails on it. A worker that starts when
every migration is applied must not touch the cluster's DDL queue (it waits for every server, and a
worker must start while one is down), so it succeeds here; with a migration pending, the runner
does go to the cluster, and fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meterline.clickhouse import get_client
from meterline.migrations import apply_migrations, discover
from stream_workers.sink import apply_body_ttl

#: how chDB refuses a statement ON CLUSTER (no such cluster; distributed DDL disabled)
ON_CLUSTER_REFUSED = r"CLUSTER_DOESNT_EXIST|Replicated DDL queries are disabled"


def test_nothing_pending_means_no_statement_on_the_cluster(clickhouse: Any) -> None:
    assert apply_migrations(clickhouse, cluster="meterline") == []


def test_a_pending_migration_goes_to_the_cluster(clickhouse_dsn: str, tmp_dir: Path) -> None:
    client = get_client(clickhouse_dsn)
    first = discover()[0]
    (tmp_dir / first.path.name).write_text(first.path.read_text())
    apply_migrations(client, tmp_dir)  # one server's copy of the first file: applied, recorded
    (tmp_dir / "9999_more.sql").write_text("CREATE TABLE IF NOT EXISTS extra (a String) ENGINE = MergeTree ORDER BY a;")
    with pytest.raises(Exception, match=ON_CLUSTER_REFUSED):
        apply_migrations(client, tmp_dir, cluster="meterline")
    assert client.query("EXISTS TABLE extra").result_rows[0][0] == 0


def test_body_ttl_already_set_needs_no_statement_on_the_cluster(clickhouse: Any) -> None:
    clickhouse.command("CREATE TABLE request_logs_local AS request_logs")  # what the cluster rendering names it
    apply_body_ttl(clickhouse, 30, cluster="meterline")  # the migrations' 30 days: nothing to change
    with pytest.raises(Exception, match=ON_CLUSTER_REFUSED):
        apply_body_ttl(clickhouse, 7, cluster="meterline")  # a change: ON CLUSTER, which chDB cannot run
