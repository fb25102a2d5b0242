"""What a dashboard view is asked for: time ranges, filters, keyset cursors, series steps and the bounds on them.

The vocabulary of the views' parameters, shared by :mod:`dashboards.queries` (which binds them to the SQL files),
the routes, the CLI and the billing statements; validated here, so that a value out of bounds is a
``DashboardError`` before any query runs.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, get_args

from dashboards.errors import DashboardError

Period = Literal["day", "week", "month"]
PERIODS: Final[tuple[str, ...]] = get_args(Period)
#: Speed-insight windows a caller may ask for.
WINDOWS: Final[dict[str, timedelta]] = {
    "1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24),
    "7d": timedelta(days=7), "30d": timedelta(days=30),
}
MAX_DAYS: Final = 366
MAX_LIMIT: Final = 1000
#: Dimensions a breakdown groups by, and the status classes a filter takes (4xx leaves 402 to itself).
DIMENSIONS: Final = ("customer", "tool", "status", "protocol")
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx", "402")
#: Bucket widths a time series may use, in seconds, and the most buckets one may have.
STEPS: Final = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
MAX_BUCKETS: Final = 1000
#: Buckets a time series aims at when the caller names no step (a chart's worth).
TARGET_BUCKETS: Final = 180
#: The times the store can hold (DateTime64(3)): range bounds outside them are refused.
EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def whole_ms(moment: datetime, *, up: bool) -> datetime:
    """``moment`` at the precision of stored times (DateTime64(3)): moved up or down to a whole millisecond.

    The engine cuts a bound's microseconds off when it binds it, which moves the bound down; a range
    bound moved up instead selects exactly the stored rows the exact bound selects.
    """
    sub = moment.microsecond % 1000
    if not sub:
        return moment
    down = moment - timedelta(microseconds=sub)
    return down + _MS if up else down


@dataclass(frozen=True)
class TimeRange:
    """A half-open UTC range ``[start, end)`` of whole milliseconds (bounds inside one are moved up)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise DashboardError("time range bounds must be timezone-aware")
        if self.end <= self.start:
            raise DashboardError("time range must end after it starts")
        if self.start < EARLIEST or self.end > LATEST:
            raise DashboardError(f"time range must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
        object.__setattr__(self, "start", whole_ms(self.start, up=True))
        object.__setattr__(self, "end", whole_ms(self.end, up=True))

    @classmethod
    def last_days(cls, days: int, now: datetime | None = None) -> TimeRange:
        """``days`` whole UTC days ending with today."""
        if not 1 <= days <= MAX_DAYS:
            raise DashboardError(f"days must be between 1 and {MAX_DAYS}")
        now = now or utcnow()
        tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        return cls(tomorrow - timedelta(days=days), tomorrow)

    @classmethod
    def month(cls, period: str) -> TimeRange:
        """The calendar month ``YYYY-MM``."""
        try:
            first = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
            nxt = (first + timedelta(days=32)).replace(day=1)
        except (ValueError, OverflowError) as exc:
            raise DashboardError(f"period must be a month like 2026-11, got {period!r}") from exc
        return cls(first, nxt)


@dataclass(frozen=True)
class Filters:
    """What the analytics views narrow to; '' means any. ``status`` is a class of STATUS_CLASSES."""

    customer: str = ""
    tool: str = ""
    status: str = ""
    protocol: str = ""

    def __post_init__(self) -> None:
        if self.status and self.status not in STATUS_CLASSES:
            raise DashboardError(f"status must be one of {', '.join(STATUS_CLASSES)}")

    def params(self) -> dict[str, str]:
        return {"customer": self.customer, "tool": self.tool, "status": self.status, "protocol": self.protocol}


ANY: Final = Filters()


@dataclass(frozen=True)
class Cursor:
    """Where a page of logs ends: the (event_time, request_id) of its last row, as an opaque token."""

    event_time: datetime
    request_id: str

    def encode(self) -> str:
        millis = (self.event_time - _EPOCH) // _MS
        return base64.urlsafe_b64encode(f"{millis}:{self.request_id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            millis, _, request_id = text.partition(":")
            moment = _EPOCH + int(millis) * _MS
        except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError) as exc:
            raise DashboardError("cursor is not one this API gave") from exc
        if not EARLIEST <= moment <= LATEST:
            raise DashboardError("cursor is not one this API gave")
        return cls(moment, request_id)


def series_step(rng: TimeRange, step: int | None = None) -> int:
    """The bucket width for a time series over ``rng``: ``step`` if given, else the smallest of STEPS that
    keeps the series near TARGET_BUCKETS; refused if the series would have over MAX_BUCKETS buckets."""
    seconds = (rng.end - rng.start).total_seconds()
    if step is None:
        step = next((s for s in STEPS if seconds / s <= TARGET_BUCKETS), STEPS[-1])
    elif step not in STEPS:
        raise DashboardError(f"step must be one of {', '.join(map(str, STEPS))} seconds")
    if seconds / step > MAX_BUCKETS:
        raise DashboardError(f"a time series has at most {MAX_BUCKETS} buckets: "
                             f"{math.ceil(seconds / step)} of {step} s asked for")
    return step


def holds_whole(start: datetime, end: datetime, unit: timedelta) -> bool:
    """Whether ``[start, end)`` holds a whole ``unit`` aligned to 1970-01-01 UTC (an hour, a UTC day)."""
    first = _EPOCH - ((_EPOCH - start) // unit) * unit  # the first boundary at or after start
    return first + unit <= end


def utcnow() -> datetime:
    """The time now, to the millisecond (the precision of stored times)."""
    return whole_ms(datetime.now(UTC), up=False)


__all__ = [
    "ANY",
    "DIMENSIONS",
    "EARLIEST",
    "LATEST",
    "MAX_BUCKETS",
    "MAX_DAYS",
    "MAX_LIMIT",
    "PERIODS",
    "STATUS_CLASSES",
    "STEPS",
    "TARGET_BUCKETS",
    "WINDOWS",
    "Cursor",
    "Filters",
    "Period",
    "TimeRange",
    "holds_whole",
    "series_step",
    "utcnow",
    "whole_ms",
]
