"""What a rule's numbers mean: the reading of each kind, and the transition it makes from a state.

Pure functions: the store (``store.py``) fetches the numbers, this module turns them into a reading (a
value, and whether the condition holds — or None when there is not enough data to say), and ``transition``
applies the hysteresis: a rule fires when its condition holds while it is ``ok`` and resolves when the
condition no longer holds while it is ``firing``; anything else changes nothing (docs/alerts.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

from schemas.alerts import Rule
from schemas.prices import PriceList

__all__ = ["Reading", "Transition", "period_bounds", "read_requests", "read_usage", "transition",
           "window_bounds"]

Transition = Literal["fired", "resolved"]
_RATE_PLACES: Final = Decimal("0.000001")
_MS_PLACES: Final = Decimal("0.001")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Reading:
    """A rule's value over a window, and whether its condition holds (None: not enough data to decide)."""

    value: Decimal | None
    breach: bool | None
    window_start: datetime
    window_end: datetime


def window_bounds(now: datetime, window_s: int, lag_s: int) -> tuple[datetime, datetime]:
    """``[start, end)`` of the last ``window_s`` whole minutes ending at least ``lag_s`` before ``now``."""
    end = (now - timedelta(seconds=lag_s)).replace(second=0, microsecond=0)
    return end - timedelta(seconds=window_s), end


def period_bounds(now: datetime, period: str) -> tuple[datetime, datetime]:
    """The UTC calendar day or month holding ``now``."""
    day = now.astimezone(UTC).date()
    if period == "month":
        first = day.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
    else:
        first, nxt = day, day + timedelta(days=1)
    return _midnight(first), _midnight(nxt)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def read_requests(rule: Rule, row: dict[str, Any], start: datetime, end: datetime) -> Reading:
    """The reading of an ``error_rate``, ``p95_latency`` or ``no_traffic`` rule from
    ``alert_eval_requests.sql``'s row (requests, errors, p95_ms, last_seen)."""
    requests, errors = int(row["requests"]), int(row["errors"])
    if rule.kind == "error_rate":
        if requests < rule.min_requests:
            return Reading(None, None, start, end)
        rate = (Decimal(errors) / Decimal(requests)).quantize(_RATE_PLACES)
        return Reading(rate, rate > rule.threshold, start, end)
    if rule.kind == "p95_latency":
        if requests == 0:
            return Reading(None, None, start, end)
        p95 = Decimal(repr(float(row["p95_ms"]))).quantize(_MS_PLACES)
        return Reading(p95, p95 > rule.threshold, start, end)
    if rule.kind == "no_traffic":
        seen = row["last_seen"]
        if seen is not None and seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        if requests > 0:
            return Reading(Decimal(requests), False, start, end)
        if seen is None or seen <= _EPOCH:  # never any traffic: nothing stopped
            return Reading(Decimal(0), None, start, end)
        return Reading(Decimal(0), True, start, end)
    raise ValueError(f"not a request kind: {rule.kind}")


def read_usage(rule: Rule, rows: Iterable[dict[str, Any]], prices: PriceList, start: datetime,
               end: datetime) -> Reading:
    """The reading of a ``usage`` rule from ``alert_eval_usage.sql``'s rows (day, model, quantity): the
    quantity, or — when the rule's unit is the price list's currency — the spend, each day and model priced
    at that day's unit price (quantities nothing prices add nothing; the rule's unit was checked when written)."""
    total = Decimal(0)
    spend = rule.unit == prices.currency
    for row in rows:
        quantity = Decimal(int(row["quantity"]))
        if spend:
            day = row["day"] if isinstance(row["day"], date) else date.fromisoformat(str(row["day"]))
            price = prices.price_for(rule.meter, row["model"], day)
            quantity = quantity * price.unit_price if price else Decimal(0)
        total += quantity
    return Reading(total, total >= rule.threshold, start, end)


def transition(state: str, reading: Reading) -> Transition | None:
    """Fire once, resolve once: the transition ``reading`` makes from ``state`` (``ok`` / ``firing``)."""
    if reading.breach is None:
        return None
    if reading.breach and state != "firing":
        return "fired"
    if not reading.breach and state == "firing":
        return "resolved"
    return None
