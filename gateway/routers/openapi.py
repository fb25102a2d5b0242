"""OpenAPI fragments for ``POST /v1/ingest``: the body and answer schemas, examples, and the bearer scheme.

The answers' schemas are what the stateful fuzz test (``tests/integration/gateway/test_fuzz.py``) checks
every answer against; the ``agent_id`` of a 202 is what the read API's ``/v1/agents/{agent_id}/...`` takes.
"""

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


#: ``Authorization: Bearer <token>`` as the document declares it (``gateway.deps`` reads the token; the
#: read API declares the same scheme through FastAPI's ``HTTPBearer``).
BEARER_SCHEME: dict[str, Any] = {"type": "http", "scheme": "bearer",
                                 "description": "an agent's API key (its own data) or the operator token (any agent)"}

_REJECTED: dict[str, Any] = {"type": "array", "items": {
    "type": "object", "required": ["index", "error"], "additionalProperties": False,
    "properties": {"index": {"type": "integer", "minimum": 0}, "error": {"type": "string"}}}}
_ERROR: dict[str, Any] = {
    "type": "object", "required": ["error", "detail"], "additionalProperties": False,
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"},
                   "rejected": {**_REJECTED, "description": "no_valid_entries only: why each entry was refused"}}}
_ACCEPTED: dict[str, Any] = {
    "type": "object", "required": ["status", "agent_id", "entries", "rejected"], "additionalProperties": False,
    "properties": {"status": {"const": "accepted"},
                   "agent_id": {"type": "string", "description": "the key's agent: /v1/agents/{agent_id} reads it"},
                   "entries": {"type": "integer", "minimum": 0, "description": "entries accepted"},
                   "rejected": _REJECTED}}


def _error(description: str, code: str, detail: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": _ERROR, "example": {"error": code, "detail": detail}}}}


INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: Kafka acknowledged every valid entry; invalid ones are listed",
          "content": {"application/json": {"schema": _ACCEPTED, "example": {
              "status": "accepted", "agent_id": "agent-1", "entries": 49,
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

_READ_PREFIX = "/v1/agents/{agent_id}/"


def ingest_openapi_extra() -> dict[str, Any]:
    """The parts of ingest's operation FastAPI cannot derive: its body and its bearer authentication.

    Declared here rather than with a ``Security`` dependency, which would run on every ingest call.
    """
    return {"requestBody": ingest_request_body(), "security": [{"bearer": []}]}


def complete_document(document: dict[str, Any]) -> dict[str, Any]:
    """Add to the assembled app's document the bearer scheme, and links from ingest's 202 to the agent's
    read views when the app serves them.

    The gateway serves the read API only with ClickHouse configured, so the links are added to the
    assembled app's document, never pointing at an operation that is not there.
    """
    document.setdefault("components", {}).setdefault("securitySchemes", {}).setdefault("bearer", BEARER_SCHEME)
    links = {
        op["operationId"]: {"operationId": op["operationId"], "parameters": {"agent_id": "$response.body#/agent_id"}}
        for path, item in document.get("paths", {}).items() if path.startswith(_READ_PREFIX)
        for method, op in item.items() if method == "get" and "operationId" in op
    }
    accepted = document.get("paths", {}).get("/v1/ingest", {}).get("post", {}).get("responses", {}).get("202")
    if links and accepted is not None:
        accepted["links"] = links
    return document


__all__ = ["BEARER_SCHEME", "EXAMPLE_ENTRY", "INGEST_RESPONSES", "complete_document", "ingest_openapi_extra",
           "ingest_request_body"]
