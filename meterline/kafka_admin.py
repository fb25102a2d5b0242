"""Talking to Kafka as an administrator: create Meterline's topics, and ask whether a broker is ready.

``schemas.topics`` says which topics exist and how they are configured (data); this module is the
I/O that makes them exist. Every service creates what is missing when it starts (idempotent), so
no deployment step is needed, and ``meterline create-topics`` does it by hand.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from meterline.errors import InfrastructureError
from schemas.topics import Topics, TopicSpec

__all__ = ["create_topics", "group_probe_ids", "java_string_hash", "probe_kafka"]

#: CreateTopics answers: one created meanwhile by another service; more copies asked than brokers exist
_TOPIC_ALREADY_EXISTS: Final = 36
_INVALID_REPLICATION_FACTOR: Final = 38
#: how long a created topic may take to be served (a leader for every partition) before that is an error
_CREATED_VISIBLE_S: Final = 30.0


async def create_topics(bootstrap_servers: str, topics: Topics, replication_factor: int | None = None,
                        extra: list[TopicSpec] | None = None) -> list[str]:
    """Create missing topics; existing ones are left as they are. Returns the names created, once the broker
    serves them (a leader for every partition).

    Every topic gets ``replication_factor`` copies (default: the ``topics``' own, which the settings
    take from ``METERLINE_REPLICATION_FACTOR``) and the matching ``min.insync.replicas``. A topic the
    broker refuses raises ``InfrastructureError`` with the broker's reason; one created by another
    service meanwhile counts as existing.
    """
    if replication_factor:
        topics = replace(topics, replication_factor=replication_factor)
    factor = topics.replication_factor
    specs = topics.specs() + list(extra or [])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            response = await admin.create_topics([
                NewTopic(s.name, num_partitions=s.partitions, replication_factor=factor,
                         topic_configs=dict(s.config))
                for s in missing
            ])
            _raise_refusals(response.topic_errors, factor)
            await _wait_until_served(admin, {s.name: s.partitions for s in missing})
        return [s.name for s in missing]
    finally:
        await admin.close()


async def _wait_until_served(admin: AIOKafkaAdminClient, partitions: dict[str, int],
                             timeout: float = _CREATED_VISIBLE_S) -> None:
    """Return once the broker's metadata shows every topic in ``partitions`` with that many partitions, each
    with a leader. CreateTopics answers when the controller has made a topic, before every broker's metadata
    has it: a describe (or a first produce) in between sees the topic with no partitions."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(list(partitions))
        served = {d["topic"] for d in described if d["error_code"] == 0
                  and len(d["partitions"]) == partitions[d["topic"]]
                  and all(p["error_code"] == 0 and p["leader"] >= 0 for p in d["partitions"])}
        if served >= set(partitions):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise InfrastructureError(f"Kafka created {sorted(set(partitions) - served)} but does not serve "
                                      f"them {timeout:.0f} s later (no leader for every partition)")
        await asyncio.sleep(0.05)  # polls the broker's own metadata


def _raise_refusals(topic_errors: list[tuple[Any, ...]], factor: int) -> None:
    """Raise for the topics the broker refused (``(name, code[, message])`` per topic)."""
    refused = [(name, code, rest[0] if rest else None) for name, code, *rest in topic_errors
               if code not in (0, _TOPIC_ALREADY_EXISTS)]
    if refused:
        detail = "; ".join(f"{name}: error {code} {message or ''}".rstrip() for name, code, message in refused)
        hint = (" (METERLINE_REPLICATION_FACTOR must not exceed the number of brokers)"
                if any(code == _INVALID_REPLICATION_FACTOR for _, code, _ in refused) else "")
        raise InfrastructureError(f"Kafka refused to create topics with replication factor {factor}: "
                                  f"{detail}{hint}")


def group_probe_ids(partitions: int) -> list[str]:
    """Group ids whose coordinators sit on each of ``partitions`` partitions of ``__consumer_offsets``.

    Kafka places a group on partition ``abs(javaHashCode(group_id)) % partitions``.
    """
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        name = f"meterline-ready-{n}"
        h = java_string_hash(name)
        found.setdefault((0 if h == -(1 << 31) else abs(h)) % partitions, name)  # Kafka's Utils.abs
        n += 1
    return [found[p] for p in range(partitions)]


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (a signed 32-bit int over UTF-16 code units)."""
    data = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


#: FindCoordinator/DescribeGroups answers that mean "the group coordinator is not ready yet"
_COORDINATOR_NOT_READY: Final = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR


async def probe_kafka(bootstrap_servers: str, timeout: float = 5.0, offsets_partitions: int = 0) -> None:
    """Raise unless a broker at ``bootstrap_servers`` answers a metadata request.

    With ``offsets_partitions``, also unless the group coordinator of every partition of
    ``__consumer_offsets`` answers (a fresh broker creates that topic on the first group lookup;
    consumers that start before it is ready log ``Group Coordinator Request failed`` errors).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
        for group in group_probe_ids(offsets_partitions) if offsets_partitions else []:
            responses = await asyncio.wait_for(admin.describe_consumer_groups([group]), timeout)
            codes = {g[0] for r in responses for g in r.groups}
            if codes & _COORDINATOR_NOT_READY:
                raise InfrastructureError(f"the group coordinator of {group!r} is not ready (errors {codes})")
    finally:
        await admin.close()
