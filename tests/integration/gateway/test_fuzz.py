"""Fuzz the gateway from its own OpenAPI document (schemathesis) against uvicorn + real Kafka: no 5xx."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings

from gateway.keys.admin import create_key
from gateway.main import create_app
from gateway.settings import GatewaySettings
from meterline.local.ports import free_port
from schemas.topics import Topics, create_topics
from tests.integration.gateway.conftest import make_settings


@pytest.fixture(scope="module")
def live_gateway(kafka_bootstrap: str) -> Iterator[tuple[str, str]]:
    """A real uvicorn-served gateway in a thread: (base URL, a valid key)."""
    topics = Topics(prefix=f"f{uuid.uuid4().hex[:8]}.", partitions=1)
    asyncio.run(create_topics(kafka_bootstrap, topics))
    raw, _ = asyncio.run(create_key(kafka_bootstrap, topics.keys, "fuzz-agent"))
    port = free_port()
    app = create_app(make_settings(kafka_bootstrap, topics, rate_limit=100_000, rate_burst=100_000))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", raw
    server.should_exit = True
    thread.join(30)


# The document the app serves (create_app needs no services to build it); requests go to the live one.
# (schemathesis.pytest.from_fixture fails under pytest 9: "'Function' object has no attribute '_nodeid'".)
schema = schemathesis.openapi.from_dict(create_app(GatewaySettings()).openapi())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors(case: Any, live_gateway: tuple[str, str]) -> None:
    base_url, key = live_gateway
    for headers in ({"Authorization": f"Bearer {key}"}, {}):
        response = case.call(base_url=base_url, headers=headers)
        assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
