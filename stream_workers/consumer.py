"""What the two consumers of a worker share: pausing everything assigned, and hearing about rebalances.

The processor (source topics) and the sink consumer (the internal sink topic, "topic" mode) both stop
fetching while ClickHouse is down — Kafka's retention is then the buffer and memory stays bounded —
and both must act when partitions are taken away or handed to them. aiokafka calls a rebalance
listener and only logs what it raises; ``Rebalance`` lets the owner make such a failure fatal instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from stream_workers.metrics import PAUSED

__all__ = ["Rebalance", "set_paused"]

Partitions = set[TopicPartition]


def set_paused(consumer: AIOKafkaConsumer, paused: bool) -> None:
    """Pause (or resume) every partition assigned to ``consumer`` — a sink's ``on_outage``."""
    assigned = list(consumer.assignment())
    if paused:
        consumer.pause(*assigned)
    else:
        consumer.resume(*assigned)
    PAUSED.set(1 if paused else 0)


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints here
    """Runs the owner's coroutines when partitions are revoked or assigned.

    With ``on_failure``, an exception there is handed to it (the processor stops the worker: a partition
    it could not take over or let go of cleanly must not be processed on) before aiokafka sees it.
    """

    def __init__(self, revoked: Callable[[Partitions], Awaitable[None]],
                 assigned: Callable[[Partitions], Awaitable[None]],
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        self._revoked = revoked
        self._assigned = assigned
        self._on_failure = on_failure

    async def on_partitions_revoked(self, revoked: Partitions) -> None:
        await self._run(self._revoked, revoked)

    async def on_partitions_assigned(self, assigned: Partitions) -> None:
        await self._run(self._assigned, assigned)

    async def _run(self, step: Callable[[Partitions], Awaitable[None]], partitions: Partitions) -> None:
        try:
            await step(partitions)
        except Exception as exc:
            if self._on_failure is not None:
                self._on_failure(exc)
            raise
