"""OpenAPI fragments for ``POST /v1/ingest``: the body schema (from the msgspec models) and examples."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.events import RequestEntry


def _entry_schema() -> dict[str, Any]:
    (schema,), components = msgspec.json.schema_components([RequestEntry], ref_template="#/$defs/{name}")
    entry = dict(components["RequestEntry"])
    entry["properties"] = dict(entry["properties"])
    entry["properties"]["timestamp"] = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}],
                                        "description": "ISO-8601; default: time received; stored in UTC"}
    return entry


EXAMPLE_ENTRY: dict[str, Any] = {
    "request_id": "req-0001", "method": "tools/call", "path": "/mcp", "status_code": 200,
    "response_ms": 12.5, "timestamp": "2026-11-23T10:00:00Z", "customer_id": "cust-42",
    "tool_name": "search", "protocol": "mcp", "x402_amount": 0.01, "x402_token": "USDC-base-mainnet",
}


def ingest_request_body() -> dict[str, Any]:
    entry = _entry_schema()
    body_schema = {
        "type": "object",
        "required": ["entries"],
        "properties": {
            "agent_id": {"type": "string", "maxLength": 256, "description": "optional; must be the key's agent"},
            "sdk_version": {"type": "string", "maxLength": 64},
            "batch_id": {"type": "string", "maxLength": 128},
            "entries": {"type": "array", "minItems": 1, "maxItems": 1000, "items": entry},
        },
        "description": "snake_case or camelCase keys (agentId, sdkVersion, requestId, statusCode, ...)",
    }
    return {
        "required": True,
        "content": {"application/json": {
            "schema": body_schema,
            "examples": {
                "snake_case": {"summary": "GT8004 guide (snake_case)", "value": {
                    "agent_id": "agent-1", "sdk_version": "0.3.0", "entries": [EXAMPLE_ENTRY]}},
                "camelCase": {"summary": "upstream SDK (camelCase)", "value": {
                    "agentId": "agent-1", "sdkVersion": "0.3.0", "entries": [{
                        "requestId": "req-0002", "method": "GET", "path": "/v1/chat", "statusCode": 402,
                        "responseMs": 3.1}]}},
                "ping": {"summary": "verify_connection() ping (not counted as traffic)", "value": {
                    "entries": [{"request_id": "ping-1", "method": "GET", "path": "/", "status_code": 200,
                                 "response_ms": 0, "source": "sdk_ping"}]}},
            },
        }},
    }


def _error(description: str, code: str, detail: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "example": {"error": code, "detail": detail}}}}


INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: Kafka acknowledged every valid entry; invalid ones are listed",
          "content": {"application/json": {"example": {
              "status": "accepted", "entries": 49,
              "rejected": [{"index": 7, "error": "Expected `int`, got `str` - at `$.status_code`"}]}}}},
    400: _error("Malformed JSON, no entries, or no valid entry", "invalid_json", "malformed JSON: ..."),
    401: _error("Missing or unknown API key", "unknown_key", "unknown API key"),
    403: _error("Revoked key, or agent_id names another agent", "agent_mismatch",
                "agent_id 'x' does not match the key's agent"),
    413: _error("Body or entry count over the limit: split the batch", "body_too_large",
                "request body exceeds 8388608 bytes; split the batch"),
    415: _error("Unsupported Content-Encoding", "unsupported_encoding", "use gzip or none"),
    429: _error("Per-key rate limit; see Retry-After", "rate_limited", "rate limit exceeded"),
    503: _error("Kafka unavailable; nothing was accepted, retry after Retry-After", "kafka_unavailable",
                "Kafka did not acknowledge in time; retry later"),
}

__all__ = ["EXAMPLE_ENTRY", "INGEST_RESPONSES", "ingest_request_body"]
