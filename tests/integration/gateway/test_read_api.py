"""The read API mounted in the real gateway app: owner auth through the real key registry."""

from __future__ import annotations

import httpx
from clickhouse_connect.driver.client import Client

from gateway.keys.admin import create_key
from gateway.main import create_app
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings
from schemas.topics import Topics
from tests.integration.dashboards import sample

OPERATOR = "dashboard-operator-token-42"


async def _key(runtime: GatewayRuntime, agent_id: str) -> str:
    raw, record = await create_key(runtime.settings.kafka_bootstrap_servers, runtime.topics.keys, agent_id)
    assert await runtime.registry.wait_for(lambda: runtime.registry.lookup_hash(record.key_sha256) is not None, 10)
    return raw


async def test_agent_reads_own_dashboard_only_and_operator_reads_all(
        clickhouse: Client, kafka_bootstrap: str, topics: Topics) -> None:
    reqs = sample.make_requests(["agent-a", "agent-b"], 300, seed=9)
    sample.insert_requests(clickhouse, reqs)
    settings = GatewaySettings(kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix,
                               partitions=topics.partitions, create_topics=False, operator_token=OPERATOR)
    app = create_app(settings, read_client=clickhouse)
    async with app.router.lifespan_context(app):
        runtime: GatewayRuntime = app.state.runtime
        key_a = await _key(runtime, "agent-a")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            own = await http.get("/v1/agents/agent-a/stats", headers={"Authorization": f"Bearer {key_a}"})
            assert own.status_code == 200
            assert own.json()["total_requests"] == len(sample.traffic(reqs, "agent-a"))
            other = await http.get("/v1/agents/agent-b/stats", headers={"Authorization": f"Bearer {key_a}"})
            assert other.status_code == 403
            assert other.json()["detail"] == "this key belongs to agent 'agent-a', not 'agent-b'"  # the holder's own
            assert (await http.get("/v1/agents/agent-b/tools")).status_code == 401
            forged = await http.get("/v1/agents/agent-a/logs", headers={"Authorization": "Bearer ml_sk_" + "0" * 64})
            assert forged.status_code == 401
            op = await http.get("/v1/agents/agent-b/stats", headers={"Authorization": f"Bearer {OPERATOR}"})
            assert op.status_code == 200 and op.json()["total_requests"] == len(sample.traffic(reqs, "agent-b"))
            page = await http.get("/dashboard/agent-a")
            assert page.status_code == 200 and key_a not in page.text

        # the agents list: an agent exists from its first key, so the operator sees one without traffic too
        await _key(runtime, "agent-new")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            listed = (await http.get("/v1/agents", headers={"Authorization": f"Bearer {OPERATOR}"})).json()["agents"]
            assert sorted(a["agent_id"] for a in listed) == ["agent-a", "agent-b", "agent-new"]
            assert next(a for a in listed if a["agent_id"] == "agent-new")["requests"] == 0
            own = (await http.get("/v1/agents", headers={"Authorization": f"Bearer {key_a}"})).json()["agents"]
            assert [a["agent_id"] for a in own] == ["agent-a"]
