"""Statements from query rows, without a store: segments, price versions, unpriced usage, currencies, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dashboards.billing import StatementRequest, build_statements, cut_points, decimal_text, period_of
from dashboards.errors import DashboardError
from dashboards.export import STATEMENT_CSV_COLUMNS, statement_to_csv
from dashboards.queries import TimeRange
from schemas.prices import PriceList, price_list

NOVEMBER = TimeRange.month("2026-11")
AS_OF = datetime(2026, 12, 2, tzinfo=UTC)


@pytest.fixture
def prices(tmp_path: Path) -> PriceList:
    """gpt-4 gets cheaper on 2026-11-16; tts has a default; asr has a meter but no price."""
    path = tmp_path / "prices.toml"
    path.write_text("""
currency = "USD"
prices = [
  { meter = "llm", model = "gpt-4", unit_price = 0.00003, from = 2026-01-01 },
  { meter = "llm", model = "gpt-4", unit_price = 0.000025, from = 2026-11-16 },
  { meter = "tts", model = "*", unit_price = 0.00015, from = 2026-01-01 },
]
[meters]
llm = { unit = "tokens" }
tts = { unit = "characters" }
asr = { unit = "seconds" }
""")
    return price_list(path)


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(("value", "text"), [
    (Decimal("0.000030"), "0.00003"), (Decimal("1E+2"), "100"), (Decimal("0E-12"), "0"),
    (Decimal("2e-5") * 3, "0.00006"), (Decimal("12.500"), "12.5"), (Decimal("123456789012.000000000001"),
                                                                   "123456789012.000000000001")])
def test_decimals_leave_as_plain_text(value: Decimal, text: str) -> None:
    assert decimal_text(value) == text


def test_segments_cut_at_price_changes_and_period_boundaries(prices: PriceList) -> None:
    assert cut_points(NOVEMBER, None, prices) == [at(16)]
    weeks = cut_points(NOVEMBER, "week", prices)
    assert weeks == [at(2), at(9), at(16), at(23), at(30)]  # Mondays, and the price change (also a Monday)
    assert len(cut_points(NOVEMBER, "day", prices)) == 29
    odd = TimeRange(at(3, 12), at(5, 6))
    assert cut_points(odd, "day", prices) == [at(4), at(5)]
    assert period_of(at(3, 13), "day", odd) == (at(3, 12), at(4))  # clipped to the range
    assert period_of(at(20), "month", NOVEMBER) == (at(1), datetime(2026, 12, 1, tzinfo=UTC))
    with pytest.raises(DashboardError):
        StatementRequest(NOVEMBER, granularity="year")


def usage(app: str, customer: str, segment: int, module: str, model: str, reports: int,
          quantity: int) -> dict[str, Any]:
    return {"app_id": app, "customer_id": customer, "segment": segment, "module": module, "model": model,
            "reports": reports, "quantity": quantity}


def x402(app: str, customer: str, segment: int, token: str, paid: int, amount: str) -> dict[str, Any]:
    return {"app_id": app, "customer_id": customer, "segment": segment, "token": token, "paid_requests": paid,
            "amount": amount}


def statement(prices: PriceList, **kwargs: Any) -> dict[str, Any]:
    rows = [usage("app-a", "cust-1", 0, "llm", "gpt-4", 2, 1000), usage("app-a", "cust-1", 1, "llm", "gpt-4", 1, 1000),
            usage("app-a", "cust-2", 1, "tts", "neural", 3, 7), usage("app-a", "", 0, "asr", "whisper", 1, 60),
            usage("app-a", "cust-2", 0, "video", "x", 1, 5), usage("app-b", "cust-9", 0, "llm", "gpt-4", 1, 3)]
    pay = [x402("app-a", "cust-1", 0, "USDC-base-mainnet", 2, "0.3"), x402("app-a", "cust-1", 1, "USDC-base-mainnet",
                                                                              1, "0.000001"),
           x402("app-c", "", 1, "EURC-base", 1, "5")]
    return build_statements(StatementRequest(NOVEMBER, **kwargs), rows, pay, prices, AS_OF)


def test_lines_are_quantity_times_the_price_of_their_days_and_totals_are_per_currency(prices: PriceList) -> None:
    body = statement(prices)
    assert body["currency"] == "USD" and body["as_of"] == AS_OF
    a, b, c = body["statements"]
    assert (a["app_id"], b["app_id"], c["app_id"]) == ("app-a", "app-b", "app-c")
    got = [(ln["customer_id"], ln["model"], ln["unit"], ln["quantity"], ln["unit_price"], ln["amount"],
            ln["effective_from"]) for ln in a["lines"]]
    assert got == [("cust-1", "gpt-4", "tokens", 1000, "0.00003", "0.03", date(2026, 1, 1)),
                   ("cust-1", "gpt-4", "tokens", 1000, "0.000025", "0.025", date(2026, 11, 16)),
                   ("cust-2", "neural", "characters", 7, "0.00015", "0.00105", date(2026, 1, 1))]
    # unpriced: a meter without a price (asr), a module without a meter (video) — listed, never free
    assert [(u["customer_id"], u["meter"], u["unit"], u["quantity"], u["amount"]) for u in a["unpriced"]] == [
        ("", "asr", "seconds", 60, None), ("cust-2", None, None, 5, None)]
    assert a["totals"] == [{"currency": "USD", "amount": "0.05605"}]
    assert {q["meter"]: (q["unit"], q["quantity"]) for q in a["quantities"]} == {
        "llm": ("tokens", 2000), "tts": ("characters", 7), "asr": ("seconds", 60), "video": (None, 5)}
    # x402 revenue stays in its token, beside (never inside) the USD totals
    assert a["x402"]["totals"] == [{"currency": "USDC-base-mainnet", "paid_requests": 3, "amount": "0.300001"}]
    assert c["totals"] == [] and c["x402"]["totals"] == [{"currency": "EURC-base", "paid_requests": 1, "amount": "5"}]
    per_customer = {cu["customer_id"]: cu for cu in a["customers"]}
    assert per_customer["cust-1"]["totals"] == [{"currency": "USD", "amount": "0.055"}]
    assert per_customer["cust-1"]["x402"][0]["amount"] == "0.300001"
    assert per_customer[""]["totals"] == [] and per_customer["cust-2"]["totals"][0]["amount"] == "0.00105"


def test_without_customers_the_lines_are_the_apps(prices: PriceList) -> None:
    a = statement(prices, by_customer=False)["statements"][0]
    assert [(ln["customer_id"], ln["model"], ln["quantity"]) for ln in a["lines"]] == [
        (None, "gpt-4", 1000), (None, "gpt-4", 1000), (None, "neural", 7)]
    assert a["customers"] == []


def test_the_csv_has_every_line_and_total_with_the_same_text(prices: PriceList) -> None:
    body = statement(prices)
    rows = list(csv.DictReader(io.StringIO(statement_to_csv(body))))
    assert tuple(rows[0]) == STATEMENT_CSV_COLUMNS
    kinds = [r["kind"] for r in rows if r["app_id"] == "app-a"]
    assert kinds == ["usage"] * 3 + ["unpriced"] * 2 + ["x402"] + [
        "customer_total", "customer_x402_total", "customer_total", "total", "x402_total"]  # cust-1, cust-2
    usage_rows = [r for r in rows if r["kind"] == "usage" and r["app_id"] == "app-a"]
    assert [(r["quantity"], r["unit_price"], r["amount"], r["currency"], r["unit"]) for r in usage_rows] == [
        (str(ln["quantity"]), ln["unit_price"], ln["amount"], "USD", ln["unit"])
        for ln in body["statements"][0]["lines"]]
    assert {(r["app_id"], r["currency"], r["amount"]) for r in rows if r["kind"] in ("total", "x402_total")} == {
        ("app-a", "USD", "0.05605"), ("app-a", "USDC-base-mainnet", "0.300001"), ("app-b", "USD", "0.00009"),
        ("app-c", "EURC-base", "5")}
    assert all("e" not in r["amount"].lower() for r in rows)  # never 2e-05


def test_the_csv_neutralises_formulas_in_text_but_not_numbers(prices: PriceList) -> None:
    rows = [usage("=HYPERLINK(\"x\")", "@cmd", 0, "tts", "-1", 1, 2)]
    text = statement_to_csv(build_statements(StatementRequest(NOVEMBER), rows, [], prices, AS_OF))
    line = next(r for r in csv.DictReader(io.StringIO(text)) if r["kind"] == "usage")
    assert (line["app_id"], line["customer_id"], line["model"]) == ("'=HYPERLINK(\"x\")", "'@cmd", "-1")


def test_the_csv_example_in_the_docs_is_what_the_export_writes() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "billing.md").read_text()
    example = docs.split("```csv\n", 1)[1].split("```", 1)[0]
    october = TimeRange.month("2026-10")
    body = build_statements(StatementRequest(october),
                            [usage("app-1", "acme-corp", 0, "llm", "gpt-4", 3, 123000)],
                            [x402("app-1", "acme-corp", 0, "USDC-base-mainnet", 2, "0.300000000000")],
                            price_list(), AS_OF)
    assert statement_to_csv(body) == example
