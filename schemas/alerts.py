"""Alert rules, their events and the signed webhook that carries an event: the data both sides share.

The read API and the CLI write rules (``dashboards/alerts.py``), the evaluator in the stream workers
(``stream_workers/alerts/``) reads them, decides transitions and delivers them; both go through the row
shapes below, which are the columns of ``schemas/migrations/0004_alerts.sql``. ``docs/alerts.md`` is the
full description: kinds, hysteresis, the webhook format and how a receiver verifies it.

The signature is part of the wire format, so it lives here next to the body it signs:
``Meterline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` (Stripe's scheme).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DELIVERY_COLUMNS", "EVENT_COLUMNS", "EVENT_ID_HEADER", "KINDS", "MAX_BODY_BYTES", "PERIODS",
           "RULE_COLUMNS", "RULE_ID_PATTERN", "SIGNATURE_HEADER", "SIGNATURE_TOLERANCE_S", "Kind", "Period",
           "Rule", "SignatureError", "decimal_text", "event_body", "event_id", "new_secret", "parse_decimal",
           "rule_from_row", "rule_row", "sign", "signature_header", "verify"]

Kind = Literal["error_rate", "p95_latency", "no_traffic", "usage"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
Period = Literal["day", "month"]
PERIODS: Final[tuple[str, ...]] = get_args(Period)
#: What a rule id may be made of: ``limit:<id>`` (14-limits' rules) included.
RULE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
SIGNATURE_HEADER: Final = "Meterline-Signature"
EVENT_ID_HEADER: Final = "Meterline-Event-Id"
#: How old a signature's timestamp may be before ``verify`` refuses it (a replayed delivery).
SIGNATURE_TOLERANCE_S: Final = 300
#: Largest webhook body sent (a body is a few hundred bytes; this bounds what a rule's text can add).
MAX_BODY_BYTES: Final = 16 * 1024
_MAX_THRESHOLD: Final = Decimal("1e15")

#: Columns of ``alert_rules`` in the order ``rule_row`` gives them.
RULE_COLUMNS: Final = ("agent_id", "rule_id", "version", "deleted", "kind", "name", "customer_id", "threshold",
                       "window_s", "min_requests", "meter", "model", "unit", "period", "webhook_url", "secret",
                       "created_at", "updated_at")
#: Columns of ``alert_events``.
EVENT_COLUMNS: Final = ("agent_id", "rule_id", "seq", "event_id", "kind", "transition", "value", "threshold",
                        "window_start", "window_end", "evaluated_at", "webhook_url", "body")
#: Columns of ``alert_deliveries``.
DELIVERY_COLUMNS: Final = ("agent_id", "rule_id", "event_id", "attempt", "attempted_at", "url", "status_code",
                           "error", "latency_ms", "outcome", "next_attempt_at")


def parse_decimal(value: Any) -> Decimal:
    """A finite, non-negative decimal from text or a number (floats through their shortest text)."""
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a decimal number: {value!r}") from exc
    if not number.is_finite() or number < 0 or number > _MAX_THRESHOLD:
        raise ValueError(f"a threshold must be a finite number between 0 and {_MAX_THRESHOLD:f}")
    return number


def decimal_text(value: Decimal) -> str:
    """``value`` as plain text: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


class Rule(BaseModel):
    """One alert rule of one agent (``agent_id`` is the agent of request logs and the app of usage reports).

    - ``error_rate``: errors / requests over the last ``window_s`` above ``threshold`` (a fraction, 0.05 = 5 %),
      once the window has ``min_requests`` requests;
    - ``p95_latency``: the 95th percentile of response times over the last ``window_s`` above ``threshold`` ms;
    - ``no_traffic``: no request in the last ``window_s`` after traffic was seen (``threshold`` unused, 0);
    - ``usage``: the ``period``'s (UTC day or month) quantity of meter ``meter`` (a usage report's module),
      optionally one ``model``, at or above ``threshold``; ``unit`` is the meter's unit (tokens...) or the price
      list's currency (then it is spend: quantities priced with ``schemas/prices.toml``).

    ``customer_id`` narrows any kind to one end customer ('' = every customer). ``webhook_url`` '' records
    events without delivering them (the dashboard still shows them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: str = Field(min_length=1, max_length=256)
    rule_id: str = Field(pattern=RULE_ID_PATTERN)
    kind: Kind
    name: str = Field(default="", max_length=200)
    customer_id: str = Field(default="", max_length=256)
    threshold: Decimal = Decimal(0)
    window_s: int = Field(default=300, ge=60, le=86400, multiple_of=60)
    min_requests: int = Field(default=1, ge=1, le=1_000_000)
    meter: str = Field(default="", max_length=64)
    model: str = Field(default="", max_length=256)
    unit: str = Field(default="", max_length=64)
    period: Period = "day"
    webhook_url: str = Field(default="", max_length=2048, pattern=r"^(https?://[^\s]+)?$")

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, value: Any) -> Decimal:
        return parse_decimal(value)

    @model_validator(mode="after")
    def _kind_fields(self) -> Rule:
        if self.kind == "usage":
            if not self.meter or not self.unit:
                raise ValueError("a usage rule names its meter (a usage report's module) and unit")
            if self.threshold <= 0:
                raise ValueError("a usage rule's threshold must be above 0")
        elif self.meter or self.model or self.unit:
            raise ValueError(f"meter, model and unit belong to usage rules, not {self.kind}")
        if self.kind == "error_rate" and self.threshold >= 1:
            raise ValueError("an error_rate threshold is a fraction below 1 (0.05 = 5 %)")
        if self.kind == "no_traffic" and self.threshold != 0:
            raise ValueError("a no_traffic rule has no threshold")
        return self

    def public(self) -> dict[str, Any]:
        """The rule as the API shows it (decimals as text)."""
        out = self.model_dump()
        out["threshold"] = decimal_text(self.threshold)
        return out


def rule_row(rule: Rule, *, version: int, secret: str, created_at: datetime, updated_at: datetime,
             deleted: bool = False) -> list[Any]:
    """The ``alert_rules`` row of ``rule`` (columns ``RULE_COLUMNS``)."""
    return [rule.agent_id, rule.rule_id, version, int(deleted), rule.kind, rule.name, rule.customer_id,
            decimal_text(rule.threshold), rule.window_s, rule.min_requests, rule.meter, rule.model, rule.unit,
            rule.period, rule.webhook_url, secret, created_at, updated_at]


def rule_from_row(row: dict[str, Any]) -> Rule:
    """A ``Rule`` from an ``alert_rules`` row read as a dict (extra columns ignored)."""
    return Rule.model_validate({k: row[k] for k in Rule.model_fields})


def event_id(agent_id: str, rule_id: str, seq: int) -> str:
    """The id of a rule's ``seq``-th transition: the same whoever decides it, so a repeat is dropped."""
    digest = hashlib.sha256(f"{agent_id}\x00{rule_id}\x00{seq}".encode()).hexdigest()
    return f"evt_{digest[:32]}"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def event_body(*, event_id: str, transition: str, created_at: datetime, rule: Rule, value: str | None,
               window_start: datetime | None, window_end: datetime | None) -> str:
    """The JSON a webhook carries (``type`` ``alert.fired``, ``alert.resolved`` or ``alert.test``); compact,
    keys sorted, so the stored text is exactly the bytes signed and sent."""
    body = {"id": event_id, "type": f"alert.{transition}", "created_at": _iso(created_at),
            "agent_id": rule.agent_id, "rule": rule.public(), "value": value,
            "threshold": decimal_text(rule.threshold), "window_start": _iso(window_start),
            "window_end": _iso(window_end)}
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def new_secret() -> str:
    """A webhook signing secret: shown once when a rule is created, kept to sign its deliveries."""
    return "whsec_" + secrets.token_urlsafe(32)


class SignatureError(ValueError):
    """A webhook whose signature header is missing, malformed, too old or does not match."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed with the secret's UTF-8 bytes."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Meterline-Signature`` value: ``t=<timestamp>,v1=<signature>``."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: int = SIGNATURE_TOLERANCE_S) -> int:
    """Check a ``Meterline-Signature`` header against ``body``; return its timestamp or raise ``SignatureError``.

    Any ``v1`` entry may match (a header can carry several while a secret is being rotated); the timestamp
    must be within ``tolerance_s`` of ``now`` (unix seconds), so a captured delivery cannot be replayed later.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"{SIGNATURE_HEADER} needs t=<unix seconds> and v1=<hex signature>")
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"the signature's timestamp is {abs(now - timestamp):.0f} s from now")
    expected = sign(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("no signature matches the body with this secret")
    return timestamp
