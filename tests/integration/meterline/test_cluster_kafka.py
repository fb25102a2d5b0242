"""The topics' replication factor comes from METERLINE_REPLICATION_FACTOR and reaches the broker.

The session broker is a single node, so it must refuse 3 copies: that refusal, surfaced with the
setting's name instead of being dropped, is what shows the factor is sent; the same settings with
factor 1 create the topics with min.insync.replicas 1. (On deploy/cluster/'s three brokers the
factor is 3 and min.insync.replicas 2; test_cluster_compose.py checks that configuration.)
"""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from meterline.errors import InfrastructureError
from meterline.kafka_admin import create_topics
from meterline.settings import StackSettings


async def _topic_configs(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        return {resource[3]: {entry[0]: entry[1] for entry in resource[4]}
                for response in responses for resource in response.resources}
    finally:
        await admin.close()


async def _existing(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.parametrize("factor", [1, 3])
async def test_the_setting_decides_the_copies_a_topic_gets(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch,
                                                         factor: int) -> None:
    monkeypatch.setenv("METERLINE_REPLICATION_FACTOR", str(factor))
    monkeypatch.setenv("METERLINE_TOPIC_PREFIX", f"rf{uuid.uuid4().hex[:8]}.")
    topics = StackSettings().topics
    assert topics.replication_factor == factor
    names = [spec.name for spec in topics.specs()]
    if factor > 1:  # more copies than this one broker can hold: refused, by name, with the setting to fix
        with pytest.raises(InfrastructureError, match=r"replication factor 3: .*METERLINE_REPLICATION_FACTOR"):
            await create_topics(kafka_bootstrap, topics)
        assert not set(names) & await _existing(kafka_bootstrap)
        return
    assert sorted(await create_topics(kafka_bootstrap, topics)) == sorted(names)
    configs = await _topic_configs(kafka_bootstrap, names)
    assert {name: configs[name]["min.insync.replicas"] for name in names} == dict.fromkeys(names, "1")
    assert await create_topics(kafka_bootstrap, topics) == []  # idempotent: existing topics are left alone
