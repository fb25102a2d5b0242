"""Every dashboard SQL view gives the numbers a naive Python computation gives over the raw rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from dashboards.errors import DashboardError
from dashboards.queries import DashboardQueries, TimeRange, query_names
from tests.integration.dashboards import sample

AGENTS = ["agent-a", "agent-b", "agent-c"]


@pytest.fixture(scope="module")
def data() -> tuple[list[sample.Req], list[sample.Usage]]:
    return sample.make_requests(AGENTS, 1500), sample.make_usage(["agent-a", "app-2"], 400)


@pytest.fixture
def views(clickhouse: Client, data: tuple[list[sample.Req], list[sample.Usage]]) -> DashboardQueries:
    sample.insert_requests(clickhouse, data[0])
    sample.insert_usage(clickhouse, data[1])
    return DashboardQueries(clickhouse)


def approx_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        exact = {k: v for k, v in w.items() if not isinstance(v, float)}
        assert {k: g[k] for k in exact} == exact
        assert {k: g[k] for k in w if k not in exact} == pytest.approx({k: w[k] for k in w if k not in exact},
                                                                       rel=1e-9, abs=1e-9)


def same_map(got: dict[Any, tuple[Any, ...]], want: dict[Any, tuple[Any, ...]]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key


def test_every_view_file_is_parameterised_select() -> None:
    from dashboards.queries import load_sql

    names = query_names()
    assert {"overview", "daily", "customers", "tools", "logs", "performance", "latency_histogram",
            "performance_hourly", "revenue", "revenue_by_tool", "revenue_by_customer", "usage"} <= set(names)
    for name in names:
        text = load_sql(name)
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        assert body.lstrip().upper().startswith(("SELECT", "WITH")), name
        assert "{" in body and "%" not in body, name


def test_overview_matches_naive(views: DashboardQueries, data: Any) -> None:
    reqs = data[0]
    for agent in AGENTS:
        got = views.overview(agent, now=sample.NOW)
        want = sample.naive_overview(reqs, agent, sample.NOW)
        last = got.pop("last_request_at")
        assert last == want.pop("last_request_at")
        assert got == pytest.approx(want, rel=1e-9)
        assert got["today_requests"] > 0 and got["payment_required"] > 0 and got["revenue"] > 0
    empty = views.overview("nobody", now=sample.NOW)
    assert empty["total_requests"] == 0 and empty["avg_latency_ms"] == 0 and empty["last_request_at"] is None


@pytest.mark.parametrize("offset_ms", [0, 17_523])
def test_overview_windows_are_exact_at_their_edges(views: DashboardQueries, clickhouse: Client,
                                                   offset_ms: int) -> None:
    """The rollup covers whole minutes; requests around a window start that falls inside a minute."""
    now = sample.NOW + timedelta(milliseconds=offset_ms)
    edges = []
    for days in (7, 30):
        start = now - timedelta(days=days)
        for delta_ms in (-1, 0, 1, 30_000, 59_999, 60_000, -60_001):
            edges.append(start + timedelta(milliseconds=delta_ms))
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    edges += [midnight - timedelta(milliseconds=1), midnight, now - timedelta(milliseconds=1)]
    reqs = [sample.Req("agent-edge", f"edge-{offset_ms}-{i}", t, 200 if i % 3 else 500, 10.0 + i, "c1", "t1",
                       0.01 * (i % 2)) for i, t in enumerate(edges)]
    sample.insert_requests(clickhouse, reqs)
    got = views.overview("agent-edge", now=now)
    want = sample.naive_overview(reqs, "agent-edge", now)
    assert got.pop("last_request_at") == want.pop("last_request_at")
    assert got == pytest.approx(want, rel=1e-9)
    assert got["week_requests"] == sum(t >= now - timedelta(days=7) for t in edges)


def test_daily_trend_matches_naive_and_fills_gaps(views: DashboardQueries, data: Any) -> None:
    got = views.daily("agent-b", 45, now=sample.NOW)
    rng = TimeRange.last_days(45, sample.NOW)
    want = sample.naive_daily(data[0], "agent-b", rng.start, rng.end)
    assert len(got) == 45 and got[-1]["day"] == sample.NOW.date()
    approx_rows(got, want)
    assert any(r["requests"] == 0 for r in got)  # a day without traffic is shown, not skipped


def test_customers_and_tools_match_naive(views: DashboardQueries, data: Any) -> None:
    rng = TimeRange(sample.NOW - timedelta(days=14), sample.NOW)
    got = views.customers("agent-a", rng, limit=1000)
    want = sample.naive_customers(data[0], "agent-a", rng.start, rng.end)
    approx_rows(got, want)
    assert views.customers("agent-a", rng, limit=3) == got[:3]
    approx_rows(views.tools("agent-c", rng), sample.naive_tools(data[0], "agent-c", rng.start, rng.end))


def test_logs_are_most_recent_first(views: DashboardQueries, data: Any) -> None:
    got, _next_page = views.logs("agent-a", limit=20)
    want = sorted(sample.traffic(data[0], "agent-a"), key=lambda r: (r.event_time, r.request_id), reverse=True)[:20]
    assert [r["request_id"] for r in got] == [r.request_id for r in want]
    assert [r["status_code"] for r in got] == [r.status_code for r in want]
    assert got[0]["event_time"].tzinfo is not None


def test_performance_matches_naive_with_change_and_histogram(views: DashboardQueries, data: Any) -> None:
    perf = views.performance("agent-a", "24h", now=sample.NOW)
    start, prev = sample.NOW - timedelta(hours=24), sample.NOW - timedelta(hours=48)
    cur_rows = sample.traffic(data[0], "agent-a", start, sample.NOW)
    prev_rows = sample.traffic(data[0], "agent-a", prev, start)
    for got, rows in ((perf["current"], cur_rows), (perf["previous"], prev_rows)):
        want = sample.naive_perf(rows, 24 * 60)  # revenue and customers: test_views_explore.py
        assert {k: got[k] for k in want} == pytest.approx(want, rel=1e-9)
    p95_change = perf["change_pct"]["p95_latency_ms"]
    cur_p95, prev_p95 = perf["current"]["p95_latency_ms"], perf["previous"]["p95_latency_ms"]
    assert p95_change == pytest.approx((cur_p95 / prev_p95 - 1) * 100)
    assert [b["requests"] for b in perf["histogram"]] == sample.naive_histogram(cur_rows)
    assert [b["lower_ms"] for b in perf["histogram"]] == sample.HIST_BOUNDS
    hourly = {r["hour"]: r["requests"] for r in perf["hourly"]}
    want: dict[datetime, int] = {}
    for r in cur_rows:
        h = r.event_time.replace(minute=0, second=0, microsecond=0)
        want[h] = want.get(h, 0) + 1
    assert hourly == want
    quiet = views.performance("nobody", "1h", now=sample.NOW)
    assert quiet["current"]["requests"] == 0 and quiet["change_pct"]["requests"] is None
    assert sum(b["requests"] for b in quiet["histogram"]) == 0


@pytest.mark.parametrize("period", ["day", "week", "month"])
def test_revenue_matches_naive(views: DashboardQueries, data: Any, period: str) -> None:
    rng = TimeRange(sample.NOW - timedelta(days=40), sample.NOW + timedelta(seconds=1))
    got = views.revenue("agent-b", rng, period)
    want = sample.naive_revenue(data[0], "agent-b", rng.start, rng.end, period)
    same_map({r["period_start"]: (r["amount"], r["paid_requests"]) for r in got["series"]}, want)
    assert got["total_amount"] == pytest.approx(sum(a for a, _ in want.values()))
    rows = sample.traffic(data[0], "agent-b", rng.start, rng.end)
    by_tool: dict[str, float] = {}
    for r in rows:
        if r.x402_amount > 0:
            by_tool[r.tool_name] = by_tool.get(r.tool_name, 0.0) + r.x402_amount
    assert {r["tool_name"]: r["amount"] for r in got["by_tool"]} == pytest.approx(by_tool)
    assert sum(r["amount"] for r in got["by_customer"]) == pytest.approx(got["total_amount"])


@pytest.mark.parametrize(("app", "period"), [("agent-a", "day"), ("", "month"), ("app-2", "week")])
def test_usage_matches_naive(views: DashboardQueries, data: Any, app: str, period: str) -> None:
    rng = TimeRange(sample.NOW - timedelta(days=60), sample.NOW)
    got = views.usage(app, rng, period)
    want = sample.naive_usage(data[1], app, rng.start, rng.end, period)
    same_map({(r["app_id"], r["period_start"], r["module"], r["model"]): (r["reports"], r["units"])
              for r in got}, {k: v[:2] for k, v in want.items()})  # amounts: test_statements*.py
    assert len(got) == len(want) > 0


def test_bad_parameters_are_refused(views: DashboardQueries) -> None:
    with pytest.raises(DashboardError):
        views.performance("agent-a", "2w")
    with pytest.raises(DashboardError):
        views.logs("agent-a", limit=100_000)
    with pytest.raises(DashboardError):
        views.revenue("agent-a", TimeRange.last_days(3), "year")
    with pytest.raises(DashboardError):
        TimeRange(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    # a hostile agent id is bound as a value, not spliced into SQL
    assert views.overview("x' OR 1=1 --")["total_requests"] == 0


@pytest.mark.parametrize("span", [timedelta(days=2, seconds=28.155), timedelta(seconds=20)])
def test_usage_is_exact_for_ranges_that_cut_minutes(views: DashboardQueries, clickhouse: Client,
                                                    span: timedelta) -> None:
    """Whole minutes come from the rollup, the cut minutes from raw reports: no report lost or doubled."""
    start = sample.NOW - timedelta(days=3) + timedelta(seconds=12.345)
    end = start + span
    times = [start + timedelta(milliseconds=d) for d in (-1, 0, 1, 10_000, 47_654, 47_655, 60_000, 120_000)]
    times += [end + timedelta(milliseconds=d) for d in (-40_501, -1, 0, 1, -20_000)]
    usage = []
    for i, t in enumerate(times):
        u = sample.Usage("app-edge", f"edge-{span.total_seconds()}-{i}", "llm", "gpt-4", 100 + i, t)
        usage.append(u)
    sample.insert_usage(clickhouse, usage)
    got = views.usage("app-edge", TimeRange(start, end), "day")
    want = sample.naive_usage(usage, "app-edge", start, end, "day")
    same_map({(r["app_id"], r["period_start"], r["module"], r["model"]): (r["reports"], r["units"])
              for r in got}, {k: v[:2] for k, v in want.items()})  # amounts: test_statements*.py
    assert sum(r["reports"] for r in got) == sum(start <= t < end for t in times) > 0
