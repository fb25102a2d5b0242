"""Kafka topics of Meterline: names, partition counts, retention and compaction, and their creation.

Partition counts come from the environment so deployments can scale them
(``METERLINE_PARTITIONS``, default 6); every topic a worker joins or repartitions keeps the same
count. Topic names may carry a prefix (``METERLINE_TOPIC_PREFIX``, default ``meterline.``) so tests
can use fresh names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Final

DAY_MS: Final = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topics:
    """The topic set for one prefix; use ``Topics.from_env()`` in services."""

    prefix: str = "meterline."
    partitions: int = 6

    @classmethod
    def from_env(cls) -> Topics:
        return cls(
            prefix=os.environ.get("METERLINE_TOPIC_PREFIX", "meterline."),
            partitions=int(os.environ.get("METERLINE_PARTITIONS", "6")),
        )

    @property
    def requests(self) -> str:
        """Accepted ingest batches (``RequestBatchRecord``), keyed by agent id."""
        return f"{self.prefix}requests"

    @property
    def usage(self) -> str:
        """Bridged billing reports (``UsageRecord``), keyed by app id."""
        return f"{self.prefix}usage"

    @property
    def keys(self) -> str:
        """API-key registry (``ApiKeyRecord``), compacted, keyed by the key's SHA-256."""
        return f"{self.prefix}keys"

    @property
    def dead_letters(self) -> str:
        """Inputs that failed validation or processing (``DeadLetter``)."""
        return f"{self.prefix}dead-letters"

    def specs(self) -> list[TopicSpec]:
        retention = {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS),
                     "min.insync.replicas": "1", "max.message.bytes": str(8 * 1024 * 1024)}
        return [
            TopicSpec(self.requests, self.partitions, retention),
            TopicSpec(self.usage, self.partitions, retention),
            TopicSpec(self.dead_letters, self.partitions,
                      {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}),
            TopicSpec(self.keys, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                                     "segment.ms": str(3600 * 1000)}),
        ]


async def create_topics(bootstrap_servers: str, topics: Topics | None = None,
                        replication_factor: int = 1, extra: list[TopicSpec] | None = None) -> list[str]:
    """Create missing topics; existing ones are left as they are. Returns the names created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topics = topics or Topics.from_env()
    specs = topics.specs() + list(extra or [])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            await admin.create_topics([
                NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication_factor,
                         topic_configs=dict(s.config))
                for s in missing
            ])
        return [s.name for s in missing]
    finally:
        await admin.close()
