"""Usage limits through the real gateway over HTTP: an agent's key manages and checks its own limits only, the
operator any agent's; bodies are validated; the SDKs' cached check asks the gateway once per TTL.

One gateway (uvicorn, real Kafka key registry, the read API on a chDB database) serves every test here; a
pure-ASGI wrapper counts the check requests that reach it, so a cache hit is seen as a request not made.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import billing_sdk
import httpx
import pytest
import uvicorn
from clickhouse_connect.driver.client import Client
from gt8004 import GT8004Logger, LimitChecker

from gateway.keys.admin import create_key
from gateway.main import create_app
from meterline.kafka_admin import create_topics
from meterline.local.ports import free_port
from schemas.topics import Topics
from tests.integration.dashboards.limits_data import insert
from tests.integration.gateway.conftest import make_settings

OPERATOR = "op-secret-token"  # make_settings' operator token


@dataclass
class Gateway:
    base: str
    key_a: str
    key_b: str
    hits: collections.Counter[str]
    dsn: str

    def http(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def gateway(kafka_bootstrap: str, clickhouse_engine_dsn: str) -> Iterator[tuple[Gateway, Client]]:
    from meterline.clickhouse import get_client
    from meterline.migrations import apply_migrations
    from tests.conftest import with_database

    dsn = with_database(clickhouse_engine_dsn, f"t_{uuid.uuid4().hex[:12]}")
    client = get_client(dsn)
    apply_migrations(client)
    topics = Topics(prefix=f"l{uuid.uuid4().hex[:8]}.", partitions=1)
    asyncio.run(create_topics(kafka_bootstrap, topics))
    key_a, _ = asyncio.run(create_key(kafka_bootstrap, topics.keys, "agent-a"))
    key_b, _ = asyncio.run(create_key(kafka_bootstrap, topics.keys, "agent-b"))
    app = create_app(make_settings(kafka_bootstrap, topics, clickhouse_url=dsn))
    hits: collections.Counter[str] = collections.Counter()

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/limits/check"):
            hits[scope["path"]] += 1
        await app(scope, receive, send)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(counting, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="limits-gateway", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # ready: Kafka reachable and the key registry loaded (with the keys made above)
        assert thread.is_alive() and time.monotonic() < deadline, "gateway did not become ready"
        try:
            if server.started and httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    try:
        yield Gateway(base, key_a, key_b, hits, dsn), client
    finally:
        server.should_exit = True
        thread.join(30)
        client.command(f"DROP DATABASE IF EXISTS `{client.database}`")


def test_an_agent_sets_lists_checks_and_deletes_its_own_limits(gateway: tuple[Gateway, Client]) -> None:
    gw, client = gateway
    insert(client, [("agent-a", "llm", "gpt-4", 1500, "2026-01-10T00:00:00", "acme"),
                    ("agent-a", "llm", "gpt-4o", 1000, "2026-01-31T23:59:59.999", "globex"),
                    ("agent-a", "llm", "gpt-4", 3, "2026-02-01T00:00:00", "acme")])
    with gw.http(gw.key_a) as http:
        body = {"meter": "llm", "unit": "tokens", "period": "month", "limit": "1000", "customer_id": "acme"}
        first = http.post("/v1/agents/agent-a/limits", json=body)
        assert first.status_code == 201, first.text
        assert first.json()["created"] is True and first.json()["alert_secret"].startswith("whsec_")
        again = http.post("/v1/agents/agent-a/limits", json=body | {"limit": "2000"})
        assert again.status_code == 200 and again.json()["created"] is False and again.json()["alert_secret"] is None
        acme_id = again.json()["limit_id"]
        assert again.json()["limit_id"] == first.json()["limit_id"] and again.json()["limit"] == "2000"
        app_wide = http.post("/v1/agents/agent-a/limits", json={"meter": "llm", "period": "month", "limit": 5000})
        assert app_wide.status_code == 201 and app_wide.json()["scope"] == "app"

        def check(**params: Any) -> dict[str, Any]:
            resp = http.get("/v1/agents/agent-a/limits/check", params={"meter": "llm", **params})
            assert resp.status_code == 200, resp.text
            answer: dict[str, Any] = resp.json()
            return answer

        last_ms = "2026-01-31T23:59:59.999Z"
        over = check(unit="tokens", customer="acme", quantity="501", at=last_ms)
        assert (over["allowed"], over["limit_id"], over["limit"], over["used"], over["remaining"]) == (
            False, acme_id, "2000", 1500, "500")
        assert datetime.fromisoformat(over["period_end"]) == datetime(2026, 2, 1, tzinfo=UTC)  # when it resets
        assert check(customer="acme", quantity="500", at=last_ms)["allowed"] is True
        # the app's 5000 holds 2500 of everyone's: 2500 more, not 2501, for a customer without a limit of its own
        assert check(customer="initech", quantity="2500", at=last_ms)["allowed"] is True
        assert check(customer="initech", quantity="2501", at=last_ms)["allowed"] is False
        # usage stored now is in the next check: the rollup is written with the usage, nothing is cached
        insert(client, [("agent-a", "llm", "gpt-4", 500, "2026-01-31T23:00:00", "acme")])
        reached = check(customer="acme", quantity="1", at=last_ms)
        assert (reached["allowed"], reached["used"], reached["remaining"]) == (False, 2000, "0")
        feb = check(customer="acme", quantity="1997", at="2026-02-01T00:00:00Z")  # a new month: 3 used
        assert (feb["allowed"], feb["used"]) == (True, 3)

        listed = http.get("/v1/agents/agent-a/limits", params={"at": last_ms}).json()
        states = {s["limit_id"]: s for s in listed["limits"]}
        assert (states[acme_id]["used"], states[acme_id]["reached"]) == (2000, True)
        assert states[acme_id]["alert_rule_id"] == f"limit:{acme_id}" and states[acme_id]["alert_state"] == "ok"
        assert http.get(f"/v1/agents/agent-a/limits/{acme_id}").json()["limit"] == "2000"
        assert http.delete(f"/v1/agents/agent-a/limits/{acme_id}").status_code == 204
        assert http.get(f"/v1/agents/agent-a/limits/{acme_id}").status_code == 404
        assert http.delete(f"/v1/agents/agent-a/limits/{acme_id}").status_code == 404
        assert [s["limit_id"] for s in http.get("/v1/agents/agent-a/limits").json()["limits"]] == [
            app_wide.json()["limit_id"]]


def test_another_agents_key_is_refused_and_the_operator_may_manage_any(gateway: tuple[Gateway, Client]) -> None:
    gw, _ = gateway
    body = {"meter": "tts", "period": "day", "limit": "10"}
    with gw.http(gw.key_a) as as_a, gw.http(None) as anonymous, gw.http(OPERATOR) as operator:
        for method, path, kwargs in [("GET", "", {}), ("POST", "", {"json": body}),
                                     ("GET", "/check", {"params": {"meter": "tts"}}),
                                     ("GET", "/lim_00", {}), ("DELETE", "/lim_00", {})]:
            refused = as_a.request(method, f"/v1/agents/agent-b/limits{path}", **kwargs)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["detail"] == "this key belongs to agent 'agent-a', not 'agent-b'"
            assert anonymous.request(method, f"/v1/agents/agent-b/limits{path}", **kwargs).status_code == 401
        made = operator.post("/v1/agents/agent-b/limits", json=body)
        assert made.status_code == 201 and made.json()["agent_id"] == "agent-b"
        assert operator.get("/v1/agents/agent-b/limits/check", params={"meter": "tts"}).json()["limit"] == "10"
        with gw.http(gw.key_b) as as_b:  # the owner sees what the operator set
            assert [s["limit"] for s in as_b.get("/v1/agents/agent-b/limits").json()["limits"]] == ["10"]
        assert operator.delete(f"/v1/agents/agent-b/limits/{made.json()['limit_id']}").status_code == 204


@pytest.mark.parametrize("at", ["1969-12-31T23:59:59Z", "2149-05-01T00:00:00Z", "9999-12-31T23:59:59-01:00"])
def test_an_instant_the_rollups_cannot_hold_is_refused(gateway: tuple[Gateway, Client], at: str) -> None:
    gw, _ = gateway
    with gw.http(gw.key_a) as http:
        for path, params in (("/check", {"meter": "llm", "at": at}), ("", {"at": at})):
            resp = http.get(f"/v1/agents/agent-a/limits{path}", params=params)
            assert resp.status_code == 400 and "at " in resp.json()["detail"], resp.text


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"meter": "gpu", "period": "day", "limit": "1"}, 400, "no meter 'gpu'"),
    ({"meter": "llm", "unit": "seconds", "period": "day", "limit": "1"}, 400, "counts tokens, not 'seconds'"),
    ({"meter": "llm", "period": "week", "limit": "1"}, 422, "period"),
    ({"meter": "llm", "period": "day", "limit": 1.5}, 422, "limit"),  # a binary float is no exact quantity
    ({"meter": "llm", "period": "day", "limit": "1e6"}, 422, "limit"),
    ({"meter": "llm", "period": "day", "limit": "1" * 16}, 422, "limit"),
    ({"meter": "llm", "period": "day", "limit": "1", "customer_id": "c" * 257}, 422, "customer_id"),
    ({"meter": "llm", "period": "day", "limit": "1", "customer_id": ""}, 422, "customer_id"),
    ({"meter": "llm", "period": "day", "limit": "1", "webhook_url": "ftp://x"}, 422, "webhook_url"),
    ({"meter": "llm", "period": "day", "limit": "1", "owner": "x"}, 422, "owner"),
])
def test_bodies_are_validated(gateway: tuple[Gateway, Client], body: dict[str, Any], status: int, says: str) -> None:
    gw, _ = gateway
    with gw.http(gw.key_a) as http:
        resp = http.post("/v1/agents/agent-a/limits", json=body)
    assert resp.status_code == status and says in resp.text, resp.text


async def test_the_sdk_check_is_cached_and_never_raises(gateway: tuple[Gateway, Client]) -> None:
    gw, client = gateway
    now = datetime.now(UTC)
    soon = now + timedelta(minutes=1)
    with gw.http(gw.key_a) as http:
        made = http.post("/v1/agents/agent-a/limits", json={"meter": "asr", "period": "month", "limit": "100",
                                                            "customer_id": "sdk-cust"})
        assert made.status_code == 201
    usage = [("agent-a", "asr", "whisper", 60, now.strftime("%Y-%m-%dT%H:%M:%S"), "sdk-cust")]
    if soon.month != now.month:  # the checks below (at "now") may fall in the next month: it holds the same
        usage.append(("agent-a", "asr", "whisper", 60, soon.strftime("%Y-%m-01T00:00:00"), "sdk-cust"))
    insert(client, usage)
    path = "/v1/agents/agent-a/limits/check"
    before = gw.hits[path]
    logger = GT8004Logger(agent_id="agent-a", api_key=gw.key_a, ingest_url=f"{gw.base}/v1/ingest",
                          limit_cache_ttl=60)
    try:
        first = await logger.check_limit("asr", 40, customer="sdk-cust")
        assert (first.allowed, first.used, first.limit, first.remaining, first.cached) == (
            True, 60, Decimal(100), Decimal(40), False)
        assert first.resets_at is not None and first.resets_at.day == 1 and first.error is None
        second = await logger.check_limit("asr", 41, customer="sdk-cust")  # the cache, for another quantity
        assert (second.allowed, second.cached) == (False, True)
        assert gw.hits[path] == before + 1 and logger.limits.hits == 1
        other = await logger.check_limit("asr", 1, customer="nobody")  # another customer: a request
        assert other.allowed and other.limit is None and gw.hits[path] == before + 2
    finally:
        await logger.close()

    checker = billing_sdk.LimitChecker(gw.base, "agent-a", gw.key_a, ttl=60)
    try:
        results = await asyncio.gather(*(checker.check("asr", 41, customer="sdk-cust") for _ in range(5)))
        assert {r.allowed for r in results} == {False} and gw.hits[path] == before + 3  # one request, shared
    finally:
        await checker.aclose()

    # failures: a refused key and a gateway that is down decide by fail_open, and are not cached
    wrong = LimitChecker(gw.base, "agent-b", gw.key_a)
    down = LimitChecker(f"http://127.0.0.1:{free_port()}", "agent-a", gw.key_a, fail_open=False)
    try:
        refused = await wrong.check("asr", 1)
        assert refused.allowed is True and refused.error is not None and "403" in refused.error
        assert (await down.check("asr", 1)).allowed is False and down.errors == 1
        assert (await down.check("asr", 1)).cached is False and down.requests == 2
    finally:
        await wrong.aclose()
        await down.aclose()


def test_the_cli_sets_lists_checks_and_deletes_through_the_gateway_or_clickhouse(
        gateway: tuple[Gateway, Client], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from meterline_cli.main import main

    gw, client = gateway
    insert(client, [("agent-a", "tool", "*", 7, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "cli-cust")])
    remote = ["--gateway", gw.base, "--token", gw.key_a]
    assert main(["limits", "set", "--agent", "agent-a", "--meter", "tool", "--period", "day", "--limit", "7",
                 "--customer", "cli-cust", "--format", "json", *remote]) == 0
    made = json.loads(capsys.readouterr().out)[0]
    assert (made["limit"], made["used"], made["reached"], made["scope"]) == ("7", 7, True, "customer")
    assert main(["limits", "check", "--agent", "agent-a", "--meter", "tool", "--customer", "cli-cust", *remote]) == 1
    out = capsys.readouterr().out
    assert out.startswith("NOT allowed: customer 'cli-cust' of agent-a using 1 calls more of tool")
    assert f"deciding limit {made['limit_id']}: 7 of 7 used, 0 remaining" in out
    assert main(["limits", "check", "--agent", "agent-a", "--meter", "tool", "--quantity", "0",
                 "--customer", "cli-cust", *remote]) == 0
    # the same from ClickHouse directly (no gateway): the stack's engine is not held by another process
    monkeypatch.setenv("CLICKHOUSE_URL", gw.dsn)
    monkeypatch.delenv("METERLINE_GATEWAY_URL", raising=False)
    assert main(["limits", "list", "--agent", "agent-a"]) == 0
    table = capsys.readouterr().out
    assert made["limit_id"] in table and "cli-cust" in table
    # another agent's key: refused, and said so
    assert main(["limits", "list", "--agent", "agent-b", "--gateway", gw.base, "--token", gw.key_a]) == 2
    assert "may not read this: this key belongs to agent 'agent-a', not 'agent-b'" in capsys.readouterr().err
    assert main(["limits", "delete", "--agent", "agent-a", "--meter", "tool", "--period", "day",
                 "--customer", "cli-cust", *remote]) == 0
    assert f"deleted limit {made['limit_id']}" in capsys.readouterr().err
    assert main(["limits", "delete", "--agent", "agent-a", made["limit_id"]]) == 2  # directly: gone already
    assert "has no limit" in capsys.readouterr().err


async def test_the_sdk_readme_limit_examples_run(gateway: tuple[Gateway, Client]) -> None:
    """sdk/README.md's two limit examples, run as written against this gateway (its URL and agent put in)."""
    import ast
    import re
    from pathlib import Path

    from fastapi import HTTPException

    gw, _ = gateway
    with gw.http(gw.key_a) as http:
        assert http.post("/v1/agents/agent-a/limits", json={"meter": "llm", "period": "month", "limit": "1000",
                                                            "customer_id": "acme-corp"}).status_code in (200, 201)
    readme = (Path(__file__).resolve().parents[3] / "sdk" / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL) if "limit" in b]
    assert len(blocks) == 2, blocks
    logger = GT8004Logger(agent_id="agent-a", api_key=gw.key_a, ingest_url=f"{gw.base}/v1/ingest")
    try:
        for block in blocks:
            code = block.replace("http://localhost:9092", gw.base).replace('"app-1"', '"agent-a"')
            namespace: dict[str, Any] = {"key": gw.key_a, "logger": logger, "HTTPException": HTTPException}
            compiled = compile(code, "sdk/README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            with pytest.raises(HTTPException, match="monthly token limit reached") if "HTTPException" in code \
                    else contextlib.nullcontext():
                result = eval(compiled, namespace)  # noqa: S307 - our own README's example
                if result is not None:
                    await result
            decision = namespace["decision"]
            assert (decision.allowed, decision.limit, decision.error) == (False, Decimal(1000), None)
    finally:
        await logger.close()
