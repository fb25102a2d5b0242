"""Alert rules through the real gateway over HTTP and through ``meterline alerts``: an agent's key manages its
own rules only, the operator any agent's; bodies are validated and bounded; a test delivery goes out signed
with the secret the creation answered, through the evaluator, and shows in the delivery log.

One gateway (uvicorn, real Kafka key registry, the read API on a chDB database) serves every test here.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from clickhouse_connect.driver.client import Client

from gateway.keys.admin import create_key
from gateway.main import create_app
from meterline.kafka_admin import create_topics
from meterline.local.ports import free_port
from meterline_cli.main import main
from schemas.alerts import SIGNATURE_HEADER, verify
from schemas.topics import Topics
from stream_workers.alerts.evaluator import AlertEvaluator
from stream_workers.alerts.settings import AlertSettings
from tests.integration.alerts.harness import Clock, Receiver
from tests.integration.gateway.conftest import make_settings

OPERATOR = "op-secret-token"  # make_settings' operator token


@dataclass
class Gateway:
    base: str
    key_a: str
    key_b: str
    client: Client

    def http(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def gw(kafka_bootstrap: str, clickhouse_engine_dsn: str) -> Iterator[Gateway]:
    from meterline.clickhouse import get_client
    from meterline.migrations import apply_migrations
    from tests.conftest import with_database

    dsn = with_database(clickhouse_engine_dsn, f"t_{uuid.uuid4().hex[:12]}")
    client = get_client(dsn)
    apply_migrations(client)
    topics = Topics(prefix=f"a{uuid.uuid4().hex[:8]}.", partitions=1)
    asyncio.run(create_topics(kafka_bootstrap, topics))
    key_a, _ = asyncio.run(create_key(kafka_bootstrap, topics.keys, "agent-a"))
    key_b, _ = asyncio.run(create_key(kafka_bootstrap, topics.keys, "agent-b"))
    app = create_app(make_settings(kafka_bootstrap, topics, clickhouse_url=dsn))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="alerts-gateway", daemon=True)
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
        time.sleep(0.05)  # polls readiness (the server offers no way to be told)
    try:
        yield Gateway(base, key_a, key_b, client)
    finally:
        server.should_exit = True
        thread.join(30)
        client.command(f"DROP DATABASE IF EXISTS `{client.database}`")


def test_an_agent_manages_its_own_rules_and_only_those(gw: Gateway) -> None:
    body = {"kind": "error_rate", "threshold": "0.05", "window_s": 300, "min_requests": 20, "name": "errors"}
    with gw.http(gw.key_a) as a, gw.http(gw.key_b) as b, gw.http(None) as anon, gw.http(OPERATOR) as op:
        created = a.post("/v1/agents/agent-a/alerts/rules", json=body | {"rule_id": "err"})
        assert created.status_code == 201, created.text
        assert created.json()["secret"].startswith("whsec_")
        assert created.json()["rule"] | {"created_at": None, "updated_at": None} == {
            "agent_id": "agent-a", "rule_id": "err", "kind": "error_rate", "name": "errors", "customer_id": "",
            "threshold": "0.05", "window_s": 300, "min_requests": 20, "meter": "", "model": "", "unit": "",
            "period": "day", "webhook_url": "", "created_at": None, "updated_at": None, "state": "ok",
            "state_since": None, "last_value": None}
        made = a.post("/v1/agents/agent-a/alerts/rules", json={"kind": "no_traffic"})
        assert made.status_code == 201 and made.json()["rule"]["rule_id"].startswith("r_")
        assert a.post("/v1/agents/agent-a/alerts/rules", json=body | {"rule_id": "err"}).status_code == 409
        assert [r["rule_id"] for r in a.get("/v1/agents/agent-a/alerts/rules").json()["rules"]] == sorted(
            ["err", made.json()["rule"]["rule_id"]])
        assert a.get("/v1/agents/agent-a/alerts/rules/err").json()["rule"]["threshold"] == "0.05"

        assert b.get("/v1/agents/agent-a/alerts/rules").status_code == 403
        assert b.post("/v1/agents/agent-a/alerts/rules", json=body).status_code == 403
        assert b.delete("/v1/agents/agent-a/alerts/rules/err").status_code == 403
        assert anon.get("/v1/agents/agent-a/alerts/rules").status_code == 401
        assert a.get("/v1/alerts/rules").status_code == 401  # every agent's: the operator's only
        assert {r["rule_id"] for r in op.get("/v1/alerts/rules").json()["rules"]} >= {"err"}
        assert op.post("/v1/agents/agent-b/alerts/rules", json=body).status_code == 201

        assert a.delete("/v1/agents/agent-a/alerts/rules/err").status_code == 204
        assert a.delete("/v1/agents/agent-a/alerts/rules/err").status_code == 404
        assert a.get("/v1/agents/agent-a/alerts/rules/err").status_code == 404


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"kind": "usage", "unit": "tokens", "threshold": "5"}, 400, "names its meter"),
    ({"kind": "usage", "meter": "llm", "unit": "seconds", "threshold": "5"}, 400, "counts 'tokens'"),
    ({"kind": "error_rate", "threshold": "2"}, 400, "fraction below 1"),
    ({"kind": "p95_latency", "threshold": "-3"}, 422, "threshold"),
    ({"kind": "cpu"}, 422, "kind"),
    ({"kind": "no_traffic", "window_s": 30}, 422, "window_s"),
    ({"kind": "no_traffic", "webhook_url": "javascript:alert(1)"}, 422, "webhook_url"),
    ({"kind": "no_traffic", "secret": "mine"}, 422, "secret"),
    ({"kind": "no_traffic", "name": "x" * 9000}, 413, "at most"),
])
def test_bodies_are_validated_and_bounded(gw: Gateway, body: dict[str, object], status: int, says: str) -> None:
    with gw.http(gw.key_a) as a:
        resp = a.post("/v1/agents/agent-a/alerts/rules", json=body)
    assert resp.status_code == status, resp.text
    assert says in resp.text


async def test_a_test_delivery_is_signed_with_the_secret_shown_at_creation(gw: Gateway) -> None:
    receiver = Receiver.reserve().listen()
    clock = Clock()
    evaluator = AlertEvaluator(lambda: gw.client, AlertSettings(lag_s=0, allow_private_urls=True), clock=clock,
                               close_client=False)
    try:
        async with httpx.AsyncClient(base_url=gw.base, headers={"Authorization": f"Bearer {gw.key_a}"}) as a:
            created = (await a.post("/v1/agents/agent-a/alerts/rules", json={
                "kind": "no_traffic", "rule_id": "quiet", "webhook_url": receiver.url})).json()
            queued = await a.post("/v1/agents/agent-a/alerts/rules/quiet/test")
            assert queued.status_code == 202 and queued.json()["transition"] == "test"
            assert (await a.post("/v1/agents/agent-a/alerts/rules/nope/test")).status_code == 404
            await evaluator.tick()
            assert [r.json["type"] for r in receiver.received] == ["alert.test"]
            got = receiver.received[0]
            assert verify(created["secret"], got.headers[SIGNATURE_HEADER], got.body, now=clock.now.timestamp())
            assert got.json["id"] == queued.json()["event_id"]
            log = (await a.get("/v1/agents/agent-a/alerts/deliveries", params={"rule_id": "quiet"})).json()
            assert [(d["attempt"], d["status_code"], d["outcome"]) for d in log["deliveries"]] == [
                (1, 200, "delivered")]
            events = (await a.get("/v1/agents/agent-a/alerts/events", params={"rule_id": "quiet"})).json()["events"]
            assert [e["transition"] for e in events] == ["test"]
    finally:
        await evaluator.close()
        receiver.close()


def test_the_cli_creates_lists_reads_and_deletes_through_the_gateway(gw: Gateway, capsys: pytest.CaptureFixture[str]
                                                                     ) -> None:
    remote = ["--gateway", gw.base, "--token", gw.key_a]
    assert main(["alerts", "create", "--agent", "agent-a", "--kind", "usage", "--meter", "llm", "--unit", "USD",
                 "--period", "month", "--threshold", "250", "--id", "spend", *remote]) == 0
    out, err = capsys.readouterr()
    assert "spend" in out and "usage" in out and "shown once): whsec_" in err
    assert main(["alerts", "list", "--agent", "agent-a", "--format", "json", *remote]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["rule_id"]: (r["unit"], r["threshold"], r["state"]) for r in listed}["spend"] == ("USD", "250", "ok")
    assert main(["alerts", "events", "--agent", "agent-a", "--rule", "spend", *remote]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["evaluated_at", "rule_id", "seq", "transition", "value",
                                                               "threshold", "event_id"]
    assert main(["alerts", "deliveries", "--agent", "agent-a", "--format", "json", "--rule", "spend", *remote]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["alerts", "delete", "spend", "--agent", "agent-a", *remote]) == 0
    capsys.readouterr()
    assert main(["alerts", "delete", "spend", "--agent", "agent-a", *remote]) == 2
    assert "404" in capsys.readouterr().err
    assert main(["alerts", "list", "--agent", "agent-a", "--gateway", gw.base, "--token", gw.key_b]) == 2
    assert "may not read this" in capsys.readouterr().err
