"""Health, readiness, metrics, the OpenAPI document, routes added by an embedder and a draining shutdown."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter

from gateway.main import create_app
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings
from schemas.topics import Topics
from tests.integration.gateway.conftest import entry, make_settings, new_key, read_topic


async def test_health_ready_metrics(gateway: GatewayRuntime, client: httpx.AsyncClient, agent_key: str) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "kafka": True, "keys": True}
    await client.post("/v1/ingest", json={"entries": [entry(1), entry(2, method=""), entry(3, source="sdk_ping")]},
                      headers={"Authorization": f"Bearer {agent_key}"})
    text = (await client.get("/metrics")).text
    for line in ('meterline_gateway_requests_total{status="202"} 1.0',
                 'meterline_gateway_entries_total{outcome="accepted",reason=""} 1.0',
                 'meterline_gateway_entries_total{outcome="rejected",reason="method"} 1.0',
                 "meterline_gateway_sdk_pings_total 1.0",
                 'meterline_gateway_api_keys{status="active"} 1.0'):
        assert line in text, line
    assert 'meterline_gateway_kafka_produce_seconds_count{topic="' + gateway.topics.requests + '"} 1.0' in text


def test_openapi_documents_ingest_with_examples() -> None:
    doc = create_app(GatewaySettings()).openapi()
    post = doc["paths"]["/v1/ingest"]["post"]
    body = post["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"snake_case", "camelCase", "ping"}
    entry_schema = body["schema"]["properties"]["entries"]["items"]
    assert entry_schema["properties"]["method"]["maxLength"] == 32
    assert {"202", "400", "401", "403", "413", "429", "503"} <= set(post["responses"])
    assert {"/healthz", "/readyz", "/metrics"} <= set(doc["paths"])


async def test_routes_added_by_an_embedder_and_draining_shutdown(kafka_bootstrap: str, topics: Topics) -> None:
    extra = APIRouter()

    @extra.get("/v1/extra")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app = create_app(make_settings(kafka_bootstrap, topics, linger_ms=50))
    app.include_router(extra)
    runtime: GatewayRuntime = app.state.runtime
    await runtime.start()
    key = await new_key(runtime, "agent-d")
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                             headers={"Authorization": f"Bearer {key}"})
    assert (await http.get("/v1/extra")).json() == {"hello": "world"}
    calls = [asyncio.create_task(http.post("/v1/ingest", json={"entries": [entry(f"d{i}")]})) for i in range(30)]
    while runtime.producer.inflight == 0:
        await asyncio.sleep(0.001)
    await runtime.stop()  # while ingest calls wait on Kafka (linger 50 ms): they must finish, not fail
    results = await asyncio.gather(*calls)
    await http.aclose()
    assert [r.status_code for r in results] == [202] * 30
    msgs = await read_topic(kafka_bootstrap, topics.requests, min_count=30)
    assert len(msgs) == 30
