"""Run the dashboard SQL files of ``schemas/queries`` with bound parameters: one method per view.

Each public method of :class:`DashboardQueries` is one view. Methods are synchronous (chDB has no
async client); the routes call them in Starlette's thread pool. Values are bound by the engine as
server-side parameters (``{agent_id:String}``), never formatted into SQL text.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal, get_args

from clickhouse_connect.driver.client import Client

import schemas
from dashboards.errors import DashboardError

log = logging.getLogger(__name__)

QUERY_DIR: Final = Path(schemas.__file__).resolve().parent / "queries"
Period = Literal["day", "week", "month"]
PERIODS: Final[tuple[str, ...]] = get_args(Period)
#: Speed-insight windows a caller may ask for.
WINDOWS: Final[dict[str, timedelta]] = {
    "1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24),
    "7d": timedelta(days=7), "30d": timedelta(days=30),
}
MAX_DAYS: Final = 366
MAX_LIMIT: Final = 1000
#: The times the store can hold (DateTime64(3)): range bounds outside them are refused.
EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_PERF_METRICS: Final = ("requests", "requests_per_minute", "error_rate", "avg_latency_ms",
                        "p50_latency_ms", "p75_latency_ms", "p90_latency_ms", "p95_latency_ms",
                        "p99_latency_ms")


@cache
def load_sql(name: str) -> str:
    """Text of ``schemas/queries/<name>.sql`` (names are our own constants, never user input)."""
    path = QUERY_DIR / f"{name}.sql"
    if not path.is_file():
        raise DashboardError(f"no dashboard query {name!r} in {QUERY_DIR}")
    return path.read_text()


def query_names() -> list[str]:
    return sorted(p.stem for p in QUERY_DIR.glob("*.sql"))


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


def utcnow() -> datetime:
    """The time now, to the millisecond (the precision of stored times)."""
    return whole_ms(datetime.now(UTC), up=False)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # the engine returns UTC wall time
    return value


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise DashboardError(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _period(period: str) -> str:
    if period not in PERIODS:
        raise DashboardError(f"period must be one of {', '.join(PERIODS)}")
    return period


def _change(current: float | None, previous: float | None) -> float | None:
    """Relative change in percent; None when there is nothing to compare with."""
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / previous * 100.0


class DashboardQueries:
    """The dashboard views over one ClickHouse client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def run(self, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run ``schemas/queries/<name>.sql`` with ``params`` bound server-side; rows as dicts."""
        result = self.client.query(load_sql(name), parameters=dict(params))
        cols = result.column_names
        return [{c: _clean(v) for c, v in zip(cols, row, strict=True)} for row in result.result_rows]

    def overview(self, agent_id: str, now: datetime | None = None) -> dict[str, Any]:
        now = whole_ms(now, up=False) if now else utcnow()  # "now" is an instant of the stored precision
        return self.run("overview", {"agent_id": agent_id, "now": now})[0]

    def daily(self, agent_id: str, days: int, now: datetime | None = None) -> list[dict[str, Any]]:
        rng = TimeRange.last_days(days, now)
        return self.run("daily", {"agent_id": agent_id, "start": rng.start, "end": rng.end})

    def customers(self, agent_id: str, rng: TimeRange, limit: int = 100) -> list[dict[str, Any]]:
        return self.run("customers", {"agent_id": agent_id, "start": rng.start, "end": rng.end,
                                      "limit": _limit(limit)})

    def tools(self, agent_id: str, rng: TimeRange, limit: int = 100) -> list[dict[str, Any]]:
        return self.run("tools", {"agent_id": agent_id, "start": rng.start, "end": rng.end,
                                  "limit": _limit(limit)})

    def logs(self, agent_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return self.run("logs", {"agent_id": agent_id, "limit": _limit(limit)})

    def performance(self, agent_id: str, window: str = "24h", now: datetime | None = None) -> dict[str, Any]:
        """Speed insights for the last ``window``: stats now and before, change, histogram, hourly."""
        if window not in WINDOWS:
            raise DashboardError(f"window must be one of {', '.join(WINDOWS)}")
        end = whole_ms(now, up=False) if now else utcnow()
        start = end - WINDOWS[window]
        prev_start = start - WINDOWS[window]
        params = {"agent_id": agent_id, "prev_start": prev_start, "start": start, "end": end}
        rows = {r.pop("period"): r for r in self.run("performance", params)}
        empty = {"requests": 0, "successes": 0, "errors": 0, "payment_required": 0, "error_rate": 0.0,
                 "avg_latency_ms": 0.0, "requests_per_minute": 0.0,
                 **{f"p{p}_latency_ms": 0.0 for p in (50, 75, 90, 95, 99)}}
        current = rows.get("current", empty)
        previous = rows.get("previous", empty)
        rng = {"agent_id": agent_id, "start": start, "end": end}
        return {
            "window": window, "start": start, "end": end,
            "current": current, "previous": previous,
            "change_pct": {m: _change(current[m], previous[m]) for m in _PERF_METRICS}
            if "previous" in rows else dict.fromkeys(_PERF_METRICS),
            "histogram": self.run("latency_histogram", rng),
            "hourly": self.run("performance_hourly", rng),
        }

    def revenue(self, agent_id: str, rng: TimeRange, period: str = "day", limit: int = 100) -> dict[str, Any]:
        params = {"agent_id": agent_id, "start": rng.start, "end": rng.end}
        series = self.run("revenue", {**params, "period": _period(period)})
        return {
            "period": period, "start": rng.start, "end": rng.end,
            "total_amount": sum(r["amount"] for r in series),
            "paid_requests": sum(r["paid_requests"] for r in series),
            "series": series,
            "by_tool": self.run("revenue_by_tool", params),
            "by_customer": self.run("revenue_by_customer", {**params, "limit": _limit(limit)}),
        }

    def usage(self, app_id: str, rng: TimeRange, period: str = "day") -> list[dict[str, Any]]:
        """Billing usage per (app, period, module, model); ``app_id=''`` means every app."""
        return self.run("usage", {"app_id": app_id, "start": rng.start, "end": rng.end,
                                  "period": _period(period)})


__all__ = [
    "MAX_DAYS",
    "MAX_LIMIT",
    "PERIODS",
    "QUERY_DIR",
    "WINDOWS",
    "EARLIEST",
    "LATEST",
    "DashboardQueries",
    "Period",
    "TimeRange",
    "load_sql",
    "query_names",
    "utcnow",
    "whole_ms",
]
