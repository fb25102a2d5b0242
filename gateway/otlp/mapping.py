"""Spans → the records Meterline already counts: request-log entries and usage records (``docs/otlp.md``).

No I/O. A span the agent served (a SERVER span, or an internal one carrying an HTTP or MCP method) becomes a
``RequestEntry`` of the requests topic, the shape ``POST /v1/ingest`` publishes; a span carrying GenAI token
counts becomes one ``UsageRecord`` per direction (input, output) of the usage topic, the shape the MQTT bridge
publishes, on the ``llm`` meter of ``schemas/prices.toml``. Both are keyed by the span's identity (trace id +
span id), so a replayed export is counted once by the workers' dedupe. Other spans (outgoing HTTP calls, internal
steps) are accepted and not recorded. Within one export, a tool-call span names the tool of the request it was
part of, and a model call without a customer of its own is billed to that request's customer. The agent is always
the caller's key's agent: no attribute can name another.

A span that cannot be recorded (bad ids, an end before its start, a duration or token count out of range) is
rejected alone, with a reason; the rest of the export goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from schemas.events import RequestEntry, UsageRecord

#: ``source`` of every request-log entry made from a span (``sdk_version`` of its batch too)
SOURCE: Final = "otlp"
#: the meter of GenAI token usage (``schemas/prices.toml``: tokens, priced per model)
LLM_METER: Final = "llm"
_MAX_MS: Final = 86_400_000  # RequestEntry.response_ms's bound: a day
_MAX_TOKENS: Final = 10**12  # UsageRecord.usage's bound (the workers refuse more)
_MAX_PARENT_HOPS: Final = 64

_METHOD = ("http.request.method", "http.method")
_STATUS = ("http.response.status_code", "http.status_code")
_PATH = ("http.route", "url.path", "http.target")
_MCP_METHOD = "mcp.method.name"
_TOOL = "gen_ai.tool.name"
_OPERATION = "gen_ai.operation.name"
_MODEL = ("gen_ai.response.model", "gen_ai.request.model")
_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
_USER_AGENT = ("user_agent.original", "http.user_agent")
_CLIENT_IP = ("client.address", "http.client_ip")
_ERROR_TYPE = "error.type"
_RPC_METHOD = "rpc.method"
_WANTED: Final = frozenset({*_METHOD, *_STATUS, *_PATH, _MCP_METHOD, _TOOL, _OPERATION, *_MODEL, *_INPUT, *_OUTPUT,
                            *_PROVIDER, *_USER_AGENT, *_CLIENT_IP, _ERROR_TYPE, _RPC_METHOD})
_SERVED_KINDS: Final = (Span.SPAN_KIND_UNSPECIFIED, Span.SPAN_KIND_INTERNAL)


@dataclass
class SpanMapping:
    """What one export became: entries and usage records to publish, and the spans rejected (with why)."""

    entries: list[RequestEntry] = field(default_factory=list)
    usage: list[UsageRecord] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    spans: int = 0
    ignored: int = 0


class _Rejected(ValueError):
    """This span cannot be recorded (the message says why)."""


def map_spans(request: ExportTraceServiceRequest, *, agent_id: str, key_sha256: str,
              customer_attributes: Iterable[str], ingested_at: int) -> SpanMapping:
    """Map every span of ``request`` for ``agent_id`` (the key's agent); ``customer_attributes`` are the
    attribute names that name the end customer, the first present wins (span before resource)."""
    customers = tuple(customer_attributes)
    wanted = _WANTED | frozenset(customers)
    out = SpanMapping()
    tools: list[tuple[bytes, bytes, str]] = []  # (trace, parent span, tool) of tool spans, named upwards below
    unowned: list[tuple[bytes, bytes, list[UsageRecord]]] = []  # usage without a customer, likewise
    parents: dict[tuple[bytes, bytes], bytes] = {}
    served: dict[tuple[bytes, bytes], RequestEntry] = {}
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes, wanted, {})
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.spans += 1
                attrs = _attributes(span.attributes, wanted, dict(resource))
                try:
                    entry, usage = _map(span, attrs, customers, agent_id, key_sha256, ingested_at)
                except _Rejected as exc:
                    out.rejected.append(f"span {span.span_id.hex() or '?'}: {exc}")
                    continue
                parents[(span.trace_id, span.span_id)] = span.parent_span_id
                if entry is not None:
                    out.entries.append(entry)
                    served[(span.trace_id, span.span_id)] = entry
                elif isinstance(attrs.get(_TOOL), str) and attrs[_TOOL]:
                    tools.append((span.trace_id, span.parent_span_id, attrs[_TOOL]))
                if usage and entry is None and not _customer(attrs, customers):
                    unowned.append((span.trace_id, span.parent_span_id, usage))
                out.usage += usage
                if entry is None and not usage:
                    out.ignored += 1
    for trace, parent, tool in tools:
        entry = _served_by(trace, parent, parents, served)
        if entry is not None and entry.tool_name is None:
            entry.tool_name = tool[:256]
    for trace, parent, records in unowned:
        entry = _served_by(trace, parent, parents, served)
        if entry is not None and entry.customer_id:
            for record in records:
                record.metadata = {**(record.metadata or {}), "customer_id": entry.customer_id}
    return out


def _served_by(trace: bytes, parent: bytes, parents: dict[tuple[bytes, bytes], bytes],
               served: dict[tuple[bytes, bytes], RequestEntry]) -> RequestEntry | None:
    """The served request a span (by its trace and parent) is part of, within this export: an SDK exports a
    request's spans together once they have ended. A tool-call span names that request's tool (the first one);
    a model call without a customer of its own is that request's customer's usage."""
    for _ in range(_MAX_PARENT_HOPS):
        entry = served.get((trace, parent))
        if entry is not None:
            return entry
        up = parents.get((trace, parent))
        if up is None:
            return None
        parent = up
    return None


def _map(span: Span, attrs: dict[str, Any], customers: tuple[str, ...], agent_id: str, key_sha256: str,
         ingested_at: int) -> tuple[RequestEntry | None, list[UsageRecord]]:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        raise _Rejected("trace_id must be 16 bytes, not all zero")
    if len(span.span_id) != 8 or not any(span.span_id):
        raise _Rejected("span_id must be 8 bytes, not all zero")
    ident = f"otel-{span.trace_id.hex()}-{span.span_id.hex()}"
    customer = _customer(attrs, customers)
    entry = _entry(span, attrs, ident, customer) if _is_served(span, attrs) else None
    return entry, _usage(span, attrs, ident, customer, agent_id, key_sha256, ingested_at)


def _is_served(span: Span, attrs: dict[str, Any]) -> bool:
    """A request the agent served: its SERVER spans, and spans of no kind (or internal) with an HTTP or MCP
    method. CLIENT spans with an HTTP method are calls the agent made, not traffic it served."""
    if span.kind == Span.SPAN_KIND_SERVER:
        return True
    return span.kind in _SERVED_KINDS and any(_text(attrs, name) for name in (*_METHOD, _MCP_METHOD))


def _entry(span: Span, attrs: dict[str, Any], ident: str, customer: str | None) -> RequestEntry:
    start, end = _times(span)
    response_ms = (end - start) / 1e6
    if response_ms > _MAX_MS:
        raise _Rejected(f"duration {response_ms:.0f} ms exceeds a day")
    mcp = _text(attrs, _MCP_METHOD)
    method = mcp or _first(attrs, *_METHOD, _RPC_METHOD) or "_OTHER"
    path = _first(attrs, *_PATH) or span.name or "/"
    fields: dict[str, Any] = {
        "request_id": ident, "method": method[:32], "path": path.split("?", 1)[0][:2048],
        "status_code": _status(span, attrs), "response_ms": response_ms, "timestamp": _iso(start),
        "protocol": "mcp" if mcp else "http", "source": SOURCE,
    }
    optional = {"customer_id": (customer, 256), "tool_name": (_text(attrs, _TOOL), 256),
                "error_type": (_text(attrs, _ERROR_TYPE), 256), "user_agent": (_first(attrs, *_USER_AGENT), 1024),
                "ip_address": (_first(attrs, *_CLIENT_IP), 64)}
    for name, (value, limit) in optional.items():
        if value:
            fields[name] = value[:limit]
    try:
        return msgspec.convert(fields, RequestEntry)
    except msgspec.ValidationError as exc:
        raise _Rejected(str(exc)[:200]) from exc


def _usage(span: Span, attrs: dict[str, Any], ident: str, customer: str | None, agent_id: str, key_sha256: str,
           ingested_at: int) -> list[UsageRecord]:
    counts = {"input": _tokens(attrs, _INPUT), "output": _tokens(attrs, _OUTPUT)}
    if not any(counts.values()):
        return []
    start, end = _times(span)
    model = (_first(attrs, *_MODEL) or "unknown")[:128]
    base: dict[str, Any] = {"source": SOURCE, "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex()}
    for name, value in (("operation", _text(attrs, _OPERATION)), ("provider", _first(attrs, *_PROVIDER)),
                        ("customer_id", customer)):
        if value:
            base[name] = value[:256]
    return [UsageRecord(app_id=agent_id, report_id=f"{ident}-{'in' if direction == 'input' else 'out'}",
                        key_sha256=key_sha256, module=LLM_METER, model=model, usage=count,
                        timestamp=end // 1_000_000, ingested_at=ingested_at,
                        metadata={**base, "token_type": direction})
            for direction, count in counts.items() if count]


def _times(span: Span) -> tuple[int, int]:
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start == 0 or end == 0:
        raise _Rejected("start_time_unix_nano and end_time_unix_nano are required")
    if end < start:
        raise _Rejected("end_time_unix_nano is before start_time_unix_nano")
    return start, end


def _tokens(attrs: dict[str, Any], names: tuple[str, ...]) -> int:
    for name in names:
        value = attrs.get(name)
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TOKENS:
            raise _Rejected(f"{name} must be a whole number of tokens in 0..{_MAX_TOKENS}")
        return value
    return 0


def _status(span: Span, attrs: dict[str, Any]) -> int:
    for name in _STATUS:
        value = attrs.get(name)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    if span.status.code == Status.STATUS_CODE_ERROR or _text(attrs, _ERROR_TYPE):
        return 500
    return 200


def _customer(attrs: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = attrs.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _first(attrs: dict[str, Any], *names: str) -> str | None:
    for name in names:
        if text := _text(attrs, name):
            return text
    return None


def _text(attrs: dict[str, Any], name: str) -> str | None:
    value = attrs.get(name)
    return value if isinstance(value, str) and value else None


def _attributes(kvs: Iterable[KeyValue], wanted: frozenset[str], into: dict[str, Any]) -> dict[str, Any]:
    """The scalar values of the ``wanted`` attributes of ``kvs``, added to ``into`` (later keys win)."""
    for kv in kvs:
        if kv.key in wanted:
            which = kv.value.WhichOneof("value")
            if which in ("string_value", "int_value", "double_value", "bool_value"):
                into[kv.key] = getattr(kv.value, which)
    return into


def _iso(unix_nano: int) -> str:
    try:
        moment = datetime.fromtimestamp(unix_nano // 1_000_000 / 1000, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise _Rejected("start_time_unix_nano is out of range") from exc
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = ["LLM_METER", "SOURCE", "SpanMapping", "map_spans"]
