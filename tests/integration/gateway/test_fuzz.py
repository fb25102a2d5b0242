"""Stateful fuzzing of everything the gateway serves over HTTP, from its own OpenAPI document.

The app is assembled as ``meterline gateway`` (with CLICKHOUSE_URL) and ``meterline up`` assemble
it: ``create_app`` with ``clickhouse_url`` (so with the read API), served by uvicorn, on the
session's real Kafka and a chDB database holding sample traffic of the key's agent. Schemathesis
walks the document's links (an ingest answer names the key's agent; a view's answer names its agent
and echoes its range) in bounded random sequences of calls, authenticated with a real API key and
the operator token, and checks every answer: no 5xx, the status is one the operation declares, the
body matches the declared schema and media type, and an operation that declares bearer auth refuses
the same call without credentials.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.keys.admin import create_key
from gateway.main import create_app
from gateway.settings import GatewaySettings
from meterline.kafka_admin import create_topics
from meterline.local.ports import free_port
from schemas.topics import Topics
from tests.integration.dashboards import sample
from tests.integration.gateway.conftest import make_settings

AGENT = "fuzz-agent"
OPERATOR = "op-secret-token"  # make_settings' operator token
#: Answers the run must have seen at least once (the test fails on coverage without them).
WANTED = (("POST /v1/ingest", 202), ("GET /v1/agents/{agent_id}/stats", 200),
          ("GET /v1/agents/{agent_id}/usage.csv", 200), ("POST /v1/sql", 200), ("GET /v1/statements", 200),
          ("POST /v1/ingest", 400))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance,
          ignored_auth]


@dataclass(frozen=True)
class Stack:
    base_url: str
    api_key: str

    def call_kwargs(self, case: Any) -> dict[str, Any]:
        return {"headers": {"Authorization": f"Bearer {self.token_for(case)}"}, "timeout": 30}

    def token_for(self, case: Any) -> str:
        """The API key for ingest and for the key's own agent, the operator token for ``/v1/sql`` and the
        statements of every app; for other agents mostly the operator token, sometimes the key (which
        must be refused with 403)."""
        if case.path == "/v1/sql" or case.path.startswith("/v1/statements"):
            return OPERATOR
        agent = (case.path_parameters or {}).get("agent_id")
        if agent is None or agent == AGENT:
            return self.api_key
        return self.api_key if zlib.crc32(str(agent).encode()) % 4 == 0 else OPERATOR


@pytest.fixture
def stack(kafka_bootstrap: str, clickhouse: Client, clickhouse_dsn: str) -> Iterator[Stack]:
    topics = Topics(prefix=f"f{uuid.uuid4().hex[:8]}.", partitions=1)
    asyncio.run(create_topics(kafka_bootstrap, topics))
    api_key, _ = asyncio.run(create_key(kafka_bootstrap, topics.keys, AGENT))
    now = datetime.now(UTC).replace(microsecond=0)
    sample.insert_requests(clickhouse, sample.make_requests([AGENT, "agent-other"], 300, seed=5, now=now))
    sample.insert_usage(clickhouse, sample.make_usage([AGENT], 100, seed=5, now=now - timedelta(days=1)))
    app = create_app(make_settings(kafka_bootstrap, topics, rate_limit=100_000, rate_burst=100_000,
                                   clickhouse_url=clickhouse_dsn))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="fuzz-gateway", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # ready: Kafka reachable and the key registry loaded (with the key made above)
        assert thread.is_alive() and time.monotonic() < deadline, "gateway did not become ready"
        try:
            if server.started and httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    try:
        yield Stack(base, api_key)
    finally:
        server.should_exit = True
        thread.join(30)


def test_stateful_fuzz_of_the_whole_http_surface(stack: Stack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
    operations = {op.label: op for op in (r.ok() for r in schema.get_all_operations())}
    assert {"POST /v1/ingest", "POST /v1/sql", "GET /v1/agents/{agent_id}/usage.csv",
            "GET /v1/agents/{agent_id}/stats", "GET /healthz"} <= set(operations)
    calls: list[tuple[str, int]] = []

    def check(case: Any, response: Any, kwargs: dict[str, Any], recorder: Any = None) -> None:
        calls.append((case.operation.label, response.status_code))
        case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs, recorder=recorder)

    class Gateway(schema.as_state_machine()):  # type: ignore[misc]  # schemathesis builds the class
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return stack.call_kwargs(case)

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            check(case, response, kwargs, self.recorder)

    # Sequences along the links: ingest -> the key's agent's views -> the same agent and range elsewhere.
    Gateway.run(settings=settings(max_examples=25, stateful_step_count=8, deadline=None, derandomize=True,
                                  phases=[Phase.generate], suppress_health_check=list(HealthCheck)))
    linked = set(Gateway._transitions.operations)
    assert "POST /v1/ingest" in linked and "GET /v1/agents/{agent_id}/logs" in linked, sorted(linked)

    # Operations the walk did not reach (no link leads to the operator's SQL, health, metrics; bounded
    # walks miss some linked ones as the surface grows), and ingest (the hot path) once more on its own:
    # the document's examples, then random calls.
    # So are the operations whose wanted answer (below) the walk did not get: the walk follows links
    # whose values come from answers (ranges echo the current time), so what it reaches varies by run.
    walked = {label for label, _ in calls}
    missed = {label for label, status in WANTED if (label, status) not in set(calls)}
    for label in sorted(set(operations) - walked | {"POST /v1/ingest"} | missed):
        operation = operations[label]

        # ingest, the hot path, gets more examples: enough to reach its refusals (400) as well as its 202s
        @settings(max_examples=40 if label == "POST /v1/ingest" else 15, deadline=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            kwargs = stack.call_kwargs(case)
            check(case, case.call(**kwargs), kwargs)

        call()

    # The walk's share of malformed ingest bodies varies with the document; one is always sent, and its
    # refusal (400, as documented) goes through the same checks.
    malformed = schema.make_case(operation=operations["POST /v1/ingest"], body={"entries": [{"request_id": 7}]},
                                 media_type="application/json")
    kwargs = stack.call_kwargs(malformed)
    check(malformed, malformed.call(**kwargs), kwargs)

    seen = collections.Counter(calls)
    assert set(operations) == {op for op, _ in seen}, sorted(seen.items())
    for wanted in WANTED:
        assert seen[wanted], (wanted, sorted(seen.items()))
    # Which views the walk reached with the key for another agent varies with the document, so every
    # agent view is asked once more for another agent's data with the key: each must refuse it (403)
    # before it reads anything, whatever the other parameters are.
    views = sorted(label.split(" ", 1)[1] for label in operations
                   if label.startswith("GET /v1/agents/{agent_id}/"))
    assert len(views) >= 10, views
    with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {stack.api_key}"},
                      timeout=30) as http:
        refused = {path: http.get(path.replace("{agent_id}", "agent-other")).status_code for path in views}
    assert set(refused.values()) == {403}, refused


@pytest.mark.parametrize("with_reads", [False, True])
def test_the_document_declares_bearer_auth_and_links_only_to_operations_it_serves(with_reads: bool) -> None:
    """A write-only gateway (no CLICKHOUSE_URL) documents no link to a read view it does not serve."""
    url = "chdb:///nonexistent?database=unused" if with_reads else None
    document = create_app(GatewaySettings(clickhouse_url=url)).openapi()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operation_ids = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    links = [link for item in document["paths"].values() for op in item.values()
             for answer in op["responses"].values() for link in answer.get("links", {}).values()]
    assert {link["operationId"] for link in links} <= operation_ids
    assert bool(links) == with_reads
    ingest = document["paths"]["/v1/ingest"]["post"]
    assert ingest["security"] == [{"bearer": []}] and bool(ingest["responses"]["202"].get("links")) == with_reads
    for path, item in document["paths"].items():
        if path.startswith("/v1/agents/") or path == "/v1/sql":
            assert all(op["security"] == [{"bearer": []}] for op in item.values()), path
