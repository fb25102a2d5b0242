"""Property tests of the Python side of the time windows: whole days, calendar months, milliseconds.

Stored times are whole milliseconds (DateTime64(3)); a range bound inside a millisecond must select
the same rows as the exact bound, which is what the views' SQL then sees.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from dashboards.queries import TimeRange, utcnow, whole_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),  # noqa: DTZ001 - naive bounds, as hypothesis wants
                       timezones=st.just(UTC))


def ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


@settings(max_examples=300)
@given(moments, st.integers(-2000, 2000))
def test_a_bound_moved_up_to_whole_ms_selects_the_same_stored_times(moment: datetime, delta: int) -> None:
    """For every stored time e (whole ms): e >= bound and e < bound keep their truth when the bound moves up."""
    bound = whole_ms(moment, up=True)
    assert bound.microsecond % 1000 == 0 and moment <= bound < moment + timedelta(milliseconds=1)
    assert whole_ms(moment, up=False) <= moment < whole_ms(moment, up=False) + timedelta(milliseconds=1)
    stored = EPOCH + timedelta(milliseconds=ms(moment) + delta)
    assert (stored >= moment) == (stored >= bound)
    assert (stored < moment) == (stored < bound)


@settings(max_examples=200)
@given(moments, st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=400)))
def test_time_range_bounds_are_whole_ms(start: datetime, length: timedelta) -> None:
    rng = TimeRange(start, start + length)
    assert rng.start == whole_ms(start, up=True) and rng.end == whole_ms(start + length, up=True)
    assert rng.start <= rng.end


@settings(max_examples=300)
@given(moments, st.integers(1, 366))
def test_last_days_are_whole_utc_days_ending_with_today(now: datetime, days: int) -> None:
    rng = TimeRange.last_days(days, now)
    for bound in (rng.start, rng.end):
        assert bound.time() == datetime.min.time() and bound.tzinfo == UTC
    assert rng.end - rng.start == timedelta(days=days)
    assert rng.end - timedelta(days=1) <= now < rng.end


@settings(max_examples=300)
@given(st.integers(1971, 2199), st.integers(1, 12))
def test_a_month_is_its_calendar_days(year: int, month: int) -> None:
    rng = TimeRange.month(f"{year:04d}-{month:02d}")
    assert rng.start == datetime(year, month, 1, tzinfo=UTC)
    assert rng.end - rng.start == timedelta(days=calendar.monthrange(year, month)[1])
    assert rng.end.day == 1 and (rng.end.month, rng.end.year) == ((month % 12) + 1, year + (month == 12))


def test_now_is_a_whole_millisecond() -> None:
    assert utcnow().microsecond % 1000 == 0
