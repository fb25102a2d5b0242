"""OTLP/HTTP bodies in and out: ``ExportTraceServiceRequest`` from protobuf or OTLP's JSON mapping, and the
answers (``ExportTraceServiceResponse``, or a ``google.rpc.Status`` for an error) in the request's encoding.

Decoding uses the official ``opentelemetry-proto`` messages. OTLP's JSON is protobuf's JSON mapping with two
differences this module undoes before ``json_format`` reads it: trace and span ids are hex strings (protobuf's
mapping would read base64), and enums are integers (which ``json_format`` accepts as they are).

A protobuf body is one message: it decodes whole or not at all (400). A JSON body is read span by span, so a
span that does not fit the schema (a bad id, a string where a number belongs) is rejected alone and the rest of
the export is kept; the caller counts those spans in ``partial_success``.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator
from typing import Any, Final, Literal

import msgspec
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from gateway.errors import IngestRefused
from gateway.ingest import decode_body

OtlpEncoding = Literal["protobuf", "json"]
PROTOBUF: Final = "protobuf"
JSON: Final = "json"
MEDIA_TYPES: Final[dict[str, str]] = {PROTOBUF: "application/x-protobuf", JSON: "application/json"}
_PROTOBUF_TYPES: Final = frozenset({"application/x-protobuf", "application/protobuf"})
#: JSON nesting json_format follows (AnyValue may nest arrays and maps without end)
_MAX_DEPTH: Final = 32
_SPAN_IDS: Final = (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id"))
_LINK_IDS: Final = (("traceId", "trace_id"), ("spanId", "span_id"))


def decompress(raw: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding``: identity and gzip as ``POST /v1/ingest`` does (``decode_body``), and deflate,
    which OpenTelemetry exporters also offer (``OTEL_EXPORTER_OTLP_COMPRESSION=deflate``). Output over
    ``max_bytes`` is refused with 413 as soon as it is passed (a bomb costs at most that much memory)."""
    if (content_encoding or "").strip().lower() != "deflate":
        return decode_body(raw, content_encoding, max_bytes)
    # HTTP's deflate is a zlib stream (RFC 1950); some clients send raw deflate (RFC 1951) instead
    inflater = zlib.decompressobj(wbits=15 if raw[:1] and (raw[0] & 0x0F) == 8 and
                                  int.from_bytes(raw[:2], "big") % 31 == 0 else -15)
    out = bytearray()
    data = raw
    try:
        while data:
            out += inflater.decompress(data, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise IngestRefused(f"request body exceeds {max_bytes} bytes after deflate decompression; export "
                                    "smaller batches", status_code=413, code="body_too_large")
            data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise IngestRefused(f"invalid deflate body: {exc}", code="invalid_deflate") from exc
    if not inflater.eof:
        raise IngestRefused("invalid deflate body: truncated stream", code="invalid_deflate")
    return bytes(out)


def encoding_of(content_type: str | None) -> OtlpEncoding:
    """The body's encoding from ``Content-Type``; anything but OTLP's two media types is refused with 415."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in _PROTOBUF_TYPES:
        return PROTOBUF
    if media == "application/json":
        return JSON
    raise IngestRefused(f"unsupported Content-Type {media[:64]!r}: OTLP/HTTP sends application/x-protobuf or "
                        "application/json", status_code=415, code="unsupported_media_type")


def decode_request(body: bytes, encoding: OtlpEncoding, *, max_spans: int = 10_000,
                   ) -> tuple[ExportTraceServiceRequest, list[str]]:
    """The export and, for JSON, why each span that could not be read was left out (``IngestRefused`` 400 when
    the body as a whole is not an export, 413 when it holds more than ``max_spans`` spans)."""
    if encoding == PROTOBUF:
        _WireScan(body, max_spans).count_spans()  # before protobuf builds anything
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise IngestRefused(f"undecodable protobuf ExportTraceServiceRequest: {str(exc)[:200]}",
                                code="invalid_protobuf") from exc
        return request, []
    return _from_json(body, max_spans)


def _from_json(body: bytes, max_spans: int) -> tuple[ExportTraceServiceRequest, list[str]]:
    try:
        doc = msgspec.json.decode(body)
    except RecursionError as exc:
        raise IngestRefused("malformed JSON: nested too deeply", code="invalid_json") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise IngestRefused(f"malformed JSON: {str(exc)[:200]}", code="invalid_json") from exc
    if not isinstance(doc, dict):
        raise IngestRefused("body must be a JSON ExportTraceServiceRequest object", code="invalid_body")
    _count_json_spans(doc, max_spans)
    request = ExportTraceServiceRequest()
    rejected: list[str] = []
    for r_index, resource_spans in enumerate(_list(_field(doc, "resourceSpans", "resource_spans"))):
        if not isinstance(resource_spans, dict):
            raise IngestRefused(f"resourceSpans[{r_index}] is not an object", code="invalid_body")
        out = request.resource_spans.add()
        if (resource := _field(resource_spans, "resource")) is not None:
            out.resource.SetInParent()
        _parse(resource or {}, out.resource, f"resourceSpans[{r_index}].resource",
               Resource)
        for s_index, scope_spans in enumerate(_list(_field(resource_spans, "scopeSpans", "scope_spans"))):
            if not isinstance(scope_spans, dict):
                raise IngestRefused(f"resourceSpans[{r_index}].scopeSpans[{s_index}] is not an object",
                                    code="invalid_body")
            scope_out = out.scope_spans.add()
            if (scope := _field(scope_spans, "scope")) is not None:
                scope_out.scope.SetInParent()
            _parse(scope or {}, scope_out.scope,
                   f"resourceSpans[{r_index}].scopeSpans[{s_index}].scope", InstrumentationScope)
            for index, span in enumerate(_list(_field(scope_spans, "spans"))):
                where = f"resourceSpans[{r_index}].scopeSpans[{s_index}].spans[{index}]"
                try:
                    span_out = Span()
                    json_format.ParseDict(_hex_ids(span), span_out, ignore_unknown_fields=True,
                                          max_recursion_depth=_MAX_DEPTH)
                except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
                    rejected.append(f"{where}: {str(exc)[:200]}")
                    continue
                scope_out.spans.append(span_out)
    return request, rejected


def _too_many(spans: int, max_spans: int) -> IngestRefused:
    return IngestRefused(f"more than {max_spans} spans in one export ({spans} counted); export smaller batches",
                         status_code=413, code="too_many_spans")


def _count_json_spans(doc: dict[str, Any], max_spans: int) -> None:
    spans = 0
    for resource_spans in _list(_field(doc, "resourceSpans", "resource_spans")):
        if isinstance(resource_spans, dict):
            for scope_spans in _list(_field(resource_spans, "scopeSpans", "scope_spans")):
                if isinstance(scope_spans, dict):
                    spans += len(_list(_field(scope_spans, "spans")))
    if spans > max_spans:
        raise _too_many(spans, max_spans)


class _WireScan:
    """Counts the spans of a protobuf export from its wire format, without building messages.

    Protobuf would build every span before the count could be checked: 8 MiB of empty spans are four million
    ``Span`` messages, ~700 MB. This walks only the three levels down to the spans (export → resource_spans →
    scope_spans → spans), skipping every field's content, and stops at the first span (or field, at those
    levels) over the limit. Anything it cannot walk is not a valid export: 400.
    """

    def __init__(self, body: bytes, max_spans: int) -> None:
        self.body = body
        self.max_spans = max_spans
        self.budget = 8 * max_spans + 1000  # fields at the three levels: a span, its scope's and resource's few

    def count_spans(self) -> int:
        spans = 0
        for rs_start, rs_end in self._submessages(0, len(self.body), 1):  # ExportTraceServiceRequest.resource_spans
            for ss_start, ss_end in self._submessages(rs_start, rs_end, 2):  # ResourceSpans.scope_spans
                for _ in self._submessages(ss_start, ss_end, 2):  # ScopeSpans.spans
                    spans += 1
                    if spans > self.max_spans:
                        raise _too_many(spans, self.max_spans)
        return spans

    def _submessages(self, pos: int, end: int, wanted: int) -> Iterator[tuple[int, int]]:
        """(start, end) of each length-delimited field ``wanted`` in ``body[pos:end]``."""
        while pos < end:
            self.budget -= 1
            if self.budget < 0:
                raise IngestRefused("too many fields in one export; export smaller batches", status_code=413,
                                    code="too_many_spans")
            key, pos = self._varint(pos, end)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = self._varint(pos, end)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                length, pos = self._varint(pos, end)
                if number == wanted and pos + length <= end:
                    yield pos, pos + length
                pos += length
            else:
                raise self._malformed(f"wire type {wire}")
            if pos > end:
                raise self._malformed("a field runs past the end of its message")

    def _varint(self, pos: int, end: int) -> tuple[int, int]:
        value = shift = 0
        while pos < end and shift < 64:
            byte = self.body[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, pos
            shift += 7
        raise self._malformed("a truncated or overlong varint")

    @staticmethod
    def _malformed(why: str) -> IngestRefused:
        return IngestRefused(f"undecodable protobuf ExportTraceServiceRequest: {why}", code="invalid_protobuf")


def _field(doc: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in doc:
            return doc[name]
    return None


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise IngestRefused("resourceSpans, scopeSpans and spans must be JSON arrays", code="invalid_body")
    return value


def _parse(value: Any, message: Any, where: str, kind: type[Any]) -> None:
    """A resource or scope: unreadable, the whole export is (its spans cannot be attributed)."""
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True, max_recursion_depth=_MAX_DEPTH)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise IngestRefused(f"{where} is not a {kind.__name__}: {str(exc)[:200]}", code="invalid_body") from exc


def _hex_ids(span: Any) -> Any:
    """``span`` with its hex ids (and its links') in the base64 protobuf's JSON mapping reads."""
    if not isinstance(span, dict):
        raise ValueError("a span must be a JSON object")
    span = dict(span)
    for names in _SPAN_IDS:
        _convert(span, names)
    links = span.get("links")
    if isinstance(links, list):
        span["links"] = [_converted_link(link) for link in links]
    return span


def _converted_link(link: Any) -> Any:
    if not isinstance(link, dict):
        return link
    link = dict(link)
    for names in _LINK_IDS:
        _convert(link, names)
    return link


def _convert(doc: dict[str, Any], names: tuple[str, str]) -> None:
    for name in names:
        if name not in doc:
            continue
        value = doc[name]
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a hex string")
        try:
            doc[name] = base64.b64encode(bytes.fromhex(value)).decode()
        except ValueError as exc:
            raise ValueError(f"{name} {value[:40]!r} is not hex") from exc


def encode_response(rejected: int, message: str, encoding: OtlpEncoding) -> bytes:
    """``ExportTraceServiceResponse``: empty when everything was accepted, else ``partial_success``."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if encoding == PROTOBUF:
        return bytes(response.SerializeToString())
    return msgspec.json.encode(json_format.MessageToDict(response))


#: google.rpc.Code of each HTTP status the route answers with
_GRPC_CODES: Final[dict[int, int]] = {400: 3, 401: 16, 403: 7, 413: 3, 415: 3, 429: 8, 503: 14}


def encode_status(http_status: int, message: str, encoding: OtlpEncoding) -> bytes:
    """The ``google.rpc.Status`` OTLP puts in an error's body (code and message; no details).

    Two scalar fields, written by hand rather than by adding googleapis-common-protos for one message.
    """
    code = _GRPC_CODES.get(http_status, 13)
    if encoding == JSON:
        return msgspec.json.encode({"code": code, "message": message})
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


__all__ = ["JSON", "MEDIA_TYPES", "PROTOBUF", "OtlpEncoding", "decode_request", "decompress", "encode_response",
           "encode_status", "encoding_of"]
