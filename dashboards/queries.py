"""Run the dashboard SQL files of ``schemas/queries`` with bound parameters: one method per view.

Each public method of :class:`DashboardQueries` is one view. Methods are synchronous (chDB has no
async client); the routes call them in Starlette's thread pool. Values are bound by the engine as
server-side parameters (``{agent_id:String}``), never formatted into SQL text: the filters too
(:class:`Filters`; every filtered file carries the same four conditions, where '' means any), and
the logs' search and cursor. Every view but the agents list reads one agent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

import schemas
from dashboards.errors import DashboardError
from dashboards.ranges import (
    ANY,
    DIMENSIONS,
    EARLIEST,
    LATEST,
    MAX_BUCKETS,
    MAX_DAYS,
    MAX_LIMIT,
    PERIODS,
    STATUS_CLASSES,
    STEPS,
    WINDOWS,
    Cursor,
    Filters,
    Period,
    TimeRange,
    holds_whole,
    series_step,
    utcnow,
    whole_ms,
)
from dashboards.sql.limits import SqlSettings, limit_hit
from schemas.headers import SECRET_HEADERS

log = logging.getLogger(__name__)

QUERY_DIR: Final = Path(schemas.__file__).resolve().parent / "queries"
_PERF_METRICS: Final = ("requests", "requests_per_minute", "error_rate", "avg_latency_ms",
                        "p50_latency_ms", "p75_latency_ms", "p90_latency_ms", "p95_latency_ms",
                        "p99_latency_ms")
_SUMMARY_METRICS: Final = (*_PERF_METRICS, "successes", "errors", "payment_required", "revenue", "paid_requests",
                           "customers")
#: Views that read whole days and hours from the projections of migration 0003 (schemas/queries/README.md).
#: A range holding no whole UTC day is read by the view's ``<name>_raw.sql`` instead, from raw rows alone:
#: planning the tiers and weighing the projections costs more than such a range's raw rows (docs/capacity.md).
TIERED: Final = frozenset({"latency_histogram", "revenue", "revenue_by_tool", "customers", "revenue_by_customer",
                           "revenue_all"})
#: ... and so is a range holding fewer of the agent's requests than this (``range_requests.sql`` sizes it
#: from the minute rollup): planning a tiered query costs ~20 ms on its own, so below about a million rows
#: the raw file answers as fast or faster (at 100 M stored rows, 30-day ranges: tiered against raw
#: 49 - 191 ms against 48 - 124 ms for an agent with 1 - 1.4 M rows, 56 - 202 against 123 - 258 ms at 3.3 M).
TIERS_FROM_ROWS: Final = 1_000_000
#: Views with a second file over the hour and day sketches of migration 0006 (``<name>_sketch.sql``), read for a
#: range holding a whole hour, no filter (a breakdown: by tool; a series: a step of whole hours) and at least
#: ``SKETCH_FROM_ROWS[name]`` of the agent's requests (with the period before it, for a breakdown). Its counts,
#: sums and averages are exact; its percentiles (t-digest) and distinct customers (uniq) are estimates, and its
#: rows say so (``estimated``). Exact percentiles of a range mean reading every one of its rows (~460 ms for an agent's
#: 14 M-row month on two cores); the sketches cost about the same whatever the rows, 25 - 45 ms for a month
#: here, mostly planning the tiers. Each threshold is where the two files cross for that view
#: (docs/capacity.md): below it the exact file answers as fast or faster.
SKETCHED: Final = frozenset({"daily", "tools", "series", "breakdown"})
SKETCH_FROM_ROWS: Final[Mapping[str, int]] = {"daily": 200_000, "series": 200_000, "tools": 400_000,
                                              "breakdown": 400_000}
#: The speed view reads a range holding a whole UTC day and at least this many of the agent's requests with its
#: three files (``performance.sql``, ``latency_histogram.sql`` in tiers, ``performance_hourly.sql``), any other
#: range in one pass (``performance_insights.sql``). The one pass pays a query's floor once instead of three times
#: but keeps a percentile state per hour and merges them: about half the time up to ~50,000 rows, the same near
#: 300,000, and 12 - 22 % more above that at 100 M stored rows (docs/capacity.md).
SPEED_ONE_PASS_BELOW_ROWS: Final = 300_000
#: A period's stats when it has no traffic (``performance.sql`` has no row for it).
_NO_TRAFFIC: Final[Mapping[str, float]] = {
    "requests": 0, "successes": 0, "errors": 0, "payment_required": 0, "revenue": 0.0, "paid_requests": 0,
    "customers": 0, "error_rate": 0.0, "avg_latency_ms": 0.0, "requests_per_minute": 0.0,
    **{f"p{p}_latency_ms": 0.0 for p in (50, 75, 90, 95, 99)}}
#: The lower ends of the latency histogram's buckets, in ms (the last bucket has no upper end); the same as
#: ``latency_histogram.sql``'s, which tests/integration/dashboards/test_views_explore.py checks.
LATENCY_BOUNDS_MS: Final = (0., 10., 25., 50., 100., 250., 500., 1000., 2500., 5000., 10000.)
#: The fields of a ``performance_insights.sql`` hour, as ``performance_hourly.sql`` names them.
_HOURLY: Final = ("hour", "requests", "errors", "avg_latency_ms", "p95_latency_ms")
_DAY: Final = timedelta(days=1)
_HOUR: Final = timedelta(hours=1)


@cache
def view_limits() -> dict[str, Any]:
    """The limits every view's query runs under (read once from the environment: ``SqlSettings``)."""
    return SqlSettings().views()


@cache
def load_sql(name: str) -> str:
    """Text of ``schemas/queries/<name>.sql`` (names are our own constants, never user input)."""
    path = QUERY_DIR / f"{name}.sql"
    if not path.is_file():
        raise DashboardError(f"no dashboard query {name!r} in {QUERY_DIR}")
    return path.read_text()


def query_names() -> list[str]:
    return sorted(p.stem for p in QUERY_DIR.glob("*.sql"))


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


def _compared(rng: TimeRange, rows: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """A range's ``current`` and ``previous`` stats (zeros for a period without traffic) and the change."""
    current = rows.get("current") or dict(_NO_TRAFFIC)
    previous = rows.get("previous") or dict(_NO_TRAFFIC)
    return {
        "start": rng.start, "end": rng.end, "previous_start": rng.start - (rng.end - rng.start),
        "current": current, "previous": previous,
        "change_pct": {m: _change(current[m], previous[m]) for m in _SUMMARY_METRICS}
        if "previous" in rows else dict.fromkeys(_SUMMARY_METRICS),
    }


class DashboardQueries:
    """The dashboard views over one ClickHouse client."""

    def __init__(self, client: Client, tiers_from_rows: int = TIERS_FROM_ROWS,
                 sketch_from_rows: Mapping[str, int] | int | None = SKETCH_FROM_ROWS,
                 speed_one_pass_below_rows: int = SPEED_ONE_PASS_BELOW_ROWS) -> None:
        self.client = client
        self.tiers_from_rows = tiers_from_rows  # 0: tiers for every range holding a whole day
        self.sketch_from_rows = sketch_from_rows  # per view or one for all: 0 wherever they answer, None never
        self.speed_one_pass_below_rows = speed_one_pass_below_rows  # 0: three files for every range of whole days
        self._sizes: dict[tuple[str, datetime, datetime], int] = {}

    def file_for(self, name: str, params: Mapping[str, Any]) -> str:
        """The SQL file that answers view ``name`` for ``params``: a tiered view's ``<name>_raw`` for a range
        holding no whole UTC day or fewer than ``tiers_from_rows`` of the agent's requests; a sketched view's
        ``<name>_sketch`` for a range holding at least ``sketch_from_rows`` of them (:data:`SKETCHED`)."""
        if name in SKETCHED:
            return f"{name}_sketch" if self._sketch_answers(name, params) else name
        if name not in TIERED:
            return name
        start, end = params["start"], params["end"]
        if not holds_whole(start, end, _DAY):
            return f"{name}_raw"
        if self.tiers_from_rows and self._size(params["agent_id"], start, end) < self.tiers_from_rows:
            return f"{name}_raw"
        return name

    def _sketch_answers(self, name: str, params: Mapping[str, Any]) -> bool:
        """Whether the hour and day sketches answer ``name`` for ``params`` (see :data:`SKETCHED`)."""
        if self.sketch_from_rows is None or any(params[f] for f in ("customer", "tool", "status", "protocol")):
            return False
        if name == "breakdown" and params["by"] != "tool" or name == "series" and params["step_s"] % 3600:
            return False
        start, end = params.get("prev_start", params["start"]), params["end"]
        if not holds_whole(params["start"], end, _HOUR):
            return False
        least = self.sketch_from_rows if isinstance(self.sketch_from_rows, int) else self.sketch_from_rows[name]
        return not least or self._size(params["agent_id"], start, end) >= least

    def _size(self, agent_id: str, start: datetime, end: datetime) -> int:
        """The agent's requests in the minutes of ``[start, end)`` (``range_requests.sql``), once per view."""
        key = (agent_id, start, end)
        if key not in self._sizes:  # revenue's three queries share it
            [row] = self.run("range_requests", {"agent_id": agent_id, "start": start, "end": end})
            self._sizes[key] = int(row["requests"])
        return self._sizes[key]

    def run(self, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run ``schemas/queries/<name>.sql`` (or the file :meth:`file_for` picks) with ``params`` bound
        server-side, under the read side's limits (``dashboards/sql/limits.py``; one stopped by a limit is a
        ``DashboardError`` naming it); rows as dicts."""
        limits = view_limits()
        name = self.file_for(name, params)
        try:
            result = self.client.query(load_sql(name), parameters=dict(params), settings=limits)
        except DatabaseError as exc:
            stopped = limit_hit(exc, limits)
            if stopped is None:
                raise
            raise DashboardError(f"{stopped}: ask for a shorter range") from exc
        cols = result.column_names
        return [{c: _clean(v) for c, v in zip(cols, row, strict=True)} for row in result.result_rows]

    def overview(self, agent_id: str, now: datetime | None = None) -> dict[str, Any]:
        now = whole_ms(now, up=False) if now else utcnow()  # "now" is an instant of the stored precision
        return self.run("overview", {"agent_id": agent_id, "now": now})[0]

    def daily(self, agent_id: str, days: int, now: datetime | None = None,
              filters: Filters = ANY) -> list[dict[str, Any]]:
        rng = TimeRange.last_days(days, now)
        return self.run("daily", {"agent_id": agent_id, "start": rng.start, "end": rng.end, **filters.params()})

    def customers(self, agent_id: str, rng: TimeRange, limit: int = 100,
                  filters: Filters = ANY) -> list[dict[str, Any]]:
        return self.run("customers", {"agent_id": agent_id, "start": rng.start, "end": rng.end,
                                      "limit": _limit(limit), **filters.params()})

    def tools(self, agent_id: str, rng: TimeRange, limit: int = 100, filters: Filters = ANY) -> list[dict[str, Any]]:
        return self.run("tools", {"agent_id": agent_id, "start": rng.start, "end": rng.end,
                                  "limit": _limit(limit), **filters.params()})

    def logs(self, agent_id: str, limit: int = 50, rng: TimeRange | None = None, filters: Filters = ANY,
             q: str = "", cursor: Cursor | None = None) -> tuple[list[dict[str, Any]], Cursor | None]:
        """One page of requests, newest first, in ``rng`` (all time if None) after ``cursor``; and the cursor
        of the next page (None on the last page). One row more than the page is read to know."""
        rng = rng or TimeRange(EARLIEST, LATEST)
        before = cursor or Cursor(rng.end, "")
        rows = self.run("logs", {"agent_id": agent_id, "start": rng.start, "end": rng.end,
                                 "before_time": before.event_time, "before_id": before.request_id, "q": q,
                                 "limit": _limit(limit) + 1, **filters.params()})
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], Cursor(last["event_time"], last["request_id"])

    def request(self, agent_id: str, request_id: str) -> dict[str, Any] | None:
        """One request with everything stored about it (secret headers removed again); None if unknown."""
        rows = self.run("request", {"agent_id": agent_id, "request_id": request_id})
        if not rows:
            return None
        row = rows[0]
        row["headers"] = {k: v for k, v in sorted(row["headers"].items()) if k.lower() not in SECRET_HEADERS}
        return row

    def compare(self, agent_id: str, rng: TimeRange, filters: Filters = ANY) -> dict[str, Any]:
        """Totals of ``rng`` ("current") and of the period of the same length before it ("previous"), with
        the change in percent."""
        return _compared(rng, self._periods("performance", agent_id, rng, filters))

    def performance(self, agent_id: str, window: str = "24h", now: datetime | None = None,
                    rng: TimeRange | None = None, filters: Filters = ANY) -> dict[str, Any]:
        """Speed insights for ``rng``, or else the last ``window``: stats now and before, change, histogram,
        hourly; in one pass over the rows (``performance_insights.sql``) unless :meth:`speed_in_one_pass` says no."""
        if rng is None:
            if window not in WINDOWS:
                raise DashboardError(f"window must be one of {', '.join(WINDOWS)}")
            end = whole_ms(now, up=False) if now else utcnow()
            rng = TimeRange(end - WINDOWS[window], end)
        if not self.speed_in_one_pass(agent_id, rng):
            result = self.compare(agent_id, rng, filters)
            result["change_pct"] = {m: result["change_pct"][m] for m in _PERF_METRICS}
            params = {"agent_id": agent_id, "start": rng.start, "end": rng.end, **filters.params()}
            return {"window": window, **result, "histogram": self.run("latency_histogram", params),
                    "hourly": self.run("performance_hourly", params)}
        rows = self._periods("performance_insights", agent_id, rng, filters, bounds=list(LATENCY_BOUNDS_MS))
        shown = {period: (row.pop("hourly"), row.pop("histogram")) for period, row in rows.items()}
        hourly, counts = shown.get("current", ([], [0] * len(LATENCY_BOUNDS_MS)))
        result = _compared(rng, rows)
        result["change_pct"] = {m: result["change_pct"][m] for m in _PERF_METRICS}
        buckets = zip(LATENCY_BOUNDS_MS, (*LATENCY_BOUNDS_MS[1:], 0.0), counts, strict=True)
        return {"window": window, **result,
                "histogram": [{"bucket": i, "lower_ms": lower, "upper_ms": upper, "requests": n}
                              for i, (lower, upper, n) in enumerate(buckets, start=1)],
                "hourly": [dict(zip(_HOURLY, (_clean(v) for v in hour), strict=True)) for hour in hourly]}

    def speed_in_one_pass(self, agent_id: str, rng: TimeRange) -> bool:
        """Whether the speed view reads ``rng`` in one pass (see :data:`SPEED_ONE_PASS_BELOW_ROWS`)."""
        if not holds_whole(rng.start, rng.end, _DAY):
            return True
        return self._size(agent_id, rng.start, rng.end) < self.speed_one_pass_below_rows

    def _periods(self, name: str, agent_id: str, rng: TimeRange, filters: Filters,
                 **extra: Any) -> dict[str, dict[str, Any]]:
        """The rows of a file over ``rng`` and the period of the same length before it, by period."""
        prev_start = rng.start - (rng.end - rng.start)
        if prev_start < EARLIEST:
            raise DashboardError(f"the period before the range must start after {EARLIEST:%Y-%m-%d}")
        params = {"agent_id": agent_id, "prev_start": prev_start, "start": rng.start, "end": rng.end,
                  **filters.params(), **extra}
        return {r.pop("period"): r for r in self.run(name, params)}

    def series(self, agent_id: str, rng: TimeRange, step: int | None = None,
               filters: Filters = ANY) -> dict[str, Any]:
        """Requests, errors, 402s, revenue and latency per bucket of ``rng`` (see :func:`series_step`)."""
        step = series_step(rng, step)
        points = self.run("series", {"agent_id": agent_id, "start": rng.start, "end": rng.end, "step_s": step,
                                     **filters.params()})
        return {"start": rng.start, "end": rng.end, "step_seconds": step, "points": points}

    def breakdown(self, agent_id: str, rng: TimeRange, by: str, limit: int = 100,
                  filters: Filters = ANY) -> dict[str, Any]:
        """Traffic of ``rng`` per customer, tool, status class or protocol, with each group's requests in the
        period before."""
        if by not in DIMENSIONS:
            raise DashboardError(f"by must be one of {', '.join(DIMENSIONS)}")
        prev_start = rng.start - (rng.end - rng.start)
        if prev_start < EARLIEST:
            raise DashboardError(f"the period before the range must start after {EARLIEST:%Y-%m-%d}")
        rows = self.run("breakdown", {"agent_id": agent_id, "by": by, "prev_start": prev_start, "start": rng.start,
                                      "end": rng.end, "limit": _limit(limit), **filters.params()})
        return {"by": by, "start": rng.start, "end": rng.end, "previous_start": prev_start, "groups": rows}

    def agents(self, agent_id: str | None, limit: int = 1000, now: datetime | None = None,
               known: Collection[str] = ()) -> list[dict[str, Any]]:
        """Agents with traffic (every one when ``agent_id`` is None, else that one, with zeros if it has none),
        with their requests of the last 24 hours; then, with zeros, the ``known`` agents without traffic (the
        host's key registry knows them: an agent exists from its first key, not only from its first request)."""
        since = (whole_ms(now, up=False) if now else utcnow()) - timedelta(hours=24)
        rows = self.run("agents", {"all": int(agent_id is None), "agent_id": agent_id or "", "since": since,
                                   "limit": _limit(limit)})
        if agent_id is not None and not rows:
            known = [agent_id]
        seen = {r["agent_id"] for r in rows}
        rows += [{"agent_id": a, "requests": 0, "errors": 0, "payment_required": 0, "revenue": 0.0,
                  "recent_requests": 0, "first_seen": None, "last_seen": None} for a in sorted(set(known) - seen)]
        return rows

    def revenue(self, agent_id: str, rng: TimeRange, period: str = "day", limit: int = 100,
                filters: Filters = ANY) -> dict[str, Any]:
        """Revenue per period of ``rng``, per tool and per paying customer (the first ``limit``), in one query
        (``revenue_all.sql``, or ``revenue_all_raw.sql``: :meth:`file_for`)."""
        period = _period(period)
        params = {"agent_id": agent_id, "start": rng.start, "end": rng.end, "period": period,
                  "limit": _limit(limit), **filters.params()}
        parts: dict[str, list[dict[str, Any]]] = {"period": [], "tool": [], "customer": []}
        for row in self.run("revenue_all", params):
            parts[row.pop("part")].append(row)
        series = [{k: r[k] for k in ("period_start", "amount", "paid_requests")} for r in parts["period"]]
        return {
            "period": period, "start": rng.start, "end": rng.end,
            "total_amount": sum(r["amount"] for r in series),
            "paid_requests": sum(r["paid_requests"] for r in series),
            "series": series,
            "by_tool": [{k: r[k] for k in ("tool_name", "amount", "paid_requests")} for r in parts["tool"]],
            "by_customer": [{k: r[k] for k in ("customer_id", "amount", "paid_requests")} for r in parts["customer"]],
        }

    def usage(self, app_id: str, rng: TimeRange, period: str = "day") -> list[dict[str, Any]]:
        """Billing usage per (app, period, module, model); ``app_id=''`` means every app."""
        return self.run("usage", {"app_id": app_id, "start": rng.start, "end": rng.end,
                                  "period": _period(period)})


__all__ = [
    "ANY",
    "DIMENSIONS",
    "MAX_BUCKETS",
    "SKETCHED",
    "SKETCH_FROM_ROWS",
    "STATUS_CLASSES",
    "TIERED",
    "TIERS_FROM_ROWS",
    "STEPS",
    "Cursor",
    "Filters",
    "series_step",
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
    "holds_whole",
    "load_sql",
    "query_names",
    "utcnow",
    "whole_ms",
]
