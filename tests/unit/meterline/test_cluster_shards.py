"""meterline.shards: which shard stores a partition's batches, which replica an attempt goes to.

The ClickHouse client is faked (the transport boundary): it answers ``system.clusters`` with a
2 shards × 2 replicas layout and records what was connected and closed. Inserting through a real
cluster is tests/integration/meterline/test_cluster_apply.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from meterline.errors import ConfigError
from meterline.shards import ShardRouter, with_host

LAYOUT = [(1, "ch-s1r1"), (1, "ch-s1r2"), (2, "ch-s2r1"), (2, "ch-s2r2")]
DSN = "http://meterline:s3cret@ch-s1r1:8123/meterline"


class FakeClient:
    def __init__(self, url: str = "", rows: list[tuple[int, str]] | None = None) -> None:
        self.url = url
        self.rows = rows or []
        self.closed = False
        self.asked: list[dict[str, Any]] = []

    def query(self, sql: str, parameters: dict[str, Any]) -> Any:
        self.asked.append(parameters)
        return type("Result", (), {"result_rows": self.rows if parameters["c"] == "meterline" else []})

    def close(self) -> None:
        self.closed = True


def router() -> tuple[ShardRouter, list[FakeClient]]:
    made: list[FakeClient] = []

    def connect(url: str) -> Any:
        made.append(FakeClient(url))
        return made[-1]

    r = ShardRouter("meterline", DSN, connect=connect)
    r.discover(FakeClient(rows=LAYOUT))  # type: ignore[arg-type]  # the fake answers what the router asks
    return r, made


def test_with_host_keeps_scheme_credentials_port_and_database() -> None:
    assert with_host(DSN, "ch-s2r2") == "http://meterline:s3cret@ch-s2r2:8123/meterline"
    assert with_host("https://ch:8443/db", "10.0.0.7") == "https://10.0.0.7:8443/db"
    assert with_host("http://u@a/db", "fe80::1") == "http://u@[fe80::1]/db"
    with pytest.raises(ConfigError, match="ClickHouse server"):
        with_host("chdb:///tmp/x", "h")


def test_partitions_map_to_shards_the_same_way_every_time() -> None:
    r, _ = router()
    assert r.shards == [["ch-s1r1", "ch-s1r2"], ["ch-s2r1", "ch-s2r2"]]
    assert [r.shard_of(p) for p in range(6)] == [0, 1, 0, 1, 0, 1]
    # a replay of a batch is routed by its partition alone: the same shard as its first insert
    assert {r.shard_of(4) for _ in range(10)} == {0}


def test_a_failed_replica_hands_the_next_attempt_to_the_other_replica_of_the_same_shard() -> None:
    r, made = router()
    first = r.client(1)
    assert r.client(1) is first and len(made) == 1  # connected once, then reused
    assert first.url.startswith("http://meterline:s3cret@ch-s2r") and first.url.endswith(":8123/meterline")
    r.failed(1)
    assert first.closed  # type: ignore[attr-defined]
    second = r.client(1)
    assert second is not first and {first.url, second.url} == {  # type: ignore[attr-defined]
        with_host(DSN, "ch-s2r1"), with_host(DSN, "ch-s2r2")}
    r.failed(1)
    assert r.client(1).url == first.url  # type: ignore[attr-defined]  # round robin over the shard's replicas
    assert all("ch-s1" not in c.url for c in made)  # never another shard: its dedup log is not this one's


def test_an_unknown_cluster_or_no_discovery_is_a_config_error() -> None:
    r = ShardRouter("elsewhere", DSN, connect=FakeClient)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no cluster 'elsewhere'"):
        r.discover(FakeClient(rows=LAYOUT))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="discover"):
        ShardRouter("meterline", DSN).shard_of(0)
    with pytest.raises(ConfigError, match="cluster name"):
        ShardRouter("no such; cluster", DSN)
