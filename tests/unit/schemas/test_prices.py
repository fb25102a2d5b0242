"""The price list: meters with units, exact decimal prices, the model → meter default fallback, dated versions."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.prices import PriceListError, price_list, unit_price

DAY = date(2026, 11, 18)


def test_the_shipped_list_has_a_currency_a_unit_per_meter_and_exact_prices() -> None:
    prices = price_list()
    assert prices.currency == "USD"
    assert {name: m.unit for name, m in prices.meters.items()} == {
        "llm": "tokens", "tts": "characters", "asr": "seconds", "tool": "calls"}
    assert all(isinstance(p.unit_price, Decimal) for p in prices.prices)
    # read from the text, not through a float: 0.0000015 is not a binary fraction
    assert unit_price("llm", "gpt-3.5-turbo", DAY) == Decimal("0.0000015")
    assert Decimal(3) * unit_price("llm", "gpt-3.5-turbo", DAY) == Decimal("0.0000045")  # type: ignore[operator]


def test_prices_fall_back_from_the_model_to_the_meter_default_and_nothing_else() -> None:
    assert unit_price("llm", "gpt-4", DAY) == Decimal("0.00003")
    assert unit_price("llm", "unknown-model", DAY) == Decimal("0.000002")
    assert unit_price("video", "x", DAY) is None  # no meter: unpriced, not free
    assert unit_price("llm", "gpt-4", date(2023, 12, 31)) is None  # before the list starts


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(body)
    return path


def test_a_later_entry_changes_the_price_from_its_day_on(tmp_path: Path) -> None:
    prices = price_list(write(tmp_path, """
currency = "EUR"
prices = [
  { meter = "llm", model = "*", unit_price = 0.002, from = 2026-01-01 },
  { meter = "llm", model = "big", unit_price = 0.01, from = 2026-11-15 },
  { meter = "llm", model = "*", unit_price = 0.001, from = 2026-11-10 },
]
[meters]
llm = { unit = "tokens" }
"llm/embed" = { unit = "vectors" }
"""))
    assert prices.currency == "EUR"
    assert prices.price_for("llm", "big", date(2026, 11, 9)).unit_price == Decimal("0.002")  # type: ignore[union-attr]
    assert prices.price_for("llm", "big", date(2026, 11, 10)).unit_price == Decimal("0.001")  # type: ignore[union-attr]
    assert prices.price_for("llm", "big", date(2026, 11, 15)).unit_price == Decimal("0.01")  # type: ignore[union-attr]
    assert prices.changes_between(date(2026, 11, 1), date(2026, 11, 30)) == [date(2026, 11, 10), date(2026, 11, 15)]
    assert prices.meter_for("llm", "embed").unit == "vectors"  # type: ignore[union-attr]
    assert prices.price_for("llm", "embed", date(2026, 11, 20)) is None  # its own meter, which has no price


@pytest.mark.parametrize(("body", "says"), [
    ('prices = []\n[meters]\nllm = { unit = "tokens" }\n', "no currency"),
    ('currency = "USD"\n[meters]\nllm = { description = "x" }\n', "has no unit"),
    ('currency = "USD"\nprices = [{ meter = "tts", model = "*", unit_price = 1, from = 2026-01-01 }]\n'
     '[meters]\nllm = { unit = "tokens" }\n', "which is no meter"),
    ('currency = "USD"\nprices = [{ meter = "llm", model = "*", unit_price = -1, from = 2026-01-01 }]\n'
     '[meters]\nllm = { unit = "tokens" }\n', "must be a number >= 0"),
    ('currency = "USD"\nprices = [{ meter = "llm", model = "*", unit_price = 1, from = "soon" }]\n'
     '[meters]\nllm = { unit = "tokens" }\n', "must be a date"),
    ('currency = "USD"\nprices = [{ meter = "llm", model = "*", unit_price = 1, from = 2026-01-01 },\n'
     '{ meter = "llm", model = "*", unit_price = 2, from = 2026-01-01 }]\n[meters]\nllm = { unit = "tokens" }\n',
     "same meter, model and date"),
])
def test_a_list_that_cannot_price_a_statement_is_refused(tmp_path: Path, body: str, says: str) -> None:
    with pytest.raises(PriceListError, match=says):
        price_list(write(tmp_path, body))
