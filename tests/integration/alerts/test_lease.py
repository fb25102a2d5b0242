"""Exactly one evaluator acts at a time: the workers' alert services share a lease (partition 0 of a
one-partition topic in one consumer group) on the real Kafka broker; when the holder stops, another takes over."""

from __future__ import annotations

import uuid

from clickhouse_connect.driver.client import Client

from schemas.topics import Topics
from stream_workers.alerts.evaluator import AlertEvaluator
from stream_workers.alerts.lease import KafkaLease
from stream_workers.alerts.service import AlertService
from stream_workers.alerts.settings import AlertSettings
from tests.waiting import eventually

INTERVAL_S = 0.1


def _service(kafka_bootstrap: str, clickhouse: Client, topic: str, group: str) -> AlertService:
    lease = KafkaLease(kafka_bootstrap, Topics(prefix=f"{topic}-", partitions=1), topic, group,
                       session_timeout_s=6)
    evaluator = AlertEvaluator(lambda: clickhouse, AlertSettings(lag_s=0), close_client=False)
    return AlertService(evaluator, lease, INTERVAL_S)


def _settled(a: AlertService, b: AlertService) -> bool:
    """Both services are members of the same generation of the group, and one of them holds the lease.

    One holding it is not enough: right after the second member starts, the first holds the partition and
    the second holds nothing only because its join is still pending, and the rebalance that join brings may
    hand the lease to it. A member's generation is the group's once its join has been answered.
    """
    ca, cb = a.lease._consumer, b.lease._consumer
    if ca is None or cb is None or ca._coordinator is None or cb._coordinator is None:
        return False
    joined = ca._coordinator.generation == cb._coordinator.generation > 0
    return joined and len(ca.assignment() | cb.assignment()) == 1 and bool(ca.assignment()) != bool(cb.assignment())


async def test_one_of_two_workers_evaluates_and_the_other_takes_over_when_it_stops(
        kafka_bootstrap: str, clickhouse: Client) -> None:
    name = f"alerts-lease-{uuid.uuid4().hex[:8]}"
    a = _service(kafka_bootstrap, clickhouse, name, f"{name}-group")
    b = _service(kafka_bootstrap, clickhouse, name, f"{name}-group")
    await a.start()
    await b.start()
    stopped: list[AlertService] = []
    try:
        await eventually(lambda: a.ticks + b.ticks >= 5, timeout=60, what="one service to evaluate 5 times")
        # the group has settled once both are members of one generation: from then on only one of them may tick
        await eventually(lambda: _settled(a, b), timeout=60, what="the lease held by exactly one of two members")
        holder, other = (a, b) if a.lease._consumer and a.lease._consumer.assignment() else (b, a)
        before = other.ticks
        mark = holder.ticks
        await eventually(lambda: holder.ticks >= mark + 5, timeout=30, what="the holder to keep evaluating")
        assert other.ticks == before, "the worker without the lease evaluated"
        await holder.stop()
        stopped.append(holder)
        await eventually(lambda: other.ticks >= before + 3, timeout=60, what="the other worker to take over")
    finally:
        for service in (a, b):
            if service not in stopped:
                await service.stop()


async def test_negative_control_without_a_shared_lease_both_evaluate(kafka_bootstrap: str, clickhouse: Client) -> None:
    """Each in a group of its own (no shared lease), both hold a partition 0 and both evaluate."""
    name = f"alerts-lease-{uuid.uuid4().hex[:8]}"
    a = _service(kafka_bootstrap, clickhouse, name, f"{name}-a")
    b = _service(kafka_bootstrap, clickhouse, name, f"{name}-b")
    await a.start()
    await b.start()
    try:
        await eventually(lambda: a.ticks >= 3 and b.ticks >= 3, timeout=60, what="both services to evaluate")
    finally:
        await a.stop()
        await b.stop()
