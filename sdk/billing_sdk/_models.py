"""``UsageData`` and the ``billing/report`` payload, with the protocol's size limits."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._errors import InvalidUsageError

__all__ = ["MAX_PAYLOAD_BYTES", "UsageData", "build_report", "key_sha256", "now_ms"]

# Limits mirror the server's ``UsageReport`` schema, so a report we accept is never refused there.
MAX_API_KEY = 256
MAX_MODULE = 64
MAX_MODEL = 128
MAX_APP_ID = 256
MAX_USAGE = 10**12
MAX_PAYLOAD_BYTES = 64 * 1024  # one report, metadata included


@dataclass
class UsageData:
    """One unit count to bill: ``usage`` units of ``module``/``model`` used with ``api_key``."""

    api_key: str
    module: str
    model: str
    usage: int
    metadata: dict[str, Any] | None = None
    # Ours, not the seed's: a stable id for resends (generated when left empty) and the client time.
    report_id: str = field(default="")
    timestamp: int | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


def key_sha256(api_key: str) -> str:
    """Hex SHA-256 of a raw key: how keys are compared and how they may be logged."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def _text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidUsageError(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def build_report(data: UsageData, app_id: str | None) -> tuple[str, bytes]:
    """Validate ``data`` and encode the ``billing/report`` JSON; returns ``(report_id, payload)``.

    ``report_id`` and ``timestamp`` are fixed here, once, so every resend carries the same values.
    """
    report: dict[str, Any] = {}
    if app_id:
        report["app_id"] = _text("app_id", app_id, MAX_APP_ID)
    report["api_key"] = _text("api_key", data.api_key, MAX_API_KEY)
    report["module"] = _text("module", data.module, MAX_MODULE)
    report["model"] = _text("model", data.model, MAX_MODEL)
    usage = data.usage
    if isinstance(usage, bool) or not isinstance(usage, int) or not 0 <= usage <= MAX_USAGE:
        raise InvalidUsageError(f"usage must be an int between 0 and {MAX_USAGE}, got {usage!r}")
    report["usage"] = usage
    report["timestamp"] = data.timestamp if data.timestamp is not None else now_ms()
    if data.metadata:
        if not isinstance(data.metadata, dict):
            raise InvalidUsageError("metadata must be a dict")
        report["metadata"] = data.metadata
    report_id = data.report_id or str(uuid.uuid4())
    report["report_id"] = _text("report_id", report_id, 128)
    try:
        payload = orjson.dumps(report, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise InvalidUsageError(f"metadata is not JSON-serialisable: {exc}") from exc
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidUsageError(f"report is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit")
    return report_id, payload
