"""Contract check: what the SDK sends is accepted by the real gateway (real Kafka underneath).

Entries from the middleware (MCP tools/call, x402 headers, long headers) and from ``log`` (a
30 000-byte body) must all be accepted — none listed in ``rejected`` — and ``verify_connection``
must succeed. The full stack end to end (workers, ClickHouse, dashboards) is tested in tests/e2e.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, Request
from gt8004 import GT8004Logger, RequestLogEntry
from gt8004.middleware.fastapi import GT8004Middleware

from gateway.keys.admin import create_key
from gateway.main import create_app
from gateway.settings import GatewaySettings
from schemas.topics import Topics

from ._sink import serve_app


async def _records(bootstrap: str, topic: str, want: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    entries: list[dict[str, Any]] = []
    try:
        for _ in range(50):
            batch = await consumer.getmany(timeout_ms=200)
            for message in (m for msgs in batch.values() for m in msgs):
                entries += orjson.loads(message.value)["entries"]
            if len(entries) >= want:
                break
    finally:
        await consumer.stop()
    return entries


async def test_sdk_batches_are_accepted_by_the_real_gateway(kafka_bootstrap: str, topics: Topics) -> None:
    settings = GatewaySettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix,
                               partitions=topics.partitions, create_topics=False, produce_timeout=3.0)
    gateway = create_app(settings)
    port, served = serve_app(gateway)  # uvicorn runs the gateway's lifespan
    try:
        runtime = gateway.state.runtime
        raw_key, record = await create_key(kafka_bootstrap, topics.keys, "agent-contract")
        assert await runtime.registry.wait_for(
            lambda: runtime.registry.lookup_hash(record.key_sha256) is not None, 10)
        drops: list[tuple[int, str]] = []
        logger = GT8004Logger("agent-contract", raw_key, f"http://127.0.0.1:{port}/v1/ingest",
                              on_drop=lambda n, why: drops.append((n, why)))
        assert await logger.verify_connection()

        app = FastAPI()
        app.add_middleware(GT8004Middleware, logger=logger)

        @app.post("/mcp")
        async def mcp(request: Request) -> dict[str, Any]:
            data = await request.json()
            return {"jsonrpc": "2.0", "id": data.get("id"), "result": {}}

        @app.get("/paid")
        async def paid() -> dict[str, int]:
            return {"ok": 1}

        payment = base64.b64encode(json.dumps({"network": "base-mainnet", "payload": {
            "authorization": {"from": "0xabc", "value": "1000"}}}).encode()).decode()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent") as client:
            await client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                            "params": {"name": "search"}}, headers={"X-Customer-ID": "cu-1"})
            await client.get("/paid", headers={"X-PAYMENT": payment, "User-Agent": "u" * 3000,
                                               "X-Forwarded-For": "203.0.113.5"})
        await logger.log(RequestLogEntry("manual-1", "POST", "/api/chat", 200, 142.5, request_body="가" * 10_000,
                                         x402_amount=0.05, x402_tx_hash="0xabc..."))
        assert await logger.flush()
        stats = logger.stats()
        await logger.close()
        assert (stats.delivered, stats.rejected, drops) == (3, 0, [])
        entries = await asyncio.wait_for(_records(kafka_bootstrap, topics.requests, 3), 20)
        by_path = {e["path"]: e for e in entries if e.get("source") == "sdk"}
        assert by_path["/mcp"]["method"] == "tools/call" and by_path["/mcp"]["tool_name"] == "search"
        assert by_path["/paid"]["x402_payer"] == "0xabc" and by_path["/paid"]["x402_token"] == "USDC-base-mainnet"
        assert by_path["/api/chat"]["request_body_size"] == 30_000
    finally:
        served.stop()
