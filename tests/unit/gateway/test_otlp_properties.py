"""Whatever bytes arrive, decoding and mapping an export either works or refuses it with ``IngestRefused``
(400/413): never another exception, which the route would answer with a 500.

Bodies are random bytes, random JSON, and real exports (made by the OpenTelemetry SDK's own encoder) with bytes
flipped, cut or inserted, and OTLP JSON with values swapped for random ones.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.errors import IngestRefused
from gateway.otlp.codec import decode_request
from gateway.otlp.mapping import map_spans
from tests.unit.gateway.test_otlp import _otlp_json


def _real_export() -> bytes:
    provider = TracerProvider(resource=Resource.create({"service.name": "svc", "enduser.id": "c"}))
    captured = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(captured))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("GET /x", kind=trace.SpanKind.SERVER) as server:
        server.set_attributes({"http.request.method": "GET", "http.route": "/x", "http.response.status_code": 200})
        with tracer.start_as_current_span("chat", kind=trace.SpanKind.CLIENT) as chat:
            chat.set_attributes({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 3,
                                 "gen_ai.usage.output_tokens": 4, "gen_ai.tool.name": "t"})
            chat.add_event("exception", {"exception.type": "ValueError"})
    return bytes(encode_spans(captured.get_finished_spans()).SerializeToString())


REAL = _real_export()
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
JSON_SETTINGS = settings(SETTINGS, max_examples=120)  # json_format is slow: fewer examples


def _decode_and_map(body: bytes, encoding: Any) -> None:
    try:
        request, _ = decode_request(body, encoding, max_spans=50)
    except IngestRefused as exc:
        assert exc.status_code in (400, 413)
        return
    out = map_spans(request, agent_id="a", key_sha256="k" * 64, customer_attributes=("enduser.id",),
                    ingested_at=1)
    assert all(u.app_id == "a" for u in out.usage)
    for entry in out.entries:  # what the workers would refuse never reaches Kafka
        msgspec.convert(msgspec.to_builtins(entry), type(entry))


@SETTINGS
@given(st.binary(max_size=600))
def test_random_protobuf_bytes(body: bytes) -> None:
    _decode_and_map(body, "protobuf")


@SETTINGS
@given(st.data())
def test_mutated_real_exports(data: st.DataObject) -> None:
    body = bytearray(REAL)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            body[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del body[at:at + data.draw(st.integers(1, 8))]
        else:
            body[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        if not body:
            break
    _decode_and_map(bytes(body), "protobuf")


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
                     | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                max_size=4), max_leaves=20)


@JSON_SETTINGS
@given(_JSON)
def test_random_json(doc: Any) -> None:
    _decode_and_map(msgspec.json.encode(doc), "json")


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += _paths(value, (*prefix, index))
    return out


REAL_JSON = _otlp_json(ExportTraceServiceRequest.FromString(REAL))
PATHS = _paths(REAL_JSON)[1:]


@JSON_SETTINGS
@given(st.sampled_from(PATHS), _JSON)
def test_otlp_json_with_a_value_replaced(path: tuple[Any, ...], value: Any) -> None:
    doc = msgspec.json.decode(msgspec.json.encode(REAL_JSON))
    holder = doc
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    _decode_and_map(msgspec.json.encode(doc), "json")
