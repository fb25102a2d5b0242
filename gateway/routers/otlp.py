"""``POST /v1/traces``: OTLP/HTTP trace export, so an OpenTelemetry-instrumented agent reports with no Meterline SDK.

Authenticated like ``POST /v1/ingest`` (``Authorization: Bearer <API key>``, which exporters send from
``OTEL_EXPORTER_OTLP_HEADERS``), rate-limited with the same per-key buckets, and answered as the OTLP/HTTP
specification says: 200 with an ``ExportTraceServiceResponse`` (``partial_success`` counting the spans
rejected), 400/401/403/413/415 with a ``google.rpc.Status`` (not retried by exporters), 429/503 with
``Retry-After`` (retried), every body in the request's encoding. The records are in Kafka when 200 is sent.
Decoding and the span mapping are ``gateway/otlp``; the mapping table is ``docs/otlp.md``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import msgspec
from fastapi import APIRouter, Request, Response
from prometheus_client import Counter

from gateway.deps import authenticate_agent, get_runtime
from gateway.errors import GatewayError, IngestRefused, RateLimited
from gateway.ingest import ParsedBatch, build_records
from gateway.keys.registry import AgentIdentity
from gateway.metrics import GatewayMetrics
from gateway.otlp.codec import (
    JSON,
    MEDIA_TYPES,
    OtlpEncoding,
    decode_request,
    decompress,
    encode_response,
    encode_status,
    encoding_of,
)
from gateway.otlp.mapping import SOURCE, SpanMapping, map_spans
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

router = APIRouter(tags=["ingest"])

_ENCODER = msgspec.json.Encoder()
#: uncompressed bodies up to this size are decoded on the event loop (a thread hop costs more than they do)
_INLINE_BYTES = 64 * 1024
#: at most this many rejection reasons are joined into ``partial_success.error_message``
_REASONS = 5


class _Metrics:
    """The OTLP series, in the gateway runtime's registry (one set per runtime)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.exports = Counter("meterline_gateway_otlp_exports", "OTLP trace exports by HTTP status", ["status"],
                               registry=metrics.registry)
        self.spans = Counter("meterline_gateway_otlp_spans", "OTLP spans by outcome (request, usage, ignored, "
                             "rejected)", ["outcome"], registry=metrics.registry)


_metrics: WeakKeyDictionary[GatewayMetrics, _Metrics] = WeakKeyDictionary()


def _metrics_of(runtime: GatewayRuntime) -> _Metrics:
    found = _metrics.get(runtime.metrics)
    if found is None:
        found = _metrics[runtime.metrics] = _Metrics(runtime.metrics)
    return found


async def _read_body(request: Request, max_bytes: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    return bytes(body)


def _too_large(max_bytes: int) -> IngestRefused:
    return IngestRefused(f"request body exceeds {max_bytes} bytes; export smaller batches", status_code=413,
                         code="body_too_large")


_BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
_EXPORT_RESPONSE: dict[str, Any] = {"type": "object", "properties": {"partialSuccess": {
    "type": "object", "properties": {"rejectedSpans": {"type": ["string", "integer"]},
                                     "errorMessage": {"type": "string"}}}}}
_STATUS: dict[str, Any] = {"type": "object", "required": ["code"], "properties": {
    "code": {"type": "integer", "description": "google.rpc.Code"}, "message": {"type": "string"}}}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": schema}, "application/x-protobuf": _BINARY}}


def _refusal(description: str) -> dict[str, Any]:
    return _answer(f"{description} (a google.rpc.Status in the request's encoding)", _STATUS)


@router.post(
    "/v1/traces", summary="Ingest OpenTelemetry spans (OTLP/HTTP, protobuf or JSON)",
    description="An `ExportTraceServiceRequest` as `application/x-protobuf` or `application/json` (OTLP's JSON "
                "mapping: hex ids), optionally `Content-Encoding: gzip` or `deflate`. Server spans become request-log "
                "entries, spans with GenAI token counts usage records (docs/otlp.md). Authenticate with "
                "`Authorization: Bearer <API key>` (`OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<key>`); "
                "the agent is the key's owner. The answer is in the request's encoding.",
    response_class=Response,
    responses={200: _answer("ExportTraceServiceResponse; partialSuccess counts the spans rejected, and why",
                            _EXPORT_RESPONSE),
               400: _refusal("undecodable body"), 401: _refusal("missing or unknown key"),
               403: _refusal("revoked key"), 413: _refusal("body or span count over the limit"),
               415: _refusal("not application/x-protobuf or application/json, or not gzip, deflate or identity"),
               429: _refusal("the key's rate limit; Retry-After"),
               503: _refusal("Kafka did not acknowledge; nothing accepted; Retry-After")},
    operation_id="otlp_export_traces",
    openapi_extra={"security": [{"bearer": []}], "requestBody": {"required": True, "content": {
        "application/x-protobuf": _BINARY,
        "application/json": {"schema": {"type": "object", "properties": {"resourceSpans": {"type": "array"}}}}}}},
)
async def export_traces(request: Request) -> Response:
    runtime = get_runtime(request)
    settings, metrics = runtime.settings, _metrics_of(runtime)
    encoding: OtlpEncoding = JSON if "json" in request.headers.get("content-type", "").lower() else "protobuf"
    try:
        identity = authenticate_agent(request)
        wait = runtime.limiter.acquire(identity.key_sha256)
        if wait > 0:
            raise RateLimited("rate limit exceeded for this API key", retry_after=runtime.limiter.retry_after(wait))
        encoding = encoding_of(request.headers.get("content-type"))
        raw = await _read_body(request, settings.max_body_bytes)
        content_encoding = request.headers.get("content-encoding")
        if len(raw) <= _INLINE_BYTES and content_encoding in (None, "", "identity"):
            work = _convert(raw, content_encoding, encoding, settings, identity)
        else:  # decompressing, decoding and mapping a large export must not hold up the event loop
            work = await asyncio.to_thread(_convert, raw, content_encoding, encoding, settings, identity)
        if work.requests:
            await runtime.producer.send(runtime.topics.requests, identity.agent_id.encode(), work.requests)
        if work.usage:
            await runtime.producer.send(runtime.topics.usage, identity.agent_id.encode(), work.usage)
    except GatewayError as exc:
        metrics.exports.labels(str(exc.status_code)).inc()
        return _error(exc, encoding, settings.retry_after)
    rejected, mapped = work.rejected, work.mapped
    metrics.exports.labels("200").inc()
    for outcome, count in (("request", len(mapped.entries)), ("usage", len(mapped.usage)),
                           ("ignored", mapped.ignored), ("rejected", len(rejected))):
        if count:
            metrics.spans.labels(outcome).inc(count)
    if rejected:
        log.info("OTLP export of agent %s: %d of %d spans rejected (%s)", identity.agent_id, len(rejected),
                 mapped.spans + len(work.unreadable), rejected[0])
    message = "; ".join(rejected[:_REASONS]) + (f"; and {len(rejected) - _REASONS} more" if len(rejected) > _REASONS
                                                else "")
    return Response(encode_response(len(rejected), message, encoding), status_code=200,
                    media_type=MEDIA_TYPES[encoding])


@dataclass
class _Work:
    """An export made into Kafka values, and what became of its spans."""

    mapped: SpanMapping
    unreadable: list[str]
    requests: list[bytes]
    usage: list[bytes]

    @property
    def rejected(self) -> list[str]:
        return self.unreadable + self.mapped.rejected


def _convert(raw: bytes, content_encoding: str | None, encoding: OtlpEncoding, settings: GatewaySettings,
             identity: AgentIdentity) -> _Work:
    """Decompress, decode, map and encode (CPU only: runs in a worker thread for large bodies)."""
    body = decompress(raw, content_encoding, settings.max_body_bytes)
    export, unreadable = decode_request(body, encoding, max_spans=settings.otlp_max_spans)
    ingested_at = int(time.time() * 1000)
    mapped = map_spans(export, agent_id=identity.agent_id, key_sha256=identity.key_sha256,
                       customer_attributes=_names(settings.otlp_customer_attributes), ingested_at=ingested_at)
    requests: list[bytes] = []
    if mapped.entries:
        parsed = ParsedBatch(claimed_agent_id=None, sdk_version=SOURCE, batch_id=f"otlp-{ingested_at}",
                             entries=mapped.entries)
        requests = build_records(identity.agent_id, parsed, ingested_at, granularity=settings.record_granularity,
                                 max_bytes=settings.record_max_bytes)
    return _Work(mapped, unreadable, requests, [_ENCODER.encode(u) for u in mapped.usage])


def _names(setting: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in setting.split(",") if name.strip())


def _error(exc: GatewayError, encoding: OtlpEncoding, retry_after: int) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    elif exc.status_code == 503:
        headers["Retry-After"] = str(retry_after)
    elif exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.status_code >= 500:
        log.warning("OTLP export answered %d: %s", exc.status_code, exc.message)
    return Response(encode_status(exc.status_code, exc.message, encoding), status_code=exc.status_code,
                    media_type=MEDIA_TYPES[encoding], headers=headers)


__all__ = ["router"]
