"""Fixtures for gateway integration tests: a gateway app on the session's real Kafka, API keys, readers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from gateway.keys.admin import create_key
from gateway.main import create_app
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings
from schemas.topics import Topics


def make_settings(bootstrap: str, topics: Topics, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {"kafka_bootstrap_servers": bootstrap, "topic_prefix": topics.prefix,
                              "partitions": topics.partitions, "produce_timeout": 3.0, "create_topics": False,
                              "operator_token": "op-secret-token", "drain_timeout": 5.0}
    values.update(overrides)
    return GatewaySettings(**values)


@pytest.fixture
def gw_settings(kafka_bootstrap: str, topics: Topics) -> GatewaySettings:
    return make_settings(kafka_bootstrap, topics)


@pytest.fixture
async def gateway(gw_settings: GatewaySettings) -> AsyncIterator[GatewayRuntime]:
    """A started gateway runtime (the app is ``runtime.app``)."""
    app = create_app(gw_settings)
    async with app.router.lifespan_context(app):
        runtime: GatewayRuntime = app.state.runtime
        runtime.app = app  # type: ignore[attr-defined]  # test convenience
        yield runtime


@pytest.fixture
async def client(gateway: GatewayRuntime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


async def new_key(runtime: GatewayRuntime, agent_id: str) -> str:
    """Create a key through the admin path and wait until the running registry has it."""
    raw, record = await create_key(runtime.settings.kafka_bootstrap_servers, runtime.topics.keys, agent_id)
    assert await runtime.registry.wait_for(lambda: runtime.registry.lookup_hash(record.key_sha256) is not None, 10)
    return raw


@pytest.fixture
async def agent_key(gateway: GatewayRuntime) -> str:
    return await new_key(gateway, "agent-1")


async def read_topic(bootstrap: str, topic: str, *, min_count: int = 0, timeout: float = 10.0,
                     settle: float = 0.5) -> list[Any]:
    """Every record of ``topic`` (from the beginning) once ``min_count`` arrived and nothing new came."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got = [m for msgs in batch.values() for m in msgs]
            if got:
                out += got
                quiet_since = time.monotonic()
            elif len(out) >= min_count and time.monotonic() - quiet_since >= settle:
                break
    finally:
        await consumer.stop()
    return out


def entry(i: int | str, **extra: Any) -> dict[str, Any]:
    return {"request_id": f"r-{i}", "method": "GET", "path": "/x", "status_code": 200, "response_ms": 1.5,
            **extra}

