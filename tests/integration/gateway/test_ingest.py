"""POST /v1/ingest against real Kafka: 202 only after the ack, records as the workers expect them."""

from __future__ import annotations

import gzip

import httpx

from gateway.runtime import GatewayRuntime
from schemas.events import request_batch_decoder
from tests.integration.gateway.conftest import entry, read_topic


async def test_accepted_entries_are_in_kafka_keyed_by_agent(gateway: GatewayRuntime, client: httpx.AsyncClient,
                                                           agent_key: str) -> None:
    body = {"agentId": "agent-1", "sdkVersion": "0.3.0", "batchId": "b-1",
            "entries": [entry(1, tool_name="search"), {"requestId": "r-2", "method": "tools/call", "path": "/mcp",
                                                        "statusCode": 402, "responseMs": 3,
                                                        "x402Token": "USDC-base-mainnet"},
                        entry(3, status_code="200"), entry(4, source="sdk_ping")]}
    resp = await client.post("/v1/ingest", json=body, headers={"Authorization": f"Bearer {agent_key}"})
    assert resp.status_code == 202, resp.text
    data = resp.json()
    assert data["status"] == "accepted" and data["entries"] == 3
    assert [r["index"] for r in data["rejected"]] == [2]
    assert "status_code" in data["rejected"][0]["error"]
    assert "agent-1" in gateway.connections

    msgs = await read_topic(gateway.settings.kafka_bootstrap_servers, gateway.topics.requests, min_count=1)
    assert len(msgs) == 1
    assert msgs[0].key == b"agent-1"
    record = request_batch_decoder.decode(msgs[0].value)
    assert record.agent_id == "agent-1" and record.batch_id == "b-1" and record.sdk_version == "0.3.0"
    assert [e.request_id for e in record.entries] == ["r-1", "r-2"]
    assert record.entries[1].method == "tools/call" and record.entries[1].x402_token == "USDC-base-mainnet"
    assert record.entries[0].timestamp is not None and record.entries[0].timestamp.endswith("Z")
    assert agent_key.encode() not in msgs[0].value


async def test_gzip_and_big_bodies_are_truncated_not_refused(gateway: GatewayRuntime, client: httpx.AsyncClient,
                                                             agent_key: str) -> None:
    big = "é" * 20_000  # 40,000 UTF-8 bytes
    entries = [entry(i, request_body=big, response_body=big) for i in range(50)]
    payload = gzip.compress(httpx.Request("POST", "/", json={"entries": entries}).content)
    resp = await client.post("/v1/ingest", content=payload, headers={
        "Authorization": f"Bearer {agent_key}", "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["entries"] == 50
    msgs = await read_topic(gateway.settings.kafka_bootstrap_servers, gateway.topics.requests, min_count=1)
    stored = [e for m in msgs for e in request_batch_decoder.decode(m.value).entries]
    assert len(stored) == 50 and len({m.key for m in msgs}) == 1
    assert all(len(e.request_body.encode()) == 16 * 1024 for e in stored if e.request_body)
    assert all(e.request_body_size == 40_000 for e in stored)
