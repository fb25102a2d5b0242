"""schemas.limits: quantities, periods, ids and which usage a meter counts — the rules every reader shares."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from schemas.limits import LimitError, limit_id, meter_scope, parse_quantity, period_bounds, quantity_text
from schemas.prices import Meter, PriceList, price_list


@pytest.mark.parametrize(("given", "exact"), [("1000000", Decimal(1000000)), (1000000, Decimal(1000000)),
                                              ("2.5", Decimal("2.5")), ("0", Decimal(0)),
                                              ("999999999999999.999999999", Decimal("999999999999999.999999999")),
                                              ("1.500", Decimal("1.5"))])
def test_quantities_are_exact(given: str | int, exact: Decimal) -> None:
    assert parse_quantity(given) == exact


@pytest.mark.parametrize("given", [1.5, True, "-1", "1e3x", "NaN", "Infinity", "1" * 16, "0.0000000001", None])
def test_what_is_no_quantity(given: object) -> None:
    with pytest.raises(LimitError):
        parse_quantity(given)  # type: ignore[arg-type]  # refusing the wrong types is the point


def test_quantity_text_has_no_exponent() -> None:
    assert [quantity_text(Decimal(v)) for v in ("1E+6", "2.50", "0.000", "-0")] == ["1000000", "2.5", "0", "0"]


@pytest.mark.parametrize(("at", "period", "start", "end"), [
    (datetime(2026, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), "month", datetime(2026, 12, 1, tzinfo=UTC),
     datetime(2027, 1, 1, tzinfo=UTC)),
    (datetime(2027, 1, 1, tzinfo=UTC), "month", datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)),
    (datetime(2028, 2, 29, 12, tzinfo=UTC), "day", datetime(2028, 2, 29, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
    (datetime.fromisoformat("2026-03-01T00:30:00+01:00"), "month", datetime(2026, 2, 1, tzinfo=UTC),
     datetime(2026, 3, 1, tzinfo=UTC)),  # 23:30 UTC on Feb 28: the UTC calendar decides
])
def test_periods_are_utc_calendar_days_and_months(at: datetime, period: str, start: datetime, end: datetime) -> None:
    assert period_bounds(period, at) == (start, end)
    with pytest.raises(LimitError):
        period_bounds("week", at)


def test_a_limit_id_is_its_terms() -> None:
    one = limit_id("app", "acme", "llm", "", "month")
    assert one == limit_id("app", "acme", "llm", "", "month") and one.startswith("lim_") and len(one) == 24
    others = {limit_id("app", None, "llm", "", "month"), limit_id("app", "acme", "llm", "", "day"),
              limit_id("app", "acme", "llm", "gpt-4", "month"), limit_id("app2", "acme", "llm", "", "month"),
              limit_id("app", "", "llm", "", "month")}
    assert one not in others and len(others) == 5  # the app's own limit is not customer ''s


def test_which_usage_a_meter_counts() -> None:
    scope, unit = meter_scope(price_list(), "llm", "tokens")
    assert unit == "tokens" and scope.counts("llm", "gpt-4") and not scope.counts("tts", "gpt-4")
    with pytest.raises(LimitError, match="counts tokens"):
        meter_scope(price_list(), "llm", "calls")
    own = PriceList("USD", {"llm": Meter("llm", "tokens"), "llm/whisper-x": Meter("llm/whisper-x", "seconds")}, ())
    every, _ = meter_scope(own, "llm", None)
    assert every.counts("llm", "gpt-4") and not every.counts("llm", "whisper-x")  # a model with its own meter
    one, unit = meter_scope(own, "llm/whisper-x", None)
    assert unit == "seconds" and one.counts("llm", "whisper-x") and not one.counts("llm", "gpt-4")
    with pytest.raises(LimitError, match="meter of its own"):
        meter_scope(own, "llm", None, "whisper-x")
