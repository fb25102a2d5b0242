"""The exploring views — filters, a range against the period before, time series, breakdowns, logs search and
keyset pages, one request, the agents list — give what a naive Python computation gives over the raw rows."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from dashboards.errors import DashboardError
from dashboards.queries import (
    LATENCY_BOUNDS_MS,
    MAX_BUCKETS,
    STEPS,
    TIERS_FROM_ROWS,
    Cursor,
    DashboardQueries,
    Filters,
    TimeRange,
    load_sql,
    query_names,
    series_step,
)
from tests.integration.dashboards import sample

AGENTS = ["agent-a", "agent-b"]
NOW = sample.NOW


@pytest.fixture(scope="module")
def reqs() -> list[sample.Req]:
    rows = sample.make_requests(AGENTS, 1500, seed=21)
    for i, r in enumerate(rows):  # a second protocol, so that a protocol filter has something to leave out
        r.path = "/mcp" if i % 3 == 0 else r.path
    return rows


@pytest.fixture
def views(clickhouse: Client, reqs: list[sample.Req]) -> DashboardQueries:
    insert(clickhouse, reqs)
    return DashboardQueries(clickhouse)


def insert(client: Client, reqs: list[sample.Req]) -> None:
    sample.insert_requests(client, reqs)
    # sample rows are all "http"; the /mcp ones become "mcp" (an update of the raw rows only: no rollup reads it)
    client.command("ALTER TABLE request_logs UPDATE protocol = 'mcp' WHERE path = '/mcp'",
                   settings={"mutations_sync": 2})


def protocol(r: sample.Req) -> str:
    return "mcp" if r.path == "/mcp" else "http"


def status_class(code: int) -> str:
    return "402" if code == 402 else f"{code // 100}xx"


def matches(r: sample.Req, f: Filters) -> bool:
    return ((not f.customer or r.customer_id == f.customer) and (not f.tool or r.tool_name == f.tool)
            and (not f.status or status_class(r.status_code) == f.status)
            and (not f.protocol or protocol(r) == f.protocol))


def rows_of(reqs: list[sample.Req], agent: str, start: datetime, end: datetime, f: Filters) -> list[sample.Req]:
    return [r for r in sample.traffic(reqs, agent, start, end) if matches(r, f)]


FILTERS = [Filters(), Filters(status="4xx"), Filters(status="402"), Filters(protocol="mcp", status="2xx"),
           Filters(customer="cust-a-003"), Filters(tool="search", protocol="http")]


def test_every_filtered_view_binds_the_same_four_conditions() -> None:
    """The filters are one block of bound parameters, the same text in every file that takes them."""
    def lines(name: str) -> list[str]:
        return [line.strip() for line in load_sql(name).splitlines()]

    block = [line for line in lines("series") if re.match(r"AND \(\{(customer|tool|status|protocol):String\}", line)]
    assert len(block) == 4
    filtered = [n for n in query_names() if "{protocol:String}" in load_sql(n)]
    assert {"daily", "customers", "tools", "logs", "performance", "latency_histogram", "performance_hourly",
            "performance_insights", "revenue", "revenue_all", "revenue_all_raw", "revenue_by_tool",
            "revenue_by_customer", "series", "breakdown"} <= set(filtered)
    # the customer views also pick the table of their whole days from the filters (migration 0007)
    choice = ["multiIf({protocol:String} != '' OR {status:String} != '', 'raw', {tool:String} != '', 'tool', "
              "'customer')", "AND tool_name = {tool:String}"]
    for name in ("customers", "revenue_by_customer", "revenue_all"):
        assert all(line in lines(name) for line in choice), name
    for name in filtered:
        assert all(line in lines(name) for line in block), name
        for param in ("customer", "tool", "status", "protocol"):  # bound, never spliced
            uses = [line for line in lines(name) if "{" + param + ":String}" in line]
            allowed = block + (choice if name in ("customers", "revenue_by_customer", "revenue_all") else [])
            assert uses and all(line in allowed for line in uses), (name, param)  # once per tier of a file


@pytest.mark.parametrize("filters", FILTERS, ids=str)
def test_compare_is_the_range_and_the_period_before(views: DashboardQueries, reqs: Any, filters: Filters) -> None:
    rng = TimeRange(NOW - timedelta(days=3), NOW)
    got = views.compare("agent-a", rng, filters)
    cur = rows_of(reqs, "agent-a", rng.start, rng.end, filters)
    prev = rows_of(reqs, "agent-a", rng.start - timedelta(days=3), rng.start, filters)
    assert cur, "the filter leaves nothing to compare"
    for got_stats, rows in ((got["current"], cur), (got["previous"], prev)):
        want = sample.naive_perf(rows, 3 * 24 * 60)
        want |= {"revenue": sum(r.x402_amount for r in rows), "paid_requests": sum(r.x402_amount > 0 for r in rows),
                 "customers": len({r.customer_id for r in rows if r.customer_id})}
        assert got_stats == pytest.approx(want, rel=1e-9)
        # successes, errors and 402s add up to the requests (402 is neither a success nor an error)
        assert got_stats["successes"] + got_stats["errors"] + got_stats["payment_required"] == got_stats["requests"]
    assert got["previous_start"] == rng.start - timedelta(days=3)
    if prev:
        assert got["change_pct"]["requests"] == pytest.approx((len(cur) / len(prev) - 1) * 100)


def test_performance_answers_what_its_three_files_answer_apart(views: DashboardQueries) -> None:
    """``performance_insights.sql`` reads the rows once for what performance.sql, latency_histogram.sql (its tiers
    for a range of whole days) and performance_hourly.sql answer apart: the same figures, for every filter; the
    view reads a large range of whole days with the three files (``speed_in_one_pass``), and says the same."""
    ranges = [TimeRange(NOW - timedelta(days=3), NOW), TimeRange(NOW - timedelta(hours=24), NOW),
              TimeRange(NOW - timedelta(hours=1), NOW)]
    views.tiers_from_rows = 0  # the histogram of whole days from its tiers
    for rng, filters in [(rng, f) for rng in ranges for f in FILTERS]:
        views.speed_one_pass_below_rows = 0  # a range of whole days: the three files
        three = views.performance("agent-a", rng=rng, filters=filters)
        views.speed_one_pass_below_rows = 10**9  # every range in one pass
        got = views.performance("agent-a", rng=rng, filters=filters)
        assert views.speed_in_one_pass("agent-a", rng)
        assert got["histogram"] == three["histogram"] and len(got["hourly"]) == len(three["hourly"])
        want = views.compare("agent-a", rng, filters)
        params = {"agent_id": "agent-a", "start": rng.start, "end": rng.end, **filters.params()}
        assert got["current"] == pytest.approx(want["current"], rel=1e-9), (rng, filters)
        assert got["previous"] == pytest.approx(want["previous"], rel=1e-9), (rng, filters)
        assert got["histogram"] == views.run("latency_histogram", params), (rng, filters)
        hourly = views.run("performance_hourly", params)
        assert [h.pop("hour") for h in got["hourly"]] == [h.pop("hour") for h in hourly], (rng, filters)
        assert got["hourly"] == [pytest.approx(h, rel=1e-9) for h in hourly], (rng, filters)
    assert views.file_for("latency_histogram", params | {"start": NOW - timedelta(days=3)}) == "latency_histogram"
    views.speed_one_pass_below_rows = 0  # the three files for a range holding a whole day, one pass for any other
    assert [views.speed_in_one_pass("agent-a", rng) for rng in ranges] == [False, True, True]
    assert [b["lower_ms"] for b in got["histogram"]] == list(LATENCY_BOUNDS_MS) == sample.HIST_BOUNDS


def test_revenue_answers_what_its_three_files_answer_apart(views: DashboardQueries) -> None:
    """``revenue_all.sql`` (tiers) and ``revenue_all_raw.sql`` (raw rows) answer in one query what revenue,
    revenue_by_tool and revenue_by_customer answer apart: the same rows in the same order, the customers cut
    at the limit; for every filter."""
    ranges = [TimeRange(NOW - timedelta(days=40), NOW), TimeRange(NOW - timedelta(hours=30), NOW)]
    files, cuts = set(), []
    for tiers_from_rows in (TIERS_FROM_ROWS, 0):  # 0: every range holding a whole day in tiers
        views.tiers_from_rows = tiers_from_rows
        for rng, filters, period, limit in [(rng, f, p, n) for rng in ranges for f in FILTERS
                                            for p, n in (("day", 3), ("week", 100), ("month", 1))]:
            params = {"agent_id": "agent-b", "start": rng.start, "end": rng.end, **filters.params()}
            files.add(views.file_for("revenue_all", params))
            got = views.revenue("agent-b", rng, period, limit, filters)
            series = views.run("revenue", params | {"period": period})
            assert [r.pop("period_start") for r in got["series"]] == [r.pop("period_start") for r in series]
            assert got["series"] == [pytest.approx(r, rel=1e-12) for r in series], (rng, filters, period)
            assert got["by_tool"] == views.run("revenue_by_tool", params), (rng, filters)
            by_customer = views.run("revenue_by_customer", params | {"limit": limit})
            assert got["by_customer"] == by_customer, (rng, filters, limit)
            cuts.append(len(by_customer) == limit)
    assert files == {"revenue_all", "revenue_all_raw"} and any(cuts) and series


@pytest.mark.parametrize(("span", "step"), [(timedelta(hours=1), 60), (timedelta(hours=24), 900),
                                            (timedelta(days=7), 3600), (timedelta(days=30), 6 * 3600),
                                            (timedelta(days=90), 12 * 3600), (timedelta(days=180), 86400)])
def test_series_step_fits_the_range(span: timedelta, step: int) -> None:
    assert series_step(TimeRange(NOW - span, NOW)) == step


def test_series_step_is_refused_when_it_makes_too_many_buckets() -> None:
    with pytest.raises(DashboardError, match="at most"):
        series_step(TimeRange(NOW - timedelta(days=10), NOW), 60)
    with pytest.raises(DashboardError, match="step must be one of"):
        series_step(TimeRange(NOW - timedelta(days=1), NOW), 61)
    assert series_step(TimeRange(NOW - timedelta(days=MAX_BUCKETS), NOW)) == STEPS[-1]
    with pytest.raises(DashboardError):
        series_step(TimeRange(NOW - timedelta(days=MAX_BUCKETS + 1), NOW))


@pytest.mark.parametrize("filters", FILTERS[:4], ids=str)
def test_series_buckets_cover_the_range_and_count_every_request(views: DashboardQueries, reqs: Any,
                                                               filters: Filters) -> None:
    start, end = NOW - timedelta(hours=25, minutes=7, seconds=3), NOW - timedelta(minutes=2)
    got = views.series("agent-b", TimeRange(start, end), filters=filters)
    step = got["step_seconds"]
    points = got["points"]
    assert step == 900 and points[0]["t"] <= start < points[0]["t"] + timedelta(seconds=step)
    assert points[-1]["t"] < end <= points[-1]["t"] + timedelta(seconds=step)
    assert all(b["t"] - a["t"] == timedelta(seconds=step) for a, b in zip(points, points[1:], strict=False))
    rows = rows_of(reqs, "agent-b", start, end, filters)
    want = Counter(datetime.fromtimestamp(r.event_time.timestamp() // step * step, UTC) for r in rows)
    assert {p["t"]: p["requests"] for p in points if p["requests"]} == dict(want)
    assert sum(p["errors"] for p in points) == sum(sample.is_error(r) for r in rows)
    assert sum(p["payment_required"] for p in points) == sum(r.status_code == 402 for r in rows)
    assert sum(p["revenue"] for p in points) == pytest.approx(sum(r.x402_amount for r in rows))
    busiest = max(points, key=lambda p: p["requests"])
    lat = [r.response_ms for r in rows if busiest["t"] <= r.event_time < busiest["t"] + timedelta(seconds=step)]
    assert busiest["p95_latency_ms"] == pytest.approx(sample.q_inclusive(lat, 0.95))


@pytest.mark.parametrize("by", ["customer", "tool", "status", "protocol"])
def test_breakdown_groups_match_naive_with_the_period_before(views: DashboardQueries, reqs: Any, by: str) -> None:
    rng = TimeRange(NOW - timedelta(days=5), NOW)
    filters = Filters(status="2xx") if by != "status" else Filters(protocol="http")
    got = views.breakdown("agent-a", rng, by, limit=1000, filters=filters)
    key = {"customer": lambda r: r.customer_id, "tool": lambda r: r.tool_name,
           "status": lambda r: status_class(r.status_code), "protocol": protocol}[by]
    cur = Counter(key(r) for r in rows_of(reqs, "agent-a", rng.start, rng.end, filters))
    prev = Counter(key(r) for r in rows_of(reqs, "agent-a", rng.start - timedelta(days=5), rng.start, filters))
    assert {g["key"]: (g["requests"], g["previous_requests"]) for g in got["groups"]} == {
        k: (n, prev[k]) for k, n in cur.items()}
    assert [g["requests"] for g in got["groups"]] == sorted((g["requests"] for g in got["groups"]), reverse=True)
    top = got["groups"][0]
    rows = [r for r in rows_of(reqs, "agent-a", rng.start, rng.end, filters) if key(r) == top["key"]]
    assert top["errors"] == sum(sample.is_error(r) for r in rows)
    assert top["revenue"] == pytest.approx(sum(r.x402_amount for r in rows))
    with pytest.raises(DashboardError):
        views.breakdown("agent-a", rng, "country")


@pytest.mark.parametrize(("filters", "q"), [(Filters(), ""), (Filters(status="5xx"), ""), (Filters(), "r0001"),
                                            (Filters(protocol="mcp"), "A-R00"), (Filters(), "no such text")])
def test_logs_pages_walk_every_match_once_newest_first(views: DashboardQueries, reqs: Any, filters: Filters,
                                                      q: str) -> None:
    rng = TimeRange(NOW - timedelta(days=20), NOW)
    want = sorted((r for r in rows_of(reqs, "agent-a", rng.start, rng.end, filters)
                   if not q or q.lower() in r.request_id.lower()), key=lambda r: (r.event_time, r.request_id),
                  reverse=True)
    seen: list[str] = []
    cursor: Cursor | None = None
    pages = 0
    while True:
        page, cursor = views.logs("agent-a", 37, rng, filters, q, cursor)
        pages += 1
        assert len(page) <= 37
        seen += [r["request_id"] for r in page]
        if cursor is None:
            break
        assert len(page) == 37
        cursor = Cursor.decode(cursor.encode())  # as a client would send it back
    assert seen == [r.request_id for r in want]
    assert pages == max(1, -(-len(want) // 37))  # no empty page after a full last one


def test_logs_cursor_is_exact_for_ties_in_time(views: DashboardQueries, clickhouse: Client) -> None:
    """Requests in the same millisecond are paged by request id: none skipped at a page boundary."""
    moment = NOW - timedelta(hours=1)
    tied = [sample.Req("agent-tie", f"tie-{i:02d}", moment, 200, 1.0, "c", "t", 0.0) for i in range(10)]
    sample.insert_requests(clickhouse, tied)
    seen, cursor = [], None
    while True:
        page, cursor = views.logs("agent-tie", 3, cursor=cursor)
        seen += [r["request_id"] for r in page]
        if cursor is None:
            break
    assert seen == [f"tie-{i:02d}" for i in reversed(range(10))]


@pytest.mark.parametrize("token", ["", "!!!", "bm90LWEtbnVtYmVy", "OTk5OTk5OTk5OTk5OTk5OTk5OTpy"])
def test_a_cursor_the_api_did_not_give_is_refused(token: str) -> None:
    with pytest.raises(DashboardError):
        Cursor.decode(token)


def test_request_detail_has_everything_but_secret_headers(views: DashboardQueries, clickhouse: Client) -> None:
    row = ["agent-a", "detail-1", "b9", "gt8004-python/0.3", NOW, NOW + timedelta(milliseconds=40),
           NOW + timedelta(milliseconds=900), "POST", "/v1/chat", 402, 12.5, 0, 1, "cust-9", "chat", "", "x402",
           "sdk", 0.0, "", "", "", '{"q": "ping"}', "x" * 300, 13, 5000,
           # a row stored before secret headers were stripped at ingest: the read side removes them too
           {"Authorization": "Bearer sk-live", "x-payment": "sig", "Accept": "application/json"},
           "10.1.2.3", "curl/8", "https://ref", "application/json", "de", "DE", "Berlin"]
    sample.insert_rows(clickhouse, "request_logs", [row], sample.REQUEST_COLS, dedup_token="detail-1")
    got = views.request("agent-a", "detail-1")
    assert got is not None
    assert got["headers"] == {"Accept": "application/json"}
    assert (got["status_code"], got["response_body_size"], len(got["response_body"])) == (402, 5000, 300)
    assert got["stored_at"] - got["ingested_at"] == timedelta(milliseconds=860)
    assert views.request("agent-b", "detail-1") is None  # another agent's request is not found
    assert views.request("agent-a", "no-such-request") is None


def test_agents_are_every_agent_for_the_operator_and_one_for_a_key(views: DashboardQueries, reqs: Any) -> None:
    everyone = views.agents(None, now=NOW)
    assert {a["agent_id"] for a in everyone} == set(AGENTS)
    for a in everyone:
        traffic = sample.traffic(reqs, a["agent_id"])
        assert a["requests"] == len(traffic)
        assert a["errors"] == sum(sample.is_error(r) for r in traffic)
        assert a["payment_required"] == sum(r.status_code == 402 for r in traffic)
        assert a["revenue"] == pytest.approx(sum(r.x402_amount for r in traffic), rel=1e-9)
        assert a["first_seen"] == min(r.event_time for r in traffic).replace(second=0, microsecond=0)
        assert a["last_seen"] == max(r.event_time for r in traffic).replace(second=0, microsecond=0)
        recent_start = (NOW - timedelta(hours=24)).replace(second=0, microsecond=0)
        assert a["recent_requests"] == sum(r.event_time >= recent_start for r in traffic)
    assert [a["agent_id"] for a in views.agents("agent-b", now=NOW)] == ["agent-b"]
    none = views.agents("agent-without-traffic", now=NOW)
    assert none == [{"agent_id": "agent-without-traffic", "requests": 0, "errors": 0, "payment_required": 0,
                     "revenue": 0.0, "recent_requests": 0, "first_seen": None, "last_seen": None}]


def test_hostile_filter_values_are_values(views: DashboardQueries) -> None:
    rng = TimeRange(NOW - timedelta(days=30), NOW)
    for hostile in ("x' OR 1=1 --", "') OR ('1'='1", "{customer:String}", "%", "\\"):
        assert views.compare("agent-a", rng, Filters(customer=hostile, tool=hostile))["current"]["requests"] == 0
        assert views.logs("agent-a", 10, rng, q=hostile)[0] == []
    with pytest.raises(DashboardError):
        Filters(status="2xx' OR 1=1")
