"""GT8004Middleware over a real FastAPI app (in-process ASGI); the ingest side is httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from gt8004 import GT8004Logger
from gt8004.middleware.fastapi import GT8004Middleware


class Captured:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        raw = request.content
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        body = orjson.loads(raw)
        self.entries.extend(body["entries"])
        return httpx.Response(202, json={"status": "accepted", "entries": len(body["entries"]), "rejected": []})


def _b64(data: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def make_app(**options: Any) -> tuple[FastAPI, GT8004Logger, Captured]:
    captured = Captured()
    logger = GT8004Logger("agent-1", "key-1", "http://sink/v1/ingest", flush_interval=60.0,
                          http_transport=httpx.MockTransport(captured.handler))
    app = FastAPI()
    app.add_middleware(GT8004Middleware, logger=logger, **options)

    @app.post("/chat")
    async def chat(message: dict[str, Any]) -> dict[str, Any]:
        return {"response": "ok", "echo": message}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/mcp")
    async def mcp(request: Request) -> dict[str, Any]:
        data = await request.json()
        return {"jsonrpc": "2.0", "id": data.get("id"), "result": {}}

    @app.get("/paid")
    async def paid() -> PlainTextResponse:
        settlement = _b64({"success": True, "transaction": "0xfeed", "network": "base-sepolia",
                           "payer": "0xpayer"})
        return PlainTextResponse("paid", headers={"X-PAYMENT-RESPONSE": settlement})

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    return app, logger, captured


async def call(app: FastAPI, method: str, path: str, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        return await client.request(method, path, **kw)


async def entries_of(logger: GT8004Logger, captured: Captured) -> list[dict[str, Any]]:
    assert await logger.flush()
    await logger.close()
    return captured.entries


async def test_http_request_fields_customer_and_redacted_headers() -> None:
    app, logger, captured = make_app()
    token = "h." + base64.urlsafe_b64encode(b'{"sub":"jwt-user"}').decode().rstrip("=") + ".sig"
    resp = await call(app, "POST", "/chat", json={"message": "hi", "password": "p"},
                      headers={"Authorization": f"Bearer {token}", "User-Agent": "ua/1",
                               "X-Forwarded-For": "203.0.113.9, 10.0.0.1", "Accept-Language": "ko",
                               "CF-IPCountry": "KR"})
    await call(app, "GET", "/health")
    await call(app, "POST", "/chat", json={"m": 1}, headers={"X-Customer-ID": "cust-7"})
    assert resp.status_code == 200
    first, second = await entries_of(logger, captured)
    assert (first["method"], first["path"], first["status_code"], first["protocol"]) == ("POST", "/chat", 200,
                                                                                         "http")
    assert first["customer_id"] == "jwt-user" and second["customer_id"] == "cust-7"
    assert json.loads(first["request_body"]) == {"message": "hi", "password": "p"}
    assert first["request_body_size"] == len(first["request_body"])
    assert json.loads(first["response_body"])["response"] == "ok"
    assert first["ip_address"] == "203.0.113.9" and first["user_agent"] == "ua/1"
    assert first["accept_language"] == "ko" and first["country"] == "KR"
    assert first["tool_name"] == "chat" and first["source"] == "sdk" and first["response_ms"] >= 0
    assert "authorization" not in first["headers"] and first["headers"]["user-agent"] == "ua/1"


async def test_mcp_tools_call_and_a2a_are_recognised() -> None:
    app, logger, captured = make_app()
    await call(app, "POST", "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                          "params": {"name": "search_web", "arguments": {"q": "x"}}})
    await call(app, "POST", "/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    await call(app, "POST", "/mcp", json={"jsonrpc": "2.0", "id": 3, "method": "message/send",
                                          "params": {"message": {"metadata": {"skillId": "translate"}}}})
    mcp_call, mcp_list, a2a = await entries_of(logger, captured)
    assert (mcp_call["protocol"], mcp_call["method"], mcp_call["tool_name"]) == ("mcp", "tools/call",
                                                                                 "search_web")
    assert (mcp_list["protocol"], mcp_list["method"]) == ("mcp", "tools/list")
    assert (a2a["protocol"], a2a["method"], a2a["tool_name"]) == ("a2a", "message/send", "translate")


async def test_x402_payment_headers() -> None:
    app, logger, captured = make_app()
    payment = _b64({"x402Version": 1, "scheme": "exact", "network": "base-sepolia",
                    "payload": {"signature": "0xsig", "authorization": {"from": "0xabc", "to": "0xdef",
                                                                        "value": "50000"}}})
    await call(app, "GET", "/paid", headers={"X-PAYMENT": payment})
    await call(app, "GET", "/health")
    (entry,) = await entries_of(logger, captured)
    assert entry["x402_amount"] == pytest.approx(0.05)
    assert (entry["x402_payer"], entry["x402_tx_hash"], entry["x402_token"]) == ("0xabc", "0xfeed",
                                                                                 "USDC-base-sepolia")
    assert "x-payment" not in entry["headers"]


async def test_bodies_capped_sanitized_and_sizes_in_full() -> None:
    app, logger, captured = make_app(sanitize_fn=lambda body: body.replace("secret", "***"))
    big = "secret " + "y" * 100_000
    await call(app, "POST", "/chat", json={"m": big})
    (entry,) = await entries_of(logger, captured)
    assert entry["request_body"].startswith('{"m":"*** yyy')
    assert len(entry["request_body"].encode()) <= 16 * 1024
    assert entry["request_body_size"] == len(json.dumps({"m": big}, separators=(",", ":")))
    assert entry["response_body_size"] > 100_000


async def test_failing_sanitizer_drops_the_body_not_the_request() -> None:
    def broken(body: str) -> str:
        raise ValueError("bug in user code")

    app, logger, captured = make_app(sanitize_fn=broken)
    resp = await call(app, "POST", "/chat", json={"m": "x"})
    assert resp.status_code == 200
    (entry,) = await entries_of(logger, captured)
    assert "request_body" not in entry and entry["request_body_size"] == len(b"{\"m\":\"x\"}")


async def test_excluded_paths_and_app_errors() -> None:
    app, logger, captured = make_app(exclude_paths=["/chat", "/mc*"])
    await call(app, "POST", "/chat", json={})
    await call(app, "POST", "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    await call(app, "GET", "/health")  # default exclusions replaced: logged now
    resp = await call(app, "GET", "/boom")
    assert resp.status_code == 500
    health, boom = await entries_of(logger, captured)
    assert health["path"] == "/health"
    assert (boom["status_code"], boom["error_type"]) == (500, "RuntimeError")


async def test_sdk_failure_never_reaches_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    app, logger, _ = make_app()

    def explode(*_a: Any, **_k: Any) -> bool:
        raise RuntimeError("sdk bug")

    monkeypatch.setattr(logger, "log_fields", explode)
    resp = await call(app, "POST", "/chat", json={"m": 1})
    assert resp.status_code == 200 and resp.json()["response"] == "ok"
    await logger.close()


async def test_streaming_passes_through_chunk_by_chunk_and_other_scopes_untouched() -> None:
    captured = Captured()
    logger = GT8004Logger("a", "k", "http://sink/v1/ingest", http_transport=httpx.MockTransport(captured.handler))
    first_chunk_out = asyncio.Event()
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["receive"], seen["send"] = receive, send
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"one ", "more_body": True})
        await asyncio.wait_for(first_chunk_out.wait(), 2.0)  # deadlocks if the middleware buffered
        await send({"type": "http.response.body", "body": b"two", "more_body": False})

    middleware = GT8004Middleware(app, logger=logger)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("body") == b"one ":
            first_chunk_out.set()

    scope = {"type": "http", "method": "GET", "path": "/stream", "headers": [], "client": ("127.0.0.1", 5)}
    await middleware(scope, receive, send)
    assert [m.get("body") for m in sent] == [None, b"one ", b"two"]
    for kind in ("websocket", "lifespan"):
        await middleware({"type": kind}, receive, send)
        assert seen["receive"] is receive and seen["send"] is send
    (entry,) = await entries_of(logger, captured)
    assert entry["response_body"] == "one two" and entry["response_body_size"] == 7


async def test_entries_are_already_within_the_gateway_limits() -> None:
    """The middleware clamps while it builds (``encode_clamped``); the general encoder
    (``encode_fields``) must find nothing left to cut, however long the client's headers are."""
    from gt8004._entry import MAX_HEADER_VALUE, MAX_HEADERS, STR_LIMITS, encode_fields

    app, logger, captured = make_app()
    huge = {"User-Agent": "u" * 5000, "Referer": "r" * 5000, "Accept-Language": "l" * 900,
            "X-Tool-Name": "t" * 900, "CF-IPCountry": "c" * 300, "X-City": "y" * 900,
            "X-Customer-ID": "i" * 900, "X-Forwarded-For": "9" * 300, "X-Big": "b" * 10_000,
            **{f"X-Extra-{i}": str(i) for i in range(80)}}
    await call(app, "POST", "/chat" + "/x" * 1500, content=b'{"m": 1}',
               headers={**huge, "Content-Type": "application/json; " + "p" * 900})
    await call(app, "POST", "/chat", json={"m": 2}, headers={"X-Big": "b" * 10_000})
    entries = await entries_of(logger, captured)
    assert len(entries) == 2
    for entry in entries:
        assert orjson.loads(encode_fields(dict(entry))) == entry  # nothing left for the general path
        for name, limit in STR_LIMITS.items():
            assert len(entry.get(name, "")) <= limit, name
        assert len(entry["headers"]) <= MAX_HEADERS
        assert max(map(len, entry["headers"].values())) <= MAX_HEADER_VALUE
    long_one = entries[0]
    assert long_one["user_agent"] == "u" * STR_LIMITS["user_agent"] and long_one["country"] == "c" * 64
    assert len(long_one["path"]) == STR_LIMITS["path"] and long_one["tool_name"] == "t" * 256
    assert entries[1]["headers"]["x-big"] == "b" * MAX_HEADER_VALUE
