"""Pure helpers of the bridge: report → ``UsageRecord``, dead letters without secrets, key updates."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, Final

import msgspec

from schemas.events import ApiKeyRecord, DeadLetter, KeyStatus, KeyUpdate, UsageRecord, UsageReport

_ENC: Final = msgspec.json.Encoder()
_REPORT: Final = msgspec.json.Decoder(UsageReport)
_KEY_FIELD: Final = re.compile(rb'("api_?[kK]ey"\s*:\s*)"(?:[^"\\]|\\.)*"')
_KEY_VALUE: Final = re.compile(rb"(?:ml|gt8004)_sk_[0-9A-Za-z]+")
PAYLOAD_KEEP: Final = 64 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


def decode_report(payload: bytes) -> UsageReport:
    """Validate a ``billing/report`` payload (raises ``msgspec.DecodeError``/``ValidationError``)."""
    return _REPORT.decode(payload)


def legacy_report_id(key_sha256: str, report: UsageReport) -> str:
    """A deterministic id for reports without ``report_id``: resends of one report share it."""
    canonical = _ENC.encode([key_sha256, report.module, report.model, report.usage, report.timestamp,
                             report.metadata])
    return "legacy-" + hashlib.sha256(canonical).hexdigest()[:32]


def usage_record(report: UsageReport, owner: ApiKeyRecord, key_sha256: str, ingested_at: int) -> bytes:
    """The usage-topic value; the app is the key's owner, a differing reported app id is kept in metadata."""
    metadata: dict[str, Any] | None = report.metadata
    if report.app_id is not None and report.app_id != owner.agent_id:
        metadata = {**(metadata or {}), "reported_app_id": report.app_id}
    return _ENC.encode(UsageRecord(
        app_id=owner.agent_id, report_id=report.report_id or legacy_report_id(key_sha256, report),
        key_sha256=key_sha256, module=report.module, model=report.model, usage=report.usage,
        timestamp=report.timestamp if report.timestamp is not None else ingested_at,
        ingested_at=ingested_at, metadata=metadata))


def redact(payload: bytes) -> str:
    """The payload for a dead letter: API keys removed, UTF-8 with replacement, at most 64 KiB."""
    cut = payload[:PAYLOAD_KEEP]
    cut = _KEY_FIELD.sub(rb'\1"<redacted>"', cut)
    cut = _KEY_VALUE.sub(b"<redacted>", cut)
    return cut.decode("utf-8", "replace")


def dead_letter(reason: str, error: str, source_topic: str, payload: bytes, agent_id: str | None = None) -> bytes:
    return _ENC.encode(DeadLetter(reason=reason, error=error[:500], stage="bridge", source_topic=source_topic,
                                  payload=redact(payload), failed_at=now_ms(), agent_id=agent_id))


def key_status(record: ApiKeyRecord, raw_key: str | None = None) -> KeyStatus:
    blocked = record.status != "active"
    return KeyStatus(app_id=record.agent_id, api_key_sha256=record.key_sha256,
                     status="blocked" if blocked else "ok", reason="revoked" if blocked else None,
                     api_key=raw_key)


def key_updates(statuses: list[KeyStatus], chunk: int = 5000, *, full: bool = False) -> list[bytes]:
    """``billing/keys/update`` payloads, at most ``chunk`` keys each (an empty list still answers).

    ``full`` says ``statuses`` is the whole registry; the flag is sent only when it fits one message
    (clients treat a flagged message as the complete list and refuse keys absent from it).
    """
    stamp = now_ms()
    if len(statuses) <= chunk:
        return [_ENC.encode(KeyUpdate(updates=statuses, timestamp=stamp, full=full))]
    return [_ENC.encode(KeyUpdate(updates=statuses[i:i + chunk], timestamp=stamp))
            for i in range(0, len(statuses), chunk)]


__all__ = ["decode_report", "dead_letter", "key_status", "key_updates", "legacy_report_id", "now_ms", "redact",
           "usage_record"]
