"""``POST /v1/ingest``: authenticate, rate-limit, validate, publish, then answer 202.

The contract is section 1 of ``docs/wire-protocols.md``; the pure part (decoding, validation, records) is
``gateway/ingest.py``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import msgspec
from fastapi import APIRouter, Request, Response

from gateway.deps import authenticate_agent, get_runtime
from gateway.errors import Forbidden, GatewayError, IngestRefused, RateLimited
from gateway.ingest import build_records, decode_body, parse_batch
from gateway.routers.openapi import INGEST_RESPONSES, ingest_openapi_extra

log = logging.getLogger(__name__)

router = APIRouter(tags=["ingest"])


async def _read_body(request: Request, max_bytes: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise IngestRefused(f"request body exceeds {max_bytes} bytes; split the batch", status_code=413,
                            code="body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise IngestRefused(f"request body exceeds {max_bytes} bytes; split the batch", status_code=413,
                                code="body_too_large")
    return bytes(body)


@router.post(
    "/v1/ingest", status_code=202, summary="Ingest a batch of request log entries",
    description="Accepted entries are in Kafka when 202 is returned; invalid entries are listed in "
                "`rejected` by index. Authenticate with `Authorization: Bearer <API key>`; the agent "
                "is the key's owner. `Content-Encoding: gzip` is accepted.",
    responses=INGEST_RESPONSES, openapi_extra=ingest_openapi_extra(),
)
async def ingest(request: Request) -> Response:
    runtime = get_runtime(request)
    metrics, settings = runtime.metrics, runtime.settings
    try:
        identity = authenticate_agent(request)
        wait = runtime.limiter.acquire(identity.key_sha256)
        if wait > 0:
            raise RateLimited("rate limit exceeded for this API key", retry_after=runtime.limiter.retry_after(wait))
        raw = await _read_body(request, settings.max_body_bytes)
        body = decode_body(raw, request.headers.get("content-encoding"), settings.max_body_bytes)
        now = datetime.now(UTC)
        parsed = parse_batch(body, max_entries=settings.max_entries, now=now, body_limit=settings.body_limit)
        if parsed.claimed_agent_id is not None and parsed.claimed_agent_id != identity.agent_id:
            raise Forbidden(f"agent_id {parsed.claimed_agent_id[:64]!r} does not match the key's agent",
                            code="agent_mismatch")
        for item in parsed.rejected:
            metrics.entries.labels("rejected", _reason(item["error"])).inc()
        if parsed.accepted == 0:
            raise _NoValidEntries(parsed.rejected)
        records = build_records(identity.agent_id, parsed, int(now.timestamp() * 1000),
                                granularity=settings.record_granularity, max_bytes=settings.record_max_bytes)
        if records:
            await runtime.producer.send(runtime.topics.requests, identity.agent_id.encode(), records)
    except _NoValidEntries as exc:
        metrics.requests.labels("400").inc()
        return _json(400, {"error": "no_valid_entries", "detail": "no valid entry in the batch",
                           "rejected": exc.rejected})
    except GatewayError as exc:
        metrics.requests.labels(str(exc.status_code)).inc()
        return error_response(exc, settings.retry_after)
    if parsed.pings:
        runtime.mark_connected(identity.agent_id)
        metrics.sdk_pings.inc(parsed.pings)
    metrics.entries.labels("accepted", "").inc(len(parsed.entries))
    metrics.requests.labels("202").inc()
    return _json(202, {"status": "accepted", "agent_id": identity.agent_id, "entries": parsed.accepted,
                       "rejected": parsed.rejected})


class _NoValidEntries(Exception):
    def __init__(self, rejected: list[dict[str, object]]) -> None:
        super().__init__("no valid entries")
        self.rejected = rejected


def _reason(error: str) -> str:
    """A low-cardinality metric label from a msgspec/our error message (the field path)."""
    if "- at `$." in error:
        return error.rsplit("- at `$.", 1)[1].split("`", 1)[0].split("[", 1)[0].split(".", 1)[0][:32]
    if error.startswith("entry must be"):
        return "not_object"
    if "required field" in error:
        return "missing_field"
    return "invalid"


def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(payload), status_code=status, media_type="application/json",
                    headers=headers)


def error_response(exc: GatewayError, retry_after: int) -> Response:
    """The uniform error body ``{"error": code, "detail": message}`` with the right headers."""
    headers: dict[str, str] = {}
    if exc.status_code == 503:
        headers["Retry-After"] = str(retry_after)
    elif isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    elif exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.status_code >= 500:
        log.warning("ingest answered %d: %s", exc.status_code, exc.message)
    return _json(exc.status_code, {"error": exc.code, "detail": exc.message}, headers)


__all__ = ["error_response", "router"]

