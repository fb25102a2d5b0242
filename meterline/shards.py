"""Where a sink batch goes in a ClickHouse cluster: the shard of its Kafka partition, a replica of it.

In cluster mode (``METERLINE_CLICKHOUSE_CLUSTER``) workers insert into the shard-local replicated
tables directly, not through the ``Distributed`` tables (docs/cluster.md says why): every batch of
partition ``p`` goes to shard ``p mod shards``, so a replayed batch meets its first insert in the same
deduplication log. The replicas of a shard share that log in Keeper, so a batch retried on another
replica after a failure is still dropped as a duplicate.

The shards and their replicas are read from the server's ``system.clusters``; each replica is reached
over HTTP on the host it lists, with the scheme, port, credentials and database of ``CLICKHOUSE_URL``
(every server of the cluster is configured alike, as in deploy/cluster/).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from clickhouse_connect.driver.client import Client

from meterline.clickhouse import get_client
from meterline.cluster_sql import valid_cluster_name
from meterline.errors import ConfigError

__all__ = ["ShardRouter", "with_host"]

log = logging.getLogger(__name__)


def with_host(dsn: str, host: str) -> str:
    """``dsn`` with its host replaced by ``host`` (scheme, credentials, port and database kept)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("http", "https", "clickhouse", "clickhouses") or not parts.hostname:
        raise ConfigError("cluster mode needs CLICKHOUSE_URL to name a ClickHouse server (http(s)://...)")
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = (f"{userinfo}@" if userinfo else "") + (f"[{host}]" if ":" in host else host)
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class ShardRouter:
    """Clients for the replicas of each shard of ``cluster``; one thread uses it (the sink's)."""

    def __init__(self, cluster: str, dsn: str, connect: Callable[[str], Client] | None = None) -> None:
        self.cluster = valid_cluster_name(cluster)
        self._dsn = dsn
        self._connect = connect or (lambda url: get_client(url, create_database=False))
        self.shards: list[list[str]] = []
        self._current: list[int] = []
        self._clients: dict[tuple[int, int], Client] = {}

    def discover(self, client: Client) -> None:
        """Read the shards and replicas of the cluster from the server ``client`` talks to."""
        rows = client.query("SELECT shard_num, host_name FROM system.clusters WHERE cluster = {c:String} "
                            "ORDER BY shard_num, replica_num", parameters={"c": self.cluster}).result_rows
        shards: dict[int, list[str]] = {}
        for shard_num, host in rows:
            shards.setdefault(int(shard_num), []).append(str(host))
        if not shards:
            raise ConfigError(f"ClickHouse has no cluster {self.cluster!r} in its remote_servers "
                              "(METERLINE_CLICKHOUSE_CLUSTER)")
        self.shards = [shards[n] for n in sorted(shards)]
        # processes start on different replicas of a shard, so inserts spread over them
        self._current = [os.getpid() % len(replicas) for replicas in self.shards]
        log.info("cluster %s: %d shards (%s)", self.cluster, len(self.shards),
                 "; ".join(", ".join(r) for r in self.shards))

    def shard_of(self, partition: int) -> int:
        """Index of the shard that stores every batch of Kafka partition ``partition``."""
        if not self.shards:
            raise ConfigError("ShardRouter.discover() has not run")
        return partition % len(self.shards)

    def client(self, shard: int) -> Client:
        """A client on the current replica of ``shard`` (connected on first use)."""
        key = (shard, self._current[shard])
        if key not in self._clients:
            self._clients[key] = self._connect(with_host(self._dsn, self.shards[shard][key[1]]))
        return self._clients[key]

    def failed(self, shard: int) -> None:
        """Drop the current replica's client: the next attempt goes to the shard's next replica."""
        replica = self._current[shard]
        client = self._clients.pop((shard, replica), None)
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken connection may fail too; it is gone either way
                log.debug("closing the client of %s failed", self.shards[shard][replica], exc_info=True)
        self._current[shard] = (replica + 1) % len(self.shards[shard])
        if len(self.shards[shard]) > 1:
            log.warning("shard %d: %s failed; next attempt on %s", shard + 1, self.shards[shard][replica],
                        self.shards[shard][self._current[shard]])

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
