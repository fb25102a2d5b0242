"""OTLP decoding and the span mapping, without I/O: what each kind of span becomes, and what is refused."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from gateway.errors import IngestRefused
from gateway.otlp.codec import decode_request, encode_response, encode_status, encoding_of
from gateway.otlp.mapping import map_spans

T0 = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z in ns
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


def _value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def span(span_id: int, kind: int = Span.SPAN_KIND_SERVER, ms: float = 12.5, parent: int = 0,
         status: int = Status.STATUS_CODE_UNSET, **attrs: Any) -> Span:
    return Span(trace_id=TRACE, span_id=span_id.to_bytes(8, "big"),
                parent_span_id=parent.to_bytes(8, "big") if parent else b"", name="GET /weather", kind=kind,
                start_time_unix_nano=T0, end_time_unix_nano=T0 + int(ms * 1e6), status=Status(code=status),
                attributes=[KeyValue(key=k.replace("__", "."), value=_value(v)) for k, v in attrs.items()])


def export(*spans: Span, **resource: Any) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(KeyValue(key=k.replace("__", "."), value=_value(v)) for k, v in resource.items())
    rs.scope_spans.add().spans.extend(spans)
    return request


def mapped(request: ExportTraceServiceRequest, customers: tuple[str, ...] = ("meterline.customer_id", "enduser.id")):
    return map_spans(request, agent_id="agent-1", key_sha256="k" * 64, customer_attributes=customers,
                     ingested_at=T0 // 1_000_000 + 5000)


def test_a_server_span_becomes_a_request_log_entry_like_ingest_makes() -> None:
    out = mapped(export(span(1, http__request__method="POST", http__route="/tools/{name}", url__path="/tools/x",
                             http__response__status_code=201, enduser__id="cust-9",
                             user_agent__original="curl/8")))
    assert out.rejected == [] and out.usage == [] and out.spans == 1
    (entry,) = out.entries
    assert entry.request_id == f"otel-{TRACE.hex()}-0000000000000001"
    assert (entry.method, entry.path, entry.status_code, entry.response_ms) == ("POST", "/tools/{name}", 201, 12.5)
    assert entry.timestamp == "2025-11-24T16:00:00.000Z"
    assert (entry.customer_id, entry.protocol, entry.source, entry.user_agent) == ("cust-9", "http", "otlp", "curl/8")


def test_old_semantic_conventions_and_span_status_give_method_path_and_status() -> None:
    out = mapped(export(span(1, http__method="GET", http__target="/a?q=secret"),
                        span(2, status=Status.STATUS_CODE_ERROR, http__method="GET", http__target="/b")))
    assert [(e.method, e.path, e.status_code) for e in out.entries] == [("GET", "/a", 200), ("GET", "/b", 500)]


def test_mcp_server_span_is_an_mcp_request_with_its_tool() -> None:
    out = mapped(export(span(1, mcp__method__name="tools/call", gen_ai__tool__name="search",
                             meterline__customer_id="c1", enduser__id="ignored")))
    (entry,) = out.entries
    assert (entry.method, entry.protocol, entry.tool_name, entry.customer_id) == ("tools/call", "mcp", "search", "c1")


def test_client_and_plain_internal_spans_are_accepted_but_not_traffic() -> None:
    out = mapped(export(span(1, kind=Span.SPAN_KIND_CLIENT, http__request__method="POST"),
                        span(2, kind=Span.SPAN_KIND_INTERNAL),
                        span(3, kind=Span.SPAN_KIND_INTERNAL, http__request__method="GET")))
    assert [e.request_id[-1] for e in out.entries] == ["3"]
    assert out.ignored == 2 and out.rejected == []


def test_genai_span_becomes_priced_usage_in_and_out_per_model() -> None:
    out = mapped(export(span(7, kind=Span.SPAN_KIND_CLIENT, ms=800, gen_ai__operation__name="chat",
                             gen_ai__request__model="gpt-4o", gen_ai__response__model="gpt-4o-2024-08-06",
                             gen_ai__usage__input_tokens=120, gen_ai__usage__output_tokens=30,
                             gen_ai__provider__name="openai"), meterline__customer_id="res-cust"))
    assert out.entries == []
    inp, outp = out.usage
    assert (inp.app_id, inp.module, inp.model, inp.usage, inp.key_sha256) == (
        "agent-1", "llm", "gpt-4o-2024-08-06", 120, "k" * 64)
    assert outp.usage == 30
    assert inp.report_id == f"otel-{TRACE.hex()}-0000000000000007-in"
    assert outp.report_id.endswith("-out")
    assert inp.timestamp == (T0 + 800_000_000) // 1_000_000  # when the tokens were spent: the span's end
    assert inp.metadata == {"source": "otlp", "trace_id": TRACE.hex(), "span_id": "0000000000000007",
                            "operation": "chat", "provider": "openai", "customer_id": "res-cust",
                            "token_type": "input"}


def test_a_replayed_export_maps_to_the_same_keys() -> None:
    request = export(span(1, http__method="GET"), span(2, kind=Span.SPAN_KIND_CLIENT, gen_ai__usage__input_tokens=5))
    first, again = mapped(request), mapped(request)
    assert [e.request_id for e in first.entries] == [e.request_id for e in again.entries]
    assert [u.report_id for u in first.usage] == [u.report_id for u in again.usage]


def test_a_tool_call_span_names_the_tool_of_the_request_it_served() -> None:
    out = mapped(export(span(1, http__method="POST", http__route="/run"),
                        span(2, kind=Span.SPAN_KIND_INTERNAL, parent=1),
                        span(3, kind=Span.SPAN_KIND_INTERNAL, parent=2, gen_ai__operation__name="execute_tool",
                             gen_ai__tool__name="get_weather")))
    assert [e.tool_name for e in out.entries] == ["get_weather"]


def test_a_model_call_inside_a_served_request_is_that_requests_customers_usage() -> None:
    out = mapped(export(span(1, http__method="POST", enduser__id="acme"),
                        span(2, kind=Span.SPAN_KIND_INTERNAL, parent=1),
                        span(3, kind=Span.SPAN_KIND_CLIENT, parent=2, gen_ai__usage__input_tokens=9),
                        span(4, kind=Span.SPAN_KIND_CLIENT, parent=2, gen_ai__usage__input_tokens=1,
                             enduser__id="own"),
                        span(5, kind=Span.SPAN_KIND_CLIENT, parent=77, gen_ai__usage__input_tokens=2)))
    assert [(u.usage, (u.metadata or {}).get("customer_id")) for u in out.usage] == [
        (9, "acme"), (1, "own"), (2, None)]  # its own customer wins; outside any served request: none


@pytest.mark.parametrize(("bad", "reason"), [
    (Span(trace_id=b"\0" * 16, span_id=b"\1" * 8, kind=2, start_time_unix_nano=T0, end_time_unix_nano=T0),
     "trace_id"),
    (Span(trace_id=TRACE, span_id=b"\1" * 4, kind=2, start_time_unix_nano=T0, end_time_unix_nano=T0), "span_id"),
    (Span(trace_id=TRACE, span_id=b"\1" * 8, kind=2, start_time_unix_nano=T0, end_time_unix_nano=T0 - 1),
     "before"),
    (Span(trace_id=TRACE, span_id=b"\1" * 8, kind=2, start_time_unix_nano=T0,
          end_time_unix_nano=T0 + 2 * 86400 * 10**9),
     "exceeds a day"),
    (span(9, kind=Span.SPAN_KIND_CLIENT, gen_ai__usage__input_tokens=-3), "whole number of tokens"),
    (span(9, kind=Span.SPAN_KIND_CLIENT, gen_ai__usage__output_tokens="many"), "whole number of tokens"),
])
def test_a_span_that_cannot_be_recorded_is_rejected_alone(bad: Span, reason: str) -> None:
    out = mapped(export(bad, span(1, http__method="GET")))
    assert len(out.rejected) == 1 and reason in out.rejected[0]
    assert len(out.entries) == 1  # the rest of the export is kept


def test_no_attribute_names_another_agent() -> None:
    out = mapped(export(span(1, http__method="GET", agent_id="agent-2", app_id="agent-2"), service__name="agent-2"))
    assert out.entries and all(u.app_id == "agent-1" for u in out.usage)


# --- codec -------------------------------------------------------------------------------------------


def _otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP's JSON mapping: protobuf's, with hex ids."""
    doc = json_format.MessageToDict(request)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for sp in ss.get("spans", []):
                for name in ("traceId", "spanId", "parentSpanId"):
                    if name in sp:
                        sp[name] = base64.b64decode(sp[name]).hex()
    return doc


def test_json_and_protobuf_decode_to_the_same_export() -> None:
    request = export(span(1, parent=5, http__method="GET", http__status_code=404))
    from_pb, bad_pb = decode_request(request.SerializeToString(), "protobuf")
    from_json, bad_json = decode_request(msgspec.json.encode(_otlp_json(request)), "json")
    assert from_pb == request == from_json and bad_pb == bad_json == []


def test_json_span_with_bad_fields_is_rejected_alone() -> None:
    doc = _otlp_json(export(span(1, http__method="GET"), span(2, http__method="GET"), span(3, http__method="GET")))
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["spanId"] = "not-hex"
    spans[1]["startTimeUnixNano"] = {"no": "number"}
    request, rejected = decode_request(msgspec.json.encode(doc), "json")
    assert len(rejected) == 2 and "not hex" in rejected[0]
    assert [s.span_id for s in request.resource_spans[0].scope_spans[0].spans] == [(3).to_bytes(8, "big")]


@pytest.mark.parametrize(("body", "encoding", "code"), [
    (b"\x0a\xff\xff\xff\xff\x0f", "protobuf", "invalid_protobuf"),  # a length far past the end
    (b"\x0a\x05\x0a\x03\x0a\x01", "protobuf", "invalid_protobuf"),  # truncated nested message
    (b"{not json", "json", "invalid_json"),
    (b"[1, 2]", "json", "invalid_body"),
    (b'{"resourceSpans": {"a": 1}}', "json", "invalid_body"),
    (b'{"resourceSpans": [{"resource": {"attributes": 7}}]}', "json", "invalid_body"),
    (b"[" * 100_000 + b"]" * 100_000, "json", "invalid_json"),
])
def test_undecodable_bodies_are_refused_with_400(body: bytes, encoding: Any, code: str) -> None:
    with pytest.raises(IngestRefused) as err:
        decode_request(body, encoding)
    assert err.value.status_code == 400 and err.value.code == code


def test_deeply_nested_attribute_values_are_refused_not_a_crash() -> None:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(200):
        value = {"arrayValue": {"values": [value]}}
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": TRACE.hex(), "spanId": "00000000000000aa", "attributes": [{"key": "deep", "value": value}]},
        {"traceId": TRACE.hex(), "spanId": "00000000000000bb"}]}]}]}
    request, rejected = decode_request(msgspec.json.encode(doc), "json")
    assert len(rejected) == 1 and len(request.resource_spans[0].scope_spans[0].spans) == 1
    nested = _ld(1, b"leaf")  # AnyValue.string_value; the messages cannot even be built this deep, so bytes
    for _ in range(200):
        nested = _ld(5, _ld(1, nested))  # AnyValue.array_value.values[0]
    deep_span = Span(trace_id=TRACE, span_id=b"\1" * 8).SerializeToString() + _ld(9, _ld(1, b"deep") + _ld(2, nested))
    with pytest.raises(IngestRefused):
        decode_request(_ld(1, _ld(2, _ld(2, deep_span))), "protobuf")  # resource_spans.scope_spans.spans


def _ld(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    out, length = bytearray([number << 3 | 2]), len(payload)
    while length > 0x7F:
        out.append(length & 0x7F | 0x80)
        length >>= 7
    return bytes(out) + bytes([length]) + payload


def test_content_types() -> None:
    assert encoding_of("application/x-protobuf") == "protobuf"
    assert encoding_of("application/json; charset=utf-8") == "json"
    for other in (None, "text/plain", "application/grpc"):
        with pytest.raises(IngestRefused) as err:
            encoding_of(other)
        assert err.value.status_code == 415


def test_responses_in_both_encodings() -> None:
    assert encode_response(0, "", "protobuf") == b"" and encode_response(0, "", "json") == b"{}"
    parsed = ExportTraceServiceResponse.FromString(encode_response(2, "two bad", "protobuf"))
    assert (parsed.partial_success.rejected_spans, parsed.partial_success.error_message) == (2, "two bad")
    assert msgspec.json.decode(encode_response(2, "two bad", "json")) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "two bad"}}
    assert msgspec.json.decode(encode_status(429, "slow down", "json")) == {"code": 8, "message": "slow down"}
    raw = encode_status(401, "no key", "protobuf")
    assert raw == b"\x08\x10\x12\x06no key"  # code 16 (UNAUTHENTICATED), message "no key"


def test_span_count_is_checked_on_the_wire_before_protobuf_builds_the_spans() -> None:
    empty_spans = _ld(2, b"") * (4 * 1024 * 1024 - 16)  # 8 MiB: four million spans, ~700 MB once built
    with pytest.raises(IngestRefused) as err:
        decode_request(_ld(1, _ld(2, empty_spans)), "protobuf", max_spans=10_000)
    assert err.value.status_code == 413 and "(10001 counted)" in err.value.message  # stopped at the first over
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [{}] * 6}, {"spans": [{}] * 5}]}]}
    with pytest.raises(IngestRefused) as err:
        decode_request(msgspec.json.encode(doc), "json", max_spans=10)
    assert err.value.status_code == 413 and "(11 counted)" in err.value.message


def test_the_wire_count_agrees_with_protobuf() -> None:
    from gateway.otlp.codec import _WireScan

    request = export(span(1, http__method="GET"), span(2), service__name="svc", region="eu")
    request.resource_spans[0].schema_url = "https://opentelemetry.io/schemas/1.26.0"
    request.resource_spans[0].scope_spans[0].scope.name = "agent"
    more = request.resource_spans.add()
    more.scope_spans.add().spans.extend([span(3), span(4), span(5)])
    more.scope_spans.add()
    body = request.SerializeToString()
    assert _WireScan(body, 5).count_spans() == 5
    with pytest.raises(IngestRefused) as err:
        decode_request(body, "protobuf", max_spans=4)
    assert err.value.status_code == 413
    assert decode_request(body, "protobuf", max_spans=5)[0] == request
    with pytest.raises(IngestRefused) as err:
        _WireScan(body[:-3], 5).count_spans()  # cut inside the last span
    assert err.value.status_code == 400


def test_deflate_and_gzip_bodies_are_inflated_within_the_limit() -> None:
    import gzip
    import zlib

    from gateway.otlp.codec import decompress

    data = export(span(1, http__method="GET")).SerializeToString()
    raw_deflate = zlib.compressobj(wbits=-15)
    assert decompress(zlib.compress(data), "deflate", 1 << 20) == data  # what the Python exporter sends
    assert decompress(raw_deflate.compress(data) + raw_deflate.flush(), "Deflate", 1 << 20) == data
    assert decompress(gzip.compress(data), "gzip", 1 << 20) == data and decompress(data, None, 1 << 20) == data
    for body, encoding, status in ((zlib.compress(b"\0" * (2 << 20)), "deflate", 413),
                                   (gzip.compress(b"\0" * (2 << 20)), "gzip", 413),
                                   (b"\x78\x9c garbage", "deflate", 400), (zlib.compress(data)[:-6], "deflate", 400),
                                   (data, "br", 415)):
        with pytest.raises(IngestRefused) as err:
            decompress(body, encoding, 1 << 20)
        assert err.value.status_code == status, encoding
