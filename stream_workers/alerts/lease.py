"""Who evaluates: the worker that holds partition 0 of the one-partition lease topic.

Every worker that may evaluate joins one consumer group on ``<prefix>alerts-lease``; Kafka's group
coordinator gives the topic's single partition to exactly one member, and to another one when that
member leaves or stops heart-beating (within the session timeout). Nothing is ever read from or written
to the topic: the assignment is the lease. A member polls on each ``held()``, so the group does not
consider it stuck. Should two members act for a moment while the partition moves, the evaluator's
deterministic event ids keep their transitions single (docs/alerts.md).
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from meterline.kafka_admin import create_topics
from schemas.topics import Topics, TopicSpec

__all__ = ["KafkaLease", "lease_topic_spec"]

log = logging.getLogger(__name__)


def lease_topic_spec(name: str) -> TopicSpec:
    return TopicSpec(name, 1, {"cleanup.policy": "delete", "retention.ms": str(3600 * 1000)})


class KafkaLease:
    """The alerts lease of one worker (``start``, then ``held()`` before each evaluation, ``stop``)."""

    def __init__(self, bootstrap_servers: str, topics: Topics, topic: str, group_id: str, *,
                 session_timeout_s: float = 10.0, max_poll_interval_s: float = 300.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.group_id = group_id
        self._partition = TopicPartition(topic, 0)
        self._session_ms = int(session_timeout_s * 1000)
        self._poll_ms = int(max(max_poll_interval_s, session_timeout_s) * 1000)
        self._topics = topics
        self._consumer: AIOKafkaConsumer | None = None
        self._was_held = False

    async def start(self) -> None:
        # the pipeline's topics exist already (the worker made them): this adds the lease topic
        await create_topics(self.bootstrap_servers, self._topics, extra=[lease_topic_spec(self.topic)])
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.group_id, enable_auto_commit=False,
            session_timeout_ms=self._session_ms, heartbeat_interval_ms=max(100, self._session_ms // 4),
            max_poll_interval_ms=self._poll_ms, auto_offset_reset="latest")
        self._consumer.subscribe([self.topic])
        await self._consumer.start()

    async def held(self) -> bool:
        """Whether this worker holds the lease now (polls the group once)."""
        if self._consumer is None:
            return False
        await self._consumer.getmany(timeout_ms=0)
        held = self._partition in self._consumer.assignment()
        if held != self._was_held:
            log.info("alerts lease %s: this worker %s", self.topic, "evaluates" if held else "no longer evaluates")
            self._was_held = held
        return held

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()  # leaves the group: the lease moves at once, not after the session timeout
