"""The ```python examples of the GT8004 seed guide, extracted at test time and run unchanged."""

from __future__ import annotations

import ast
import asyncio
import re
from typing import Any

import httpx
import pytest
from gt8004 import GT8004Logger, RequestLogEntry

from tests.seeds import needs_seed, seed

from ._sink import Sink, serve_app

SEED = "gt8004-sdk-guide.ko.md"
pytestmark = needs_seed(SEED)  # skipped, with the reason, in a clone without the seed documents


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", seed(SEED).read_text(encoding="utf-8"), flags=re.S)


def block(marker: str) -> str:
    found = [b for b in python_blocks() if marker in b]
    assert len(found) == 1, f"expected one seed example containing {marker!r}, found {len(found)}"
    return found[0]


@pytest.fixture
def seed_env(sink: Sink, monkeypatch: pytest.MonkeyPatch) -> Sink:
    monkeypatch.setenv("GT8004_AGENT_ID", "seed-agent")
    monkeypatch.setenv("GT8004_API_KEY", "seed-key")
    monkeypatch.setenv("GT8004_INGEST_URL", sink.url)
    return sink


def test_fastapi_quick_start_example(seed_env: Sink) -> None:
    namespace: dict[str, Any] = {}
    exec(block("app.add_middleware(GT8004Middleware, logger=logger)"), namespace)  # noqa: S102 - the doc example
    port, served = serve_app(namespace["app"])
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/").json() == {"message": "Hello World"}
            assert client.post("/chat", json={"message": "안녕"}).status_code == 200
    finally:
        served.stop()  # runs the example's shutdown handler: logger.close() flushes
    by_path = {e["path"]: e for e in seed_env.entries}
    assert set(by_path) == {"/", "/chat"}
    assert by_path["/chat"]["method"] == "POST" and by_path["/chat"]["status_code"] == 200
    assert "안녕" in by_path["/chat"]["request_body"]
    assert {b["agent_id"] for b in seed_env.batches} == {"seed-agent"}


async def test_manual_logging_example(seed_env: Sink) -> None:
    namespace: dict[str, Any] = {}
    code = compile(block("from gt8004 import GT8004Logger, RequestLogEntry"), "<seed manual logging>", "exec",
                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # noqa: S307 - the doc example, top-level await
    if asyncio.iscoroutine(result):
        await result
    await namespace["logger"].close()
    (entry,) = seed_env.entries
    assert (entry["method"], entry["path"], entry["status_code"], entry["response_ms"]) == ("POST", "/api/chat",
                                                                                          200, 142.5)
    assert (entry["customer_id"], entry["tool_name"], entry["x402_amount"], entry["x402_tx_hash"]) == (
        "customer-123", "chat_completion", 0.05, "0xabc...")
    assert seed_env.batches[0]["agent_id"] == "your-agent-id"


def test_masking_example_and_configuration_examples(seed_env: Sink) -> None:
    from fastapi import FastAPI

    logger = GT8004Logger()
    app = FastAPI()

    @app.post("/login")
    async def login(body: dict[str, Any]) -> dict[str, str]:
        return {"ok": "yes"}

    namespace: dict[str, Any] = {"app": app, "logger": logger}
    exec(block("def mask_sensitive_data"), namespace)  # noqa: S102 - the doc example
    assert namespace["mask_sensitive_data"]('{"a":1}') == '{"a":1}'
    port, served = serve_app(app)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.post("/login", json={"user": "u"}).json() == {"ok": "yes"}
    finally:
        served.stop()
    assert asyncio.run(logger.flush())
    assert [e["path"] for e in seed_env.entries] == ["/login"]
    asyncio.run(logger.close())

    configs = [b for b in python_blocks() if b.lstrip().startswith("logger = GT8004Logger(")]
    assert len(configs) == 3  # parameters, development, production
    for source in configs:
        ns: dict[str, Any] = {"os": __import__("os"), "GT8004Logger": GT8004Logger}  # fragments: no imports
        exec(source, ns)  # noqa: S102 - the doc example
        assert isinstance(ns["logger"], GT8004Logger) and ns["logger"].enabled
        asyncio.run(ns["logger"].close())
    x402: dict[str, Any] = {"entry": RequestLogEntry("r", "GET", "/", 200, 1.0)}
    exec(block("entry.x402_amount = 0.05"), x402)  # noqa: S102 - the doc example
    assert x402["entry"].x402_amount == 0.05
