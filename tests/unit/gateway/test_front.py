"""The ingest front: which requests it serves, how it forwards the rest, one merged /metrics.

The upstream is a real HTTP server (uvicorn on a loopback port) standing in for the stack process at
the transport boundary; the ingest side is a recording ASGI app (its own tests are the gateway's).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from gateway.front import Front, merge_expositions
from gateway.metrics import GatewayMetrics
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings

BIG = b"0123456789abcdef" * 65_536  # 1 MiB, sent in chunks by the upstream


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/csv")]})
        for i in range(0, len(BIG), 65_536):
            await send({"type": "http.response.body", "body": BIG[i:i + 65_536], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    echo = {"method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode(),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]}, "body": body.decode(),
            "client": scope["client"][0] if scope.get("client") else None}
    payload = orjson.dumps(echo)
    await send({"type": "http.response.start", "status": 207,
                "headers": [(b"content-type", b"application/json"), (b"x-upstream", b"yes"),
                            (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(upstream_app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


class RecordingIngest:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"ingested"})


@pytest.fixture
async def front(upstream: str) -> AsyncIterator[tuple[Front, RecordingIngest, httpx.AsyncClient]]:
    ingest = RecordingIngest()
    app = Front(ingest, GatewayRuntime(GatewaySettings()), upstream, max_body_bytes=64 * 1024)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://meterline.test") as client:
        yield app, ingest, client


async def test_ingest_paths_are_served_by_the_front_itself(front: Any) -> None:
    _, ingest, client = front
    for path in ("/v1/ingest", "/v1/traces"):
        reply = await client.post(path, content=b"{}")
        assert (reply.status_code, reply.content) == (202, b"ingested")
    assert ingest.paths == ["/v1/ingest", "/v1/traces"]


async def test_other_requests_reach_the_stack_process_unchanged(front: Any) -> None:
    _, ingest, client = front
    reply = await client.post("/v1/sql?x=1&y=%20z", content=b'{"query": "SELECT 1"}',
                              headers={"Authorization": "Bearer tok", "X-Forwarded-For": "6.6.6.6",
                                       "Content-Type": "application/json"})
    assert reply.status_code == 207 and reply.headers["x-upstream"] == "yes"
    assert reply.headers.get_list("set-cookie") == ["a=1", "b=2"]
    echo = reply.json()
    assert (echo["method"], echo["path"], echo["query"], echo["body"]) == (
        "POST", "/v1/sql", "x=1&y=%20z", '{"query": "SELECT 1"}')
    assert echo["headers"]["authorization"] == "Bearer tok"
    # the caller's own X-Forwarded-For is replaced by the address the front saw
    assert echo["headers"]["x-forwarded-for"] == "203.0.113.7"
    assert echo["headers"]["host"] != "meterline.test"
    assert ingest.paths == []


async def test_a_large_answer_is_streamed_through_intact(front: Any) -> None:
    _, _, client = front
    reply = await client.get("/big")
    assert reply.status_code == 200 and reply.content == BIG


async def test_a_body_over_the_limit_is_refused_before_forwarding(front: Any) -> None:
    _, _, client = front
    reply = await client.post("/v1/alerts/rules", content=b"x" * (64 * 1024 + 1))
    assert reply.status_code == 413 and "65536" in reply.json()["detail"]


async def test_a_stack_process_that_is_not_up_yet_is_a_retryable_503() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    app = Front(RecordingIngest(), GatewayRuntime(GatewaySettings()), f"http://127.0.0.1:{port}",
                max_body_bytes=1024)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        reply = await client.get("/v1/agents/a/stats")
        ready = await client.get("/readyz")
    assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
    assert ready.status_code == 503 and ready.json()["stack"] == "unreachable"


def _exposition(requests: int, keys: int, produce: list[float]) -> str:
    metrics = GatewayMetrics()
    metrics.requests.labels("202").inc(requests)
    metrics.keys_loaded.labels("active").set(keys)
    for seconds in produce:
        metrics.produce_seconds.labels("meterline.requests").observe(seconds)
    return metrics.render().decode()


def test_one_scrape_adds_the_two_processes_series() -> None:
    front = _exposition(5, 3, [0.002, 0.2])
    stack = _exposition(2, 3, [0.004])
    merged = merge_expositions([front, stack]).decode()
    types = [line.split()[2] for line in merged.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(merged) for s in family.samples}
    assert samples[("meterline_gateway_requests_total", (("status", "202"),))] == 7
    assert samples[("meterline_gateway_kafka_produce_seconds_count", (("topic", "meterline.requests"),))] == 3
    bucket = ("meterline_gateway_kafka_produce_seconds_bucket", (("le", "0.005"), ("topic", "meterline.requests")))
    assert samples[bucket] == 2
    # both processes load every key: the count is the same key set, not twice it
    assert samples[("meterline_gateway_api_keys", (("status", "active"),))] == 3


def test_a_family_only_one_process_has_is_kept_as_it_is() -> None:
    worker = "# HELP meterline_worker_consumer_lag lag\n# TYPE meterline_worker_consumer_lag gauge\n" \
             'meterline_worker_consumer_lag{partition="0"} 12.0\n'
    merged = merge_expositions([_exposition(1, 1, []), worker]).decode()
    assert 'meterline_worker_consumer_lag{partition="0"} 12.0' in merged
    assert 'meterline_gateway_requests_total{status="202"} 1.0' in merged


async def test_a_scrape_while_the_stack_process_is_down_still_answers() -> None:
    app = Front(RecordingIngest(), GatewayRuntime(GatewaySettings()), "http://127.0.0.1:9", max_body_bytes=1024)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        reply = await client.get("/metrics")
    assert reply.status_code == 200 and "meterline_gateway_requests_total" in reply.text
