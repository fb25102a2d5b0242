"""``POST /v1/traces`` end to end with real parts: a FastAPI agent instrumented with OpenTelemetry's FastAPI (ASGI)
instrumentation and a real SDK ``TracerProvider`` exports through the real OTLP/HTTP exporter (configured as a user
configures it: ``OTEL_EXPORTER_OTLP_*`` variables, the key in ``OTEL_EXPORTER_OTLP_HEADERS``) to the gateway on a
real socket; the stream worker (processor + ClickHouse sink) and the read API run on the session's Kafka and chDB.

The rows are checked where a person reads them: the read API's stats, logs and usage.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client
from fastapi import FastAPI
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.keys.admin import create_key, revoke_key
from gateway.main import create_app
from gateway.runtime import GatewayRuntime
from meterline import faults
from meterline.clickhouse import get_client
from schemas.topics import Topics
from stream_workers.processor import Processor
from stream_workers.settings import WorkerSettings
from stream_workers.sink import ClickHouseSink
from tests.integration.gateway.conftest import make_settings
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)

OPERATOR = "op-secret-token"
PB = {"Content-Type": "application/x-protobuf"}


@dataclass
class Stack:
    url: str
    runtime: GatewayRuntime
    http: httpx.AsyncClient  # to the same gateway, for the read API

    async def key(self, agent_id: str) -> str:
        raw, record = await create_key(self.runtime.settings.kafka_bootstrap_servers, self.runtime.topics.keys,
                                       agent_id)
        assert await self.runtime.registry.wait_for(
            lambda: self.runtime.registry.lookup_hash(record.key_sha256) is not None, 10)
        return raw

    async def read(self, agent: str, view: str, **params: Any) -> Any:
        resp = await self.http.get(f"/v1/agents/{agent}/{view}", params=params,
                                   headers={"Authorization": f"Bearer {OPERATOR}"})
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def requests(self, agent: str) -> int:
        return int((await self.read(agent, "stats"))["total_requests"])

    async def usage(self, agent: str) -> dict[tuple[str, str], int]:
        """(meter, model) → tokens, from the agent's usage statement."""
        body = await self.read(agent, "usage", days=30)
        out: dict[tuple[str, str], int] = {}
        for line in body["lines"] + body["unpriced"]:
            key = (line.get("meter") or line.get("module"), line["model"])
            out[key] = out.get(key, 0) + int(line["quantity"])
        return out


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def stack(kafka_bootstrap: str, topics: Topics, clickhouse: Client, clickhouse_dsn: str,
                request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    overrides = getattr(request, "param", {})
    worker_settings = WorkerSettings(kafka_bootstrap_servers=kafka_bootstrap, clickhouse_url=clickhouse_dsn,
                                     topic_prefix=topics.prefix, partitions=topics.partitions, sink_batch_size=500,
                                     sink_interval_s=0.1, session_timeout_s=6)
    sink = ClickHouseSink(lambda: get_client(clickhouse_dsn), retry_max_s=0.5)
    assert await sink.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    processor = Processor(worker_settings, sink, producer)
    await processor.start()
    app = create_app(make_settings(kafka_bootstrap, topics, operator_token=OPERATOR, **overrides),
                     read_client=clickhouse)
    sock = _free_socket()
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    try:
        async with app.router.lifespan_context(app):
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            await eventually(lambda: server.started, 10, "uvicorn listening")
            host, port = sock.getsockname()
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
                yield Stack(f"http://{host}:{port}", app.state.runtime, http)
            server.should_exit = True
            await serving
    finally:
        sock.close()
        await processor.stop()
        await producer.stop()
        await sink.close()


# --- the agent: a FastAPI app instrumented with OpenTelemetry, no Meterline SDK ---------------------------


def agent_app(tracer: trace.Tracer) -> FastAPI:
    app = FastAPI()

    @app.get("/weather/{city}")
    async def weather(city: str) -> dict[str, str]:
        with tracer.start_as_current_span("execute_tool get_weather") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "get_weather")
        with tracer.start_as_current_span("chat gpt-4o", kind=trace.SpanKind.CLIENT) as chat:
            chat.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                                 "gen_ai.response.model": "gpt-4o", "gen_ai.usage.input_tokens": 100,
                                 "gen_ai.usage.output_tokens": 20, "gen_ai.provider.name": "openai"})
        trace.get_current_span().set_attribute("enduser.id", f"cust-{city}")
        return {"city": city, "forecast": "sunny"}

    @app.get("/fail")
    async def fail() -> None:
        from fastapi import HTTPException

        raise HTTPException(502, "upstream down")

    return app


@dataclass
class Agent:
    key: str
    provider: TracerProvider
    captured: InMemorySpanExporter
    http: httpx.AsyncClient

    def spans(self) -> Sequence[ReadableSpan]:
        return self.captured.get_finished_spans()

    async def flush(self) -> None:
        assert await asyncio.to_thread(self.provider.force_flush, 10_000)


@pytest.fixture
def otel_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter's configuration as a user writes it (the key comes with each agent)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{stack.url}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")


async def make_agent(key: str, monkeypatch: pytest.MonkeyPatch, service: str = "weather-agent",
                     ) -> AsyncIterator[Agent]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{key}")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    captured = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(captured))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # what a user's agent runs
    app = agent_app(provider.get_tracer("agent"))
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=["receive", "send"])
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent") as http:
            yield Agent(key, provider, captured, http)
    finally:
        await asyncio.to_thread(provider.shutdown)


@pytest.fixture
async def agent(stack: Stack, otel_env: None, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Agent]:
    async for made in make_agent(await stack.key("agent-otel"), monkeypatch):
        yield made


@pytest.mark.parametrize("dedupe", ["deduplicated", "no-dedupe"])
async def test_instrumented_agent_traffic_and_genai_usage_reach_the_dashboards_once(
        stack: Stack, agent: Agent, dedupe: str) -> None:
    """The rows and the usage appear in the read API; a replayed export counts once. Negative control: with the
    workers' dedupe switched off, the same replays count three times (the keys are what protects)."""
    with faults.arm("processor.no_dedupe", "on") if dedupe == "no-dedupe" else contextlib.nullcontext():
        await _traffic_then_replays(stack, agent, copies=1 if dedupe == "deduplicated" else 3)


async def _traffic_then_replays(stack: Stack, agent: Agent, copies: int) -> None:
    for city in ("paris", "oslo", "lima"):
        assert (await agent.http.get(f"/weather/{city}")).status_code == 200
    assert (await agent.http.get("/fail")).status_code == 502
    await agent.flush()

    await until(lambda: stack.requests("agent-otel"), 4, "4 requests in the stats")
    await until(lambda: stack.usage("agent-otel"), {("llm", "gpt-4o"): 360}, "the GenAI usage")
    statement = await stack.read("agent-otel", "statement")
    assert sorted((ln["customer_id"], ln["quantity"]) for ln in statement["lines"]) == [
        ("cust-lima", 120), ("cust-oslo", 120), ("cust-paris", 120)]  # the model call is its request's customer's
    logs = await stack.read("agent-otel", "logs", limit=10)
    rows = logs["logs"]
    seen = sorted((r["method"], r["path"], r["status_code"], r.get("tool_name") or "", r.get("customer_id") or "",
                   r.get("protocol")) for r in rows)
    assert seen == [("GET", "/fail", 502, "", "", "http"),
                    ("GET", "/weather/{city}", 200, "get_weather", "cust-lima", "http"),
                    ("GET", "/weather/{city}", 200, "get_weather", "cust-oslo", "http"),
                    ("GET", "/weather/{city}", 200, "get_weather", "cust-paris", "http")]

    # the same spans exported again (an exporter's retry, a collector's replay) count once: by the real
    # exporter, then once more as protobuf without gzip
    assert await asyncio.to_thread(OTLPSpanExporter().export, agent.spans()) == SpanExportResult.SUCCESS
    replay = await stack.http.post("/v1/traces", content=encode_spans(agent.spans()).SerializeToString(),
                                   headers={**PB, "Authorization": f"Bearer {agent.key}"})
    assert replay.status_code == 200, replay.text
    assert not ExportTraceServiceResponse.FromString(replay.content).HasField("partial_success")
    # a last request after the replays, on the same partitions (keyed by agent): once its request and usage are
    # stored, the replays were processed before them; a double count would never read exactly 5 and 480 (and
    # without dedupe, the expected 13 and 1200 are read only once every replay was counted)
    assert (await agent.http.get("/weather/rome")).status_code == 200
    await agent.flush()
    await until(lambda: stack.requests("agent-otel"), 4 * copies + 1, "the last request")
    await until(lambda: stack.usage("agent-otel"), {("llm", "gpt-4o"): 360 * copies + 120}, "the last request's usage")


async def until(read: Any, expected: Any, what: str, timeout: float = 30) -> None:
    """Poll the read API until ``read()`` gives ``expected`` (fails with the last value seen)."""
    seen: list[Any] = []

    async def check() -> bool:
        seen.append(await read())
        return bool(seen[-1] == expected)

    try:
        await eventually(check, timeout, what, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{what}: expected {expected!r}, last read {seen[-1:]!r}") from exc


def _json_export(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """OTLP's JSON mapping of ``spans`` (protobuf's JSON with hex trace and span ids)."""
    doc = json_format.MessageToDict(encode_spans(spans))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for name in ("traceId", "spanId", "parentSpanId"):
                    if name in sp:
                        sp[name] = base64.b64decode(sp[name]).hex()
    return doc


async def test_the_agent_is_the_keys_never_an_attribute_and_bad_keys_are_refused(
        stack: Stack, otel_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = await stack.key("agent-otel")
    # another agent's key, with every attribute naming the victim: the spans are that agent's own
    async for intruder in make_agent(await stack.key("agent-intruder"), monkeypatch, service="agent-otel"):
        assert (await intruder.http.get("/weather/x", headers={"x-agent-id": "agent-otel"})).status_code == 200
        await intruder.flush()
    await until(lambda: stack.requests("agent-intruder"), 1, "the intruder's own request")
    await until(lambda: stack.usage("agent-intruder"), {("llm", "gpt-4o"): 120}, "the intruder's own usage")

    revoked = await stack.key("agent-otel")
    await revoke_key(stack.runtime.settings.kafka_bootstrap_servers, stack.runtime.topics.keys, revoked[:16])
    assert await stack.runtime.registry.wait_for(lambda: _revoked(stack, revoked), 10)
    body = _export_bytes()
    async with httpx.AsyncClient(base_url=stack.url) as http:
        for key, status, code in ((None, 401, 16), ("ml_sk_" + "0" * 64, 401, 16), (revoked, 403, 7)):
            headers = {**PB, **({"Authorization": f"Bearer {key}"} if key else {})}
            resp = await http.post("/v1/traces", content=body, headers=headers)
            assert resp.status_code == status and resp.headers["content-type"] == "application/x-protobuf"
            assert resp.content[:2] == bytes([0x08, code])  # google.rpc.Status.code
            json_resp = await http.post("/v1/traces", content=b"{}", headers={
                "Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})})
            assert json_resp.status_code == status and json_resp.json()["code"] == code
    # the victim's key still works, and nothing was ever written as the victim
    async with httpx.AsyncClient(base_url=stack.url) as http:
        ok = await http.post("/v1/traces", content=b"{}", headers={"Content-Type": "application/json",
                                                                   "Authorization": f"Bearer {victim}"})
    assert ok.status_code == 200 and ok.json() == {}
    assert await stack.requests("agent-otel") == 0 and await stack.usage("agent-otel") == {}


def _revoked(stack: Stack, raw: str) -> bool:
    from gateway.keys import hash_key

    record = stack.runtime.registry.lookup_hash(hash_key(raw))
    return record is not None and record.status == "revoked"


def _export_bytes() -> bytes:
    provider = TracerProvider()
    captured = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(captured))
    with provider.get_tracer("t").start_as_current_span("GET /x", kind=trace.SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", "GET")
    return bytes(encode_spans(captured.get_finished_spans()).SerializeToString())


def _served(n: int, prefix: str) -> list[ReadableSpan]:
    provider = TracerProvider()
    captured = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(captured))
    tracer = provider.get_tracer("t")
    for i in range(n):
        with tracer.start_as_current_span(f"GET /{prefix}/{i}", kind=trace.SpanKind.SERVER) as span:
            span.set_attributes({"http.request.method": "GET", "http.route": f"/{prefix}/{i}",
                                 "http.response.status_code": 200})
    return list(captured.get_finished_spans())


async def test_hostile_and_broken_exports_are_refused_and_the_rest_of_a_batch_is_kept(stack: Stack) -> None:
    key = await stack.key("agent-otel")
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=stack.url) as http:
        async def post(content: bytes, content_type: str = "application/x-protobuf", **headers: str) -> httpx.Response:
            return await http.post("/v1/traces", content=content,
                                   headers={"Content-Type": content_type, **auth, **headers})

        refused = {
            "garbage protobuf": (await post(b"\x0a\xff\xff\xff\xff\x0f garbage"), 400),
            "malformed JSON": (await post(b'{"resourceSpans": [', "application/json"), 400),
            "not an export": (await post(b'{"resourceSpans": 5}', "application/json"), 400),
            "broken gzip": (await post(b"\x1f\x8b not gzip", **{"Content-Encoding": "gzip"}), 400),
            "gzip bomb": (await post(gzip.compress(b"\0" * (9 * 1024 * 1024)), **{"Content-Encoding": "gzip"}), 413),
            "unknown encoding": (await post(b"x", **{"Content-Encoding": "br"}), 415),
            "unknown content type": (await post(b"x", "text/plain"), 415),
            "too many spans": (await post(encode_spans(_served(1, "a") * 10_001).SerializeToString()), 413),
        }
        for what, (resp, status) in refused.items():
            assert resp.status_code == status, (what, resp.status_code, resp.text)
            assert resp.content[:1] == b"\x08" or resp.json()["code"] in (3,), what  # a google.rpc.Status
            assert "retry-after" not in resp.headers, what  # not retryable: exporters drop these

        # one JSON export: 3 good spans, one the schema refuses, one with an invalid id, one ending before it starts
        good = _served(3, "kept")
        doc = _json_export([*good, *_served(3, "bad")])
        spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
        spans[3]["startTimeUnixNano"] = {"not": "a number"}
        spans[4]["spanId"] = "zz" * 8
        spans[5]["endTimeUnixNano"] = "1"
        resp = await post(msgspec.json.encode(doc), "application/json")
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        partial = resp.json()["partialSuccess"]
        assert partial["rejectedSpans"] == "3"
        assert "not hex" in partial["errorMessage"] and "before" in partial["errorMessage"]
    # the exporter's other compression, deflate
    exporter = OTLPSpanExporter(endpoint=f"{stack.url}/v1/traces", headers=auth, compression=Compression.Deflate)
    assert await asyncio.to_thread(exporter.export, _served(2, "deflated")) == SpanExportResult.SUCCESS
    await until(lambda: stack.requests("agent-otel"), 5, "the good spans of the partly rejected export, deflated ones")
    logs = (await stack.read("agent-otel", "logs", limit=10))["logs"]
    assert sorted(r["path"] for r in logs) == ["/deflated/0", "/deflated/1", "/kept/0", "/kept/1", "/kept/2"]


@pytest.mark.parametrize("stack", [{"rate_limit": 0.2, "rate_burst": 2, "retry_after": 1}], indirect=True)
async def test_rate_limit_and_kafka_outage_answer_retryable_statuses_the_exporter_retries(
        stack: Stack, otel_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await stack.key("agent-otel")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{key}")
    body = _export_bytes()
    async with httpx.AsyncClient(base_url=stack.url) as http:
        answers = [await http.post("/v1/traces", content=body, headers={**PB, "Authorization": f"Bearer {key}"})
                   for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert int(answers[2].headers["retry-after"]) >= 1 and answers[2].content[:2] == b"\x08\x08"  # RESOURCE_EX.

    # Kafka unavailable to the gateway (its producer stopped): 503 + Retry-After, which the real exporter retries
    # (a second key: the first one's bucket is empty)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{await stack.key('agent-otel')}")
    await stack.runtime.producer.stop(0)
    exporter = OTLPSpanExporter(timeout=4)
    before = _exports(stack, "503")
    assert await asyncio.to_thread(exporter.export, _served(1, "outage")) == SpanExportResult.FAILURE
    assert _exports(stack, "503") - before >= 2  # answered 503 with Retry-After, tried again, refused again
    async with httpx.AsyncClient(base_url=stack.url) as http:
        resp = await http.post("/v1/traces", content=b"{}", headers={"Content-Type": "application/json",
                                                                     "Authorization": f"Bearer {key}"})
    assert resp.status_code in (429, 503) and resp.headers["retry-after"]


def _exports(stack: Stack, status: str) -> float:
    for metric in stack.runtime.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "meterline_gateway_otlp_exports_total" and sample.labels.get("status") == status:
                return float(sample.value)
    return 0.0
