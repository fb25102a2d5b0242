"""Event models shared by the gateway and the stream workers (their wire form: ``docs/wire-protocols.md``).

Models are ``msgspec.Struct`` types: on a 50-entry ingest batch msgspec decodes and validates
several times faster than pydantic (``bench/bench_models.py`` prints the ratio), and the gateway and
workers do this for every entry.

Wire input arrives in snake_case or camelCase; ``normalise_keys`` maps camelCase keys to the
snake_case field names before ``msgspec.convert`` validates. Kafka records (``RequestBatchRecord``,
``UsageRecord``) are always snake_case and never carry a raw API key.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1
BODY_LIMIT: Final = 16 * 1024  # bytes kept of request/response bodies; longer bodies are truncated
MAX_ENTRIES_PER_BATCH: Final = 1000
MAX_HEADERS: Final = 64

ShortStr = Annotated[str, msgspec.Meta(max_length=256)]
IdStr = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Protocol = Literal["http", "mcp", "a2a"]


class RequestEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One request an agent served: an entry of ``POST /v1/ingest``."""

    request_id: IdStr
    method: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    path: Annotated[str, msgspec.Meta(max_length=2048)]
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)]
    response_ms: Annotated[float, msgspec.Meta(ge=0, le=86_400_000)]
    timestamp: str | None = None
    customer_id: ShortStr | None = None
    tool_name: ShortStr | None = None
    error_type: ShortStr | None = None
    x402_amount: Annotated[float, msgspec.Meta(ge=0, le=1e12)] | None = None
    x402_tx_hash: ShortStr | None = None
    x402_token: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    x402_payer: ShortStr | None = None
    request_body: str | None = None
    response_body: str | None = None
    request_body_size: Annotated[int, msgspec.Meta(ge=0)] | None = None
    response_body_size: Annotated[int, msgspec.Meta(ge=0)] | None = None
    headers: Annotated[dict[str, Annotated[str, msgspec.Meta(max_length=4096)]],
                       msgspec.Meta(max_length=MAX_HEADERS)] | None = None
    protocol: Protocol | None = None
    source: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    ip_address: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    user_agent: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    referer: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    content_type: ShortStr | None = None
    accept_language: ShortStr | None = None
    country: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    city: ShortStr | None = None


class IngestBatch(msgspec.Struct, kw_only=True):
    """The ``POST /v1/ingest`` body after key normalisation; entries are validated one by one."""

    entries: list[Any]
    agent_id: ShortStr | None = None
    sdk_version: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    batch_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class RequestBatchRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the gateway publishes to the requests topic (keyed by ``agent_id``).

    A record holds one or more accepted entries of one ingest call. ``ingested_at`` is epoch
    milliseconds at the gateway. No API key, raw or hashed, is part of it.
    """

    v: int = SCHEMA_VERSION
    agent_id: str
    batch_id: str
    ingested_at: int
    entries: list[RequestEntry]
    sdk_version: str | None = None


class UsageReport(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``billing/report`` as published by billing SDKs; ``report_id`` is ours and optional."""

    app_id: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    api_key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    module: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    usage: Annotated[int, msgspec.Meta(ge=0, le=10**12)]
    timestamp: int | None = None
    metadata: dict[str, Any] | None = None
    report_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class UsageRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the MQTT bridge publishes to the usage topic (keyed by ``app_id``).

    ``report_id`` is the SDK's id when given, else a digest of the report (legacy clients), so a
    redelivered message dedupes either way. ``key_sha256`` identifies the key without revealing it.
    """

    v: int = SCHEMA_VERSION
    app_id: str
    report_id: str
    key_sha256: str
    module: str
    model: str
    usage: int
    timestamp: int
    ingested_at: int
    metadata: dict[str, Any] | None = None


class KeyStatus(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One entry of ``billing/keys/status`` (hashes only) or ``billing/keys/update`` (legacy keys, raw)."""

    app_id: str
    api_key_sha256: str
    status: Literal["ok", "blocked"]
    reason: str | None = None
    api_key: str | None = None  # on billing/keys/update only, and only for keys created as legacy


class KeyUpdate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``billing/keys/status`` and ``billing/keys/update`` (server → clients).

    ``full`` marks a complete snapshot of the registry in one message: clients then refuse keys absent
    from it. Partial updates (one changed key, or a snapshot too large for one message) omit it, and so
    does every ``billing/keys/update``, which lists legacy keys only.
    """

    updates: list[KeyStatus]
    timestamp: int
    full: bool = False


class KeysRequest(msgspec.Struct, kw_only=True):
    """``billing/keys/request`` (client → server)."""

    timestamp: int | None = None


class Heartbeat(msgspec.Struct, kw_only=True):
    """``billing/heartbeat`` and ``billing/ping``."""

    type: Literal["heartbeat", "ping"]
    timestamp: int | None = None


class ApiKeyRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Value of the compacted keys topic, keyed by ``key_sha256``; a tombstone deletes."""

    key_sha256: str
    agent_id: str
    status: Literal["active", "revoked"]
    created_at: int
    name: str | None = None
    prefix: str | None = None  # first characters of the key for display, e.g. "ml_sk_3f9a"
    revoked_at: int | None = None
    #: keys made for legacy MQTT clients (which compare raw keys): the raw key, Fernet-encrypted with
    #: the server secret (``gateway.keys.legacy``), so the bridge can announce it; None for every other key
    legacy_key: str | None = None


class DeadLetter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An input that could not be processed, with the reason and the original bytes."""

    reason: str  # short machine-readable code, e.g. "invalid_json", "schema", "unknown_key"
    error: str
    stage: str  # "gateway", "bridge", "worker"
    source_topic: str
    payload: str  # original payload, decoded as UTF-8 with replacement, truncated to 64 KiB
    failed_at: int
    partition: int | None = None
    offset: int | None = None
    agent_id: str | None = None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _aliases(*structs: type[msgspec.Struct]) -> dict[str, str]:
    out: dict[str, str] = {}
    for struct in structs:
        for name in struct.__struct_fields__:
            camel = _camel(name)
            if camel != name:
                out[camel] = name
    return out


CAMEL_TO_SNAKE: Final[dict[str, str]] = _aliases(RequestEntry, IngestBatch)


def normalise_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """Map camelCase keys of an ingest batch or entry to snake_case; other keys are kept as they are."""
    return {CAMEL_TO_SNAKE.get(k, k): v for k, v in obj.items()}


def truncate_utf8(text: str, limit: int = BODY_LIMIT) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    if len(text) <= limit // 4:
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


request_batch_encoder: Final = msgspec.json.Encoder()
request_batch_decoder: Final = msgspec.json.Decoder(RequestBatchRecord)
usage_record_decoder: Final = msgspec.json.Decoder(UsageRecord)
api_key_record_decoder: Final = msgspec.json.Decoder(ApiKeyRecord)
dead_letter_decoder: Final = msgspec.json.Decoder(DeadLetter)

__all__ = [
    "BODY_LIMIT",
    "CAMEL_TO_SNAKE",
    "MAX_ENTRIES_PER_BATCH",
    "MAX_HEADERS",
    "SCHEMA_VERSION",
    "ApiKeyRecord",
    "DeadLetter",
    "Heartbeat",
    "IngestBatch",
    "KeyStatus",
    "KeyUpdate",
    "KeysRequest",
    "RequestBatchRecord",
    "RequestEntry",
    "UsageRecord",
    "UsageReport",
    "api_key_record_decoder",
    "dead_letter_decoder",
    "normalise_keys",
    "request_batch_decoder",
    "request_batch_encoder",
    "truncate_utf8",
    "usage_record_decoder",
]
