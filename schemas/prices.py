"""The price list of ``prices.toml``: meters with their units, and dated unit prices as exact decimals.

Data, loaded once. A usage report of ``module``/``model`` is counted on a meter (the entry for
``module/model``, else for ``module``) whose unit says what the quantity is (tokens, characters,
seconds, calls), and priced by the entry of that meter for the model, else for ``"*"``, in effect on
the report's UTC day. Prices are ``Decimal`` from the file's text (``tomllib``'s ``parse_float``), so
``quantity × unit_price`` is exact. What nothing prices is ``None``: unpriced, never billed at zero.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Final

__all__ = ["ANY_MODEL", "PRICES_FILE", "Meter", "Price", "PriceList", "PriceListError", "price_list", "unit_price"]

PRICES_FILE: Final = Path(__file__).with_name("prices.toml")
#: The model of a meter's default price.
ANY_MODEL: Final = "*"


class PriceListError(ValueError):
    """A price file that does not say what a statement needs (a unit, a currency, a date)."""


@dataclass(frozen=True)
class Meter:
    name: str
    unit: str
    description: str = ""


@dataclass(frozen=True)
class Price:
    meter: str
    model: str
    unit_price: Decimal
    effective_from: date


@dataclass(frozen=True)
class PriceList:
    """Meters and prices in one currency; ``prices`` sorted by (meter, model, effective_from)."""

    currency: str
    meters: dict[str, Meter]
    prices: tuple[Price, ...]
    _by_key: dict[tuple[str, str], tuple[Price, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, str], list[Price]] = {}
        for p in self.prices:
            index.setdefault((p.meter, p.model), []).append(p)
        object.__setattr__(self, "_by_key", {k: tuple(v) for k, v in index.items()})

    def meter_for(self, module: str, model: str) -> Meter | None:
        """The meter a report of ``module``/``model`` counts on (None: the module has no meter)."""
        return self.meters.get(f"{module}/{model}") or self.meters.get(module)

    def price_for(self, module: str, model: str, day: date) -> Price | None:
        """The price of one unit of ``module``/``model`` on ``day`` (UTC): the model's, else the meter's default."""
        meter = self.meter_for(module, model)
        if meter is None:
            return None
        for wanted in (model, ANY_MODEL):
            found = [p for p in self._by_key.get((meter.name, wanted), ()) if p.effective_from <= day]
            if found:
                return found[-1]
        return None

    def changes_between(self, first: date, last: date) -> list[date]:
        """Days in ``(first, last]`` on which some price starts: a price never changes inside the days between."""
        return sorted({p.effective_from for p in self.prices if first < p.effective_from <= last})


def _load(data: dict[str, Any], where: str) -> PriceList:
    currency = data.get("currency")
    if not isinstance(currency, str) or not currency:
        raise PriceListError(f"{where}: no currency")
    meters: dict[str, Meter] = {}
    for name, spec in (data.get("meters") or {}).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("unit"), str) or not spec["unit"]:
            raise PriceListError(f"{where}: meter {name!r} has no unit")
        meters[str(name)] = Meter(str(name), spec["unit"], str(spec.get("description", "")))
    prices: list[Price] = []
    for entry in data.get("prices") or []:
        meter, model = entry.get("meter"), entry.get("model")
        amount, since = entry.get("unit_price"), entry.get("from")
        if meter not in meters:
            raise PriceListError(f"{where}: a price for {meter!r}, which is no meter")
        if not isinstance(model, str) or not model:
            raise PriceListError(f"{where}: a price of {meter!r} has no model (use \"*\" for the default)")
        if isinstance(amount, int) and not isinstance(amount, bool):
            amount = Decimal(amount)
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
            raise PriceListError(f"{where}: {meter}/{model}: unit_price must be a number >= 0")
        if not isinstance(since, date) or hasattr(since, "hour"):
            raise PriceListError(f"{where}: {meter}/{model}: `from` must be a date like 2026-01-01")
        prices.append(Price(meter, model, amount, since))
    keys = [(p.meter, p.model, p.effective_from) for p in prices]
    if len(set(keys)) != len(keys):
        raise PriceListError(f"{where}: two prices for the same meter, model and date")
    prices.sort(key=lambda p: (p.meter, p.model, p.effective_from))
    return PriceList(currency, meters, tuple(prices))


@cache
def price_list(path: Path = PRICES_FILE) -> PriceList:
    """The price list in ``path`` (default ``schemas/prices.toml``), numbers read as ``Decimal``."""
    with path.open("rb") as fh:
        return _load(tomllib.load(fh, parse_float=Decimal), path.name)


def unit_price(module: str, model: str, day: date, prices: PriceList | None = None) -> Decimal | None:
    """The unit price of ``module``/``model`` on ``day`` (UTC), in the list's currency; None if unpriced."""
    found = (prices or price_list()).price_for(module, model, day)
    return found.unit_price if found else None
