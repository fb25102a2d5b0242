"""Hostile input and auth against the real gateway: right status, clear message, nothing in Kafka."""

from __future__ import annotations

import gzip
import json
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, FastAPI

from gateway.deps import Principal, authorize_agent_access
from gateway.keys.admin import revoke_key
from gateway.keys.format import hash_key
from gateway.main import create_app
from gateway.runtime import GatewayRuntime
from schemas.topics import Topics
from tests.integration.gateway.conftest import entry, make_settings, new_key, read_topic
from tests.waiting import eventually


async def test_hostile_requests_get_clear_errors_and_nothing_reaches_kafka(
        gateway: GatewayRuntime, client: httpx.AsyncClient, agent_key: str) -> None:
    auth = {"Authorization": f"Bearer {agent_key}", "Content-Type": "application/json"}
    ok_body = json.dumps({"entries": [entry(1)]}).encode()
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        ("truncated json", b'{"entries": [{"request_id": "x"', auth, 400, "malformed JSON"),
        ("not json", b"hello", auth, 400, "malformed JSON"),
        ("wrong top type", b"[1,2]", auth, 400, "JSON object"),
        ("no entries", b'{"entries": []}', auth, 400, "no entries"),
        ("wrong entry types", json.dumps({"entries": [entry(1, status_code="ok", response_ms=[])]}).encode(),
         auth, 400, "no valid entry"),
        ("deep nesting", b'{"entries": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}", auth, 400, "nested"),
        ("lone surrogate", b'{"entries": [{"request_id": "\\udc00", "method": "GET"}]}', auth, 400, "JSON"),
        ("invalid utf-8", b'{"entries": [{"request_id": "\xc3\x28"}]}', auth, 400, "JSON"),
        ("huge body", b'{"entries": [' + b" " * (9 * 1024 * 1024) + b"]}", auth, 413, "split"),
        ("gzip bomb", gzip.compress(b" " * (40 * 1024 * 1024)), {**auth, "Content-Encoding": "gzip"}, 413,
         "decompression"),
        ("too many entries", json.dumps({"entries": [entry(i) for i in range(1001)]}).encode(), auth, 413,
         "1000"),
        ("missing key", ok_body, {"Content-Type": "application/json"}, 401, "missing API key"),
        ("basic auth", ok_body, {"Authorization": "Basic eDp5"}, 401, "missing API key"),
        ("forged key", ok_body, {"Authorization": "Bearer ml_sk_" + "a" * 64}, 401, "unknown API key"),
        ("malformed key", ok_body, {"Authorization": "Bearer ' OR 1=1 --"}, 401, "invalid API key"),
        ("other agent", json.dumps({"agent_id": "agent-2", "entries": [entry(1)]}).encode(), auth, 403,
         "does not match"),
    ]
    for name, body, headers, status, message in cases:
        resp = await client.post("/v1/ingest", content=body, headers=headers)
        assert resp.status_code == status, (name, resp.status_code, resp.text[:200])
        assert message in resp.json()["detail"], (name, resp.text[:200])
        if status == 401:
            assert resp.headers["www-authenticate"] == "Bearer"
    msgs = await read_topic(gateway.settings.kafka_bootstrap_servers, gateway.topics.requests, timeout=2)
    assert msgs == []
    metrics = (await client.get("/metrics")).text
    assert 'meterline_gateway_auth_failures_total{reason="unknown_key"} 2.0' in metrics
    assert 'meterline_gateway_requests_total{status="413"} 3.0' in metrics


async def test_unicode_edge_cases_are_kept_intact(gateway: GatewayRuntime, client: httpx.AsyncClient,
                                                  agent_key: str) -> None:
    odd = "nul\u0000 bom\ufeff rtl\u202e 😀 e\u0301"
    resp = await client.post("/v1/ingest", json={"entries": [entry(1, path="/" + odd, request_body=odd)]},
                             headers={"Authorization": f"Bearer {agent_key}"})
    assert resp.status_code == 202, resp.text
    msgs = await read_topic(gateway.settings.kafka_bootstrap_servers, gateway.topics.requests, min_count=1)
    assert json.loads(msgs[0].value)["entries"][0]["request_body"] == odd


async def test_revocation_reaches_a_running_gateway_within_seconds(gateway: GatewayRuntime,
                                                                   client: httpx.AsyncClient) -> None:
    key = await new_key(gateway, "agent-r")
    headers = {"Authorization": f"Bearer {key}"}
    assert (await client.post("/v1/ingest", json={"entries": [entry(1)]}, headers=headers)).status_code == 202
    await revoke_key(gateway.settings.kafka_bootstrap_servers, gateway.topics.keys, key[:12])
    record = lambda: gateway.registry.lookup_hash(hash_key(key))  # noqa: E731
    await eventually(lambda: record() is not None and record().status == "revoked", timeout=5)  # type: ignore[union-attr]
    resp = await client.post("/v1/ingest", json={"entries": [entry(2)]}, headers=headers)
    assert resp.status_code == 403 and resp.json()["detail"] == "API key has been revoked"


async def test_per_key_rate_limit_429_with_retry_after(kafka_bootstrap: str, topics: Topics) -> None:
    app = create_app(make_settings(kafka_bootstrap, topics, rate_limit=0.5, rate_burst=2))
    async with app.router.lifespan_context(app):
        runtime: GatewayRuntime = app.state.runtime
        key_a, key_b = await new_key(runtime, "agent-a"), await new_key(runtime, "agent-b")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            codes = [(await http.post("/v1/ingest", json={"entries": [entry(i)]},
                                      headers={"Authorization": f"Bearer {key_a}"})) for i in range(3)]
            assert [r.status_code for r in codes] == [202, 202, 429]
            assert codes[2].headers["retry-after"] == "2" and "rate limit" in codes[2].json()["detail"]
            other = await http.post("/v1/ingest", json={"entries": [entry(9)]},
                                    headers={"Authorization": f"Bearer {key_b}"})
            assert other.status_code == 202


async def test_operator_token_and_owner_access(gateway: GatewayRuntime, agent_key: str) -> None:
    router = APIRouter()

    @router.get("/v1/agents/{agent_id}/whoami")
    async def whoami(agent_id: str, principal: Annotated[Principal, Depends(authorize_agent_access)]
                     ) -> dict[str, object]:
        return {"operator": principal.operator}

    app = FastAPI()
    app.state.runtime = gateway
    app.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        async def get(agent: str, token: str | None) -> httpx.Response:
            return await http.get(f"/v1/agents/{agent}/whoami",
                                  headers={"Authorization": f"Bearer {token}"} if token else {})
        assert (await get("agent-1", agent_key)).json() == {"operator": False}
        assert (await get("agent-2", agent_key)).status_code == 403
        assert (await get("agent-2", "op-secret-token")).json() == {"operator": True}
        assert (await get("agent-2", "op-secret-tokeN")).status_code == 401
        assert (await get("agent-2", None)).status_code == 401
