"""Kafka topics of Meterline: names, partition counts, retention and compaction — data, no I/O.

A ``Topics`` is the whole set for one name prefix, partition count and replication factor; each
service's settings build it from their own fields (the prefix lets tests use fresh names, the
partition count lets a deployment scale, the replication factor lets a cluster lose a broker).
``meterline.kafka_admin.create_topics`` makes the topics exist; the records each one carries are
described in ``docs/wire-protocols.md``.
"""

from __future__ import annotations

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
    """The topic set for one prefix, partition count and replication factor (built by the settings)."""

    prefix: str = "meterline."
    partitions: int = 6
    #: copies of every partition; acks=all then waits for ``min_insync_replicas`` of them
    replication_factor: int = 1

    @property
    def min_insync_replicas(self) -> int:
        """One copy may be down and writes go on (2 of 3); a single broker needs only itself."""
        return max(1, self.replication_factor - 1)

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
        isr = {"min.insync.replicas": str(self.min_insync_replicas)}
        retention = {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS),
                     "max.message.bytes": str(8 * 1024 * 1024), **isr}
        return [
            TopicSpec(self.requests, self.partitions, retention),
            TopicSpec(self.usage, self.partitions, retention),
            TopicSpec(self.dead_letters, self.partitions,
                      {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS), **isr}),
            TopicSpec(self.keys, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                                     "segment.ms": str(3600 * 1000), **isr}),
        ]
