"""The local Kafka broker is a real broker: produce, consume, restart with data kept."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from meterline.local.kafka import LocalKafka
from meterline.local.ports import free_port
from schemas.topics import Topics


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"agent-1")
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"g-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest")
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    got.extend(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return got


async def _create_topic(bootstrap: str, name: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()


async def test_produce_and_consume_roundtrip(kafka_bootstrap: str, topics: Topics) -> None:
    values = [f"event-{i}".encode() for i in range(100)]
    await _produce(kafka_bootstrap, topics.requests, values)
    got = await _consume(kafka_bootstrap, topics.requests, len(values))
    assert got == values  # one key -> one partition -> order kept


async def test_topics_have_declared_partitions_and_compaction(kafka_bootstrap: str, topics: Topics) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topics.requests, topics.keys])
        partitions = {d["topic"]: len(d["partitions"]) for d in described}
        assert partitions == {topics.requests: 3, topics.keys: 1}
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics.keys)])
        entries = {c[0]: c[1] for c in configs[0].resources[0][4]}
        assert entries["cleanup.policy"] == "compact"
    finally:
        await admin.close()


def test_broker_restart_keeps_data(kafka_process: LocalKafka) -> None:
    bootstrap = kafka_process.bootstrap_servers
    asyncio.run(_produce(bootstrap, "durable", [b"a", b"b", b"c"]))
    kafka_process.stop()
    assert not kafka_process.running
    kafka_process.start()
    assert asyncio.run(_consume(bootstrap, "durable", 3)) == [b"a", b"b", b"c"]


@pytest.mark.parametrize("wait_for_groups", [True, False], ids=["ready", "negative-control"])
async def test_a_fresh_broker_is_ready_for_consumer_groups(tmp_dir: Path, wait_for_groups: bool,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """`meterline up` printed `Group Coordinator Request failed` before its banner on a first start."""
    broker = LocalKafka(tmp_dir / "kafka", port=free_port(), controller_port=free_port(), heap="256m",
                        wait_for_groups=wait_for_groups)
    await asyncio.to_thread(broker.start)
    try:
        await _create_topic(broker.bootstrap_servers, "fresh")
        with caplog.at_level(logging.ERROR, logger="aiokafka"):
            await _produce(broker.bootstrap_servers, "fresh", [b"x"])
            assert await _consume(broker.bootstrap_servers, "fresh", 1) == [b"x"]
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        if wait_for_groups:
            assert errors == []
        else:  # without the wait, the first group lookup finds no coordinator yet
            assert any("Group Coordinator Request failed" in e for e in errors), errors
    finally:
        await asyncio.to_thread(broker.stop)
