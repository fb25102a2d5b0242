"""Usage limits (entitlements): what one is, which usage it counts, and the period it counts it in.

A limit caps the usage of one app (an agent: the owner of the reporting key) on one meter of the price
list, per UTC calendar day or month — for the whole app, or for one of its end customers (a usage
report's ``metadata.customer_id``). Optionally it counts one model only. The cap is an exact decimal.
Limits are stored in ClickHouse (``limits``, migration 0005); the check reads the per-day rollup of the
same migration. ``docs/limits.md`` describes the behaviour; this module holds the data and the rules
every reader (API, CLI, SDK answers, alert rules) must agree on.

A limit's id is derived from what it limits (app, scope, customer, meter, model, period): setting the
same limit twice changes its quantity instead of adding a second one, and the alert rule that watches it
(``alert_rule_id``) keeps one id for its whole life.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final, Literal, get_args

from schemas.prices import PriceList

__all__ = ["MAX_LIMITS_PER_AGENT", "MAX_QUANTITY_DIGITS", "PERIODS", "QUANTITY_PATTERN", "Limit", "LimitError",
           "MeterScope", "Period", "alert_rule_id", "limit_id", "meter_scope", "parse_quantity", "period_bounds",
           "quantity_text"]

Period = Literal["day", "month"]
PERIODS: Final[tuple[str, ...]] = get_args(Period)
#: limits one agent may hold: the check and the listing read them all
MAX_LIMITS_PER_AGENT: Final = 500
#: digits before and after the point a quantity may have (below 1e15: what an alert rule's threshold may be)
MAX_QUANTITY_DIGITS: Final = (15, 9)
QUANTITY_PATTERN: Final = r"^\d{1,15}(\.\d{1,9})?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)


class LimitError(ValueError):
    """A limit that cannot be: no such meter, a unit that is not the meter's, a quantity that is not one."""


@dataclass(frozen=True)
class Limit:
    """One limit as stored. ``customer_id`` None: the whole app's usage; else that end customer's."""

    agent_id: str
    meter: str
    unit: str
    period: str
    quantity: Decimal
    customer_id: str | None = None
    #: '' counts every model of the meter; else this model only
    model: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def limit_id(self) -> str:
        return limit_id(self.agent_id, self.customer_id, self.meter, self.model, self.period)

    @property
    def scope(self) -> str:
        return "app" if self.customer_id is None else "customer"


def limit_id(agent_id: str, customer_id: str | None, meter: str, model: str, period: str) -> str:
    """The id of the limit on these terms: ``lim_`` and 20 hex digits of a BLAKE2b of them."""
    terms = "\x1f".join([agent_id, "app" if customer_id is None else "customer:" + customer_id, meter, model, period])
    return "lim_" + hashlib.blake2b(terms.encode(), digest_size=10).hexdigest()


def alert_rule_id(limit: str) -> str:
    """The id of the ``usage`` alert rule that fires when the limit ``limit`` is reached (docs/alerts.md)."""
    return f"limit:{limit}"


def parse_quantity(value: str | int | Decimal) -> Decimal:
    """A limit's quantity from decimal text or an integer (never a binary float), >= 0, at most 15.9 digits."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise LimitError("quantity must be decimal text like \"1000000\" or \"2.5\", or an integer")
    text = str(value).strip()
    try:
        exact = Decimal(text)
    except InvalidOperation:
        raise LimitError(f"quantity must be a decimal number, got {text[:40]!r}") from None
    if not exact.is_finite() or exact < 0:
        raise LimitError("quantity must be a finite number >= 0")
    plain = format(exact, "f")
    if not _QUANTITY.match(plain.rstrip("0").rstrip(".") if "." in plain else plain):
        raise LimitError("quantity may have at most 15 digits before the point and 9 after it")
    return exact


def quantity_text(value: Decimal) -> str:
    """``value`` as plain decimal text, no exponent, no trailing zeros (``1000000``, ``2.5``, ``0``)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


@dataclass(frozen=True)
class MeterScope:
    """Which usage rows a meter (and model) counts: one module, one model or all, minus models with a meter
    of their own (a price list key ``module/model`` gives a model its own meter, maybe in another unit)."""

    module: str
    model: str
    excluded_models: tuple[str, ...]

    def counts(self, module: str, model: str) -> bool:
        return (module == self.module and (not self.model or model == self.model)
                and model not in self.excluded_models)


def meter_scope(prices: PriceList, meter: str, unit: str | None, model: str = "") -> tuple[MeterScope, str]:
    """The usage ``meter`` (optionally one ``model``) counts, and the meter's unit; ``LimitError`` if the price
    list has no such meter or ``unit`` is not its unit."""
    found = prices.meters.get(meter)
    if found is None:
        known = ", ".join(sorted(prices.meters)) or "none"
        raise LimitError(f"no meter {meter!r} in the price list (meters: {known})")
    if unit is not None and unit != found.unit:
        raise LimitError(f"meter {meter!r} counts {found.unit}, not {unit!r}")
    module, _, own_model = meter.partition("/")
    if own_model and model and model != own_model:
        raise LimitError(f"meter {meter!r} is the meter of model {own_model!r} only")
    if own_model:
        return MeterScope(module, own_model, ()), found.unit
    excluded = tuple(sorted(name.partition("/")[2] for name in prices.meters
                            if name.startswith(module + "/") and name.partition("/")[2] != model))
    if model and prices.meter_for(module, model) is not found:
        raise LimitError(f"model {model!r} of {module!r} has a meter of its own: {module}/{model}")
    return MeterScope(module, model, excluded), found.unit


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def period_bounds(period: str, at: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar day or month holding ``at``, as ``[start, end)``; ``end`` is when the limit resets."""
    day = at.astimezone(UTC).date()
    if period == "day":
        return _midnight(day), _midnight(day + timedelta(days=1))
    if period == "month":
        first = day.replace(day=1)
        return _midnight(first), _midnight((first + timedelta(days=32)).replace(day=1))
    raise LimitError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
