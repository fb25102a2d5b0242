"""The ClickHouse client factory and the migration runner against the real engine."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meterline.clickhouse import INSERT_SETTINGS, get_client, parse_dsn
from meterline.errors import ConfigError, InfrastructureError
from meterline.migrations import apply_migrations, discover


def test_migrations_applied_twice_leave_one_copy(clickhouse_dsn: str) -> None:
    client = get_client(clickhouse_dsn)
    first = apply_migrations(client)
    second = apply_migrations(client)
    assert first == [m.version for m in discover()]
    assert second == []
    tables = client.query(
        "SELECT name, count() FROM system.tables WHERE database = {db:String} GROUP BY name",
        parameters={"db": client.database},
    ).result_rows
    counts = dict(tables)
    assert {"request_logs", "usage_events", "dead_letters"} <= set(counts)
    assert set(counts.values()) == {1}
    versions = client.query("SELECT count(), uniqExact(version) FROM schema_migrations").result_rows[0]
    assert versions[0] == versions[1] == len(first)


def test_insert_deduplication_token_makes_retries_noops(clickhouse: object) -> None:
    from clickhouse_connect.driver.client import Client

    assert isinstance(clickhouse, Client)
    cols = ["agent_id", "error", "reason", "stage", "source_topic", "partition", "offset", "failed_at", "payload"]
    now = datetime.now(UTC)
    rows = [["agent-1", "boom", "schema", "worker", "t", 0, 1, now, "{}"]]
    for token in ("t-0-1", "t-0-1", "t-0-2"):
        clickhouse.insert("dead_letters", rows, column_names=cols,
                          settings={**INSERT_SETTINGS, "insert_deduplication_token": token})
    assert clickhouse.query("SELECT count() FROM dead_letters").result_rows[0][0] == 2


def test_chdb_and_http_dsns_share_the_factory(clickhouse_engine_dsn: str, tmp_dir: Path) -> None:
    # chDB opens one directory per process: reuse the session's engine when it is chDB.
    engine = clickhouse_engine_dsn if clickhouse_engine_dsn.startswith("chdb:") else f"chdb://{tmp_dir / 'ch'}"
    client = get_client(f"{engine}?database=factory_test")
    assert client.database == "factory_test"
    assert client.query("SELECT 1 + {x:UInt8}", parameters={"x": 1}).result_rows == [(2,)]
    assert parse_dsn("http://u:p@db.example:8123/analytics") == ("http://u:p@db.example:8123", "analytics")
    # The HTTP path is taken by the same factory: against a closed port it fails with our error.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(InfrastructureError, match="cannot reach ClickHouse") as info:
        get_client(f"http://user:secret@127.0.0.1:{port}/db", connect_timeout=1)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("dsn", ["mysql://x", "chdb://relative", "http:///nohost", "chdb:///tmp/x?database=a-b"])
def test_bad_dsn_is_a_clear_config_error(dsn: str) -> None:
    with pytest.raises(ConfigError):
        get_client(dsn)
