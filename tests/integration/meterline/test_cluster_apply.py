"""The cluster rendering applied to a real ClickHouse cluster, and the workers' insert path on it.

Needs a cluster (deploy/cluster/ is one): METERLINE_TEST_CLICKHOUSE_CLUSTER_URL names one of its
servers (``http://meterline:<password>@localhost:8123``), METERLINE_TEST_CLICKHOUSE_CLUSTER its name in
remote_servers (default ``meterline``), and, when the tests run outside the cluster's network,
METERLINE_TEST_CLICKHOUSE_HOSTS where to reach the hosts ``system.clusters`` lists
(``ch-s1r2=localhost:8124,...``). Without the URL every test here is skipped, and pytest's summary lists
them as skipped with this reason: chDB has no cluster, so nothing else can stand in.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest

from meterline import faults
from meterline.clickhouse import get_client
from meterline.migrations import apply_migrations, discover
from meterline.shards import ShardRouter
from stream_workers.batch import OpenBatch, SinkBatch
from stream_workers.handlers.requests import RequestHandler
from stream_workers.sink import ClickHouseSink

URL = os.environ.get("METERLINE_TEST_CLICKHOUSE_CLUSTER_URL", "")
CLUSTER = os.environ.get("METERLINE_TEST_CLICKHOUSE_CLUSTER", "meterline")
HOSTS = dict(pair.split("=", 1) for pair in os.environ.get("METERLINE_TEST_CLICKHOUSE_HOSTS", "").split(",") if pair)
pytestmark = pytest.mark.skipif(not URL, reason="no ClickHouse cluster to apply to: set "
                                "METERLINE_TEST_CLICKHOUSE_CLUSTER_URL (e.g. deploy/cluster/'s ch-s1r1)")


@pytest.fixture
def cluster_dsn() -> Iterator[str]:
    """A DSN naming a fresh database; dropped on every server afterwards."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    yield urlsplit(URL)._replace(path=f"/{database}").geturl()
    get_client(URL, create_database=False).command(f"DROP DATABASE IF EXISTS `{database}` ON CLUSTER {CLUSTER} SYNC")


def _reach(url: str) -> Any:
    """A client for a replica URL built from system.clusters, with its host translated if asked."""
    parts = urlsplit(url)
    if parts.hostname in HOSTS:
        userinfo = parts.netloc.rpartition("@")[0]
        parts = parts._replace(netloc=f"{userinfo}@{HOSTS[parts.hostname]}" if userinfo else HOSTS[parts.hostname])
    return get_client(parts.geturl(), create_database=False)


def _on_every_server(client: Any, columns: str, table: str, rest: str = "") -> list[tuple[Any, ...]]:
    """``SELECT columns`` from ``table`` on every server of the cluster (names are ours, not input)."""
    sql = f"SELECT {columns} FROM clusterAllReplicas({CLUSTER}, {table}) {rest}"  # noqa: S608
    return [tuple(r) for r in client.query(sql, parameters={"db": client.database}).result_rows]


def test_migrations_create_replicated_local_and_distributed_tables_on_every_server(cluster_dsn: str) -> None:
    client = get_client(cluster_dsn)
    versions = [m.version for m in discover()]
    assert apply_migrations(client, cluster=CLUSTER) == versions
    assert apply_migrations(client, cluster=CLUSTER) == []  # any server now knows what was applied
    servers = {r[0] for r in _on_every_server(client, "hostName()", "system.one")}
    assert len(servers) >= 2
    engines = _on_every_server(client, "hostName(), name, engine", "system.tables", "WHERE database = {db:String}")
    by_server: dict[str, dict[str, str]] = {}
    for host, name, engine in engines:
        by_server.setdefault(host, {})[name] = engine
    assert set(by_server) == servers
    for tables in by_server.values():
        for base in ("request_logs", "usage_events", "dead_letters", "agent_minute", "usage_minute"):
            assert tables[base] == "Distributed"
            assert tables[f"{base}_local"].startswith("Replicated") and tables[f"{base}_local"].endswith("MergeTree")
        assert tables["agent_minute_mv"] == "MaterializedView"
        assert tables["schema_migrations"] == "ReplicatedReplacingMergeTree"
    client.command(f"SYSTEM SYNC REPLICA ON CLUSTER {CLUSTER} `{client.database}`.schema_migrations")
    ledgers = _on_every_server(client, "hostName(), uniqExact(version)", f"`{client.database}`.schema_migrations",
                               "GROUP BY hostName()")
    assert dict(ledgers) == dict.fromkeys(servers, len(versions))


def _batch(partition: int, ids: list[str]) -> SinkBatch:
    value = msgspec.json.encode({"v": 1, "agent_id": "ag", "batch_id": "b", "ingested_at": 1_700_000_000_000,
                                 "entries": [{"request_id": i, "method": "GET", "path": "/", "status_code": 200,
                                              "response_ms": 5.0} for i in ids]})
    handler = RequestHandler(max_event_age_days=36500)
    batch = OpenBatch(0)
    batch.rows = [row for _, row in handler.parse(value, "t", partition, 0).items]
    batch.end = 1
    return batch.seal("t", partition, handler.table, handler.columns)


@pytest.mark.parametrize("token", ["kept", "random"])
async def test_a_replayed_batch_lands_once_on_its_shard_even_through_the_other_replica(
        cluster_dsn: str, token: str) -> None:
    router = ShardRouter(CLUSTER, cluster_dsn, connect=_reach)
    sink = ClickHouseSink(lambda: get_client(cluster_dsn), router=router)
    assert await sink.start()
    try:
        batch = _batch(3, ["r1", "r2", "r3"])
        shard = router.shard_of(3)
        with faults.arm("sink.random_token", "on") if token == "random" else nullcontext():
            assert await sink.write(batch, abort=lambda: False)
            router.failed(shard)  # the replay goes to the shard's other replica, as after a failed attempt
            assert await sink.write(batch, abort=lambda: False)
        client = get_client(cluster_dsn)
        for table in ("request_logs_local", "agent_minute_local"):
            client.command(f"SYSTEM SYNC REPLICA ON CLUSTER {CLUSTER} `{client.database}`.{table}")
        rows = client.query("SELECT _shard_num, count() FROM request_logs GROUP BY _shard_num").result_rows
        rollup = client.query("SELECT sum(requests) FROM agent_minute").result_rows[0][0]
        expected = 3 if token == "kept" else 6  # negative control: a new token per attempt doubles
        assert rows == [(shard + 1, expected)]  # all on the partition's shard
        assert rollup == expected  # the view on the local table counted it the same way
    finally:
        await sink.close()
