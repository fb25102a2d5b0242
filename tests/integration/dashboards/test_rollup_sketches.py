"""The hourly sketches (migration 0006) answer the long-range views: exact counts, estimated percentiles, on chDB.

A sketched view (``dashboards.queries.SKETCHED``) reads a range holding at least ``SKETCH_FROM_ROWS`` of the
agent's requests from its ``<name>_sketch.sql``: whole days from ``agent_day_sketch`` / ``agent_tool_day_sketch``,
the whole hours left at either side from ``agent_hour_sketch`` / ``agent_tool_hour_sketch``, the cut hours at
the edges from raw rows (schemas/queries/README.md):

- for ranges drawn anywhere (bounds inside hours and days, on them, a millisecond either side; shorter and
  longer than a day), every count, sum and average equals the naive computation over the raw rows, inserted
  in several parts, and so do the distinct customers (``uniq``, exact at these sizes); the percentiles lie
  within the group's values and every row with traffic says it is an estimate;
- over many values the t-digest's p95 is within one percent of rank of the exact one, while the exact file
  gives the interpolated percentile;
- the file follows the size (exact below the threshold, sketches from it on), and filters, a breakdown by
  anything but the tool and a step of less than an hour always read the exact file;
- a repeated sink batch changes no sketch (the sink's token reaches views fed by views), and rows stored
  before the migration are counted once, also when its statements run again.
"""

from __future__ import annotations

import bisect
import shutil
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboards.queries import SKETCH_FROM_ROWS, SKETCHED, DashboardQueries, Filters, TimeRange
from meterline.migrations import MIGRATIONS_DIR, apply_migrations, discover
from tests.integration.dashboards import sample
from tests.integration.dashboards.test_rollup_tiers import END, START, edge_times, insert_in_parts, ranges, requests

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
H, MS = timedelta(hours=1), timedelta(milliseconds=1)
DB_SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                       suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def sketched(client: Client) -> DashboardQueries:
    """Views that read the sketches wherever they answer, however few the rows (the default sends small ranges to
    the exact files, which the tests of the views cover)."""
    return DashboardQueries(client, sketch_from_rows=0)


def bucket_of(moment: datetime, step: timedelta) -> datetime:
    return EPOCH + (moment - EPOCH) // step * step


def naive_series(rows: list[sample.Req], start: datetime, end: datetime, step: timedelta) -> list[dict[str, Any]]:
    groups: dict[datetime, list[sample.Req]] = defaultdict(list)
    for r in rows:
        groups[bucket_of(r.event_time, step)].append(r)
    out, t = [], bucket_of(start, step)
    while t < end:
        g = groups.get(t, [])
        out.append({"t": t, "requests": len(g), "errors": sum(sample.is_error(r) for r in g),
                    "payment_required": sum(r.status_code == 402 for r in g),
                    "revenue": sum(r.x402_amount for r in g),
                    "avg_latency_ms": sum(r.response_ms for r in g) / len(g) if g else 0.0})
        t += step
    return out


def naive_breakdown(reqs: list[sample.Req], agent: str, prev: datetime, start: datetime,
                    end: datetime) -> dict[str, dict[str, Any]]:
    now = defaultdict(list)
    for r in sample.traffic(reqs, agent, start, end):
        now[r.tool_name].append(r)
    before = defaultdict(int)
    for r in sample.traffic(reqs, agent, prev, start):
        before[r.tool_name] += 1
    return {k: {"requests": len(g), "errors": sum(sample.is_error(r) for r in g),
                "payment_required": sum(r.status_code == 402 for r in g), "revenue": sum(r.x402_amount for r in g),
                "avg_latency_ms": sum(r.response_ms for r in g) / len(g), "previous_requests": before[k]}
            for k, g in now.items()}


def same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """``got`` holds ``want``'s values: integers and keys equal, floats to rounding (sums in another order)."""
    for k, v in want.items():
        assert got[k] == (pytest.approx(v, rel=1e-9, abs=1e-9) if isinstance(v, float) else v), (k, got, want)


def within(value: float, rows: list[sample.Req]) -> bool:
    lat = [r.response_ms for r in rows]
    return min(lat) - 1e-3 <= value <= max(lat) + 1e-3


def check_views(views: DashboardQueries, reqs: list[sample.Req], agent: str, start: datetime, end: datetime) -> None:
    rows = sample.traffic(reqs, agent, start, end)
    params = {"agent_id": agent, "start": start, "end": end, **Filters().params()}
    assert views.file_for("daily", params) == "daily_sketch"
    days = views.run("daily", params)
    want_days = sample.naive_daily(reqs, agent, start, end)
    assert [d["day"] for d in days] == [d["day"] for d in want_days]
    for got, want in zip(days, want_days, strict=True):
        in_day = [r for r in rows if r.event_time.date() == got["day"]]
        same(got, {k: v for k, v in want.items() if k != "p95_latency_ms"})  # customers too: uniq is exact this small
        assert got["estimated"] is bool(in_day)
        assert not in_day or within(got["p95_latency_ms"], in_day)

    tools = views.tools(agent, TimeRange(start, end), limit=1000)
    want_tools = sample.naive_tools(reqs, agent, start, end)
    assert [t["tool_name"] for t in tools] == [t["tool_name"] for t in want_tools]
    for got, want in zip(tools, want_tools, strict=True):
        same(got, {k: v for k, v in want.items() if k != "p95_latency_ms"})
        assert got["estimated"] is True
        assert within(got["p95_latency_ms"], [r for r in rows if r.tool_name == got["tool_name"]])

    step = timedelta(seconds=sketched_step(start, end))
    points = views.series(agent, TimeRange(start, end), int(step.total_seconds()))["points"]
    want_points = naive_series(rows, start, end, step)
    assert len(points) == len(want_points)
    for got, want in zip(points, want_points, strict=True):
        same(got, want)
        assert got["estimated"] is (want["requests"] > 0)

    result = views.breakdown(agent, TimeRange(start, end), "tool", limit=1000)
    want_groups = naive_breakdown(reqs, agent, result["previous_start"], start, end)
    assert {g["key"]: g["requests"] for g in result["groups"]} == {k: v["requests"] for k, v in want_groups.items()}
    for got in result["groups"]:
        same(got, want_groups[got["key"]])
        assert got["estimated"] is True


def sketched_step(start: datetime, end: datetime) -> int:
    return 3600 if end - start <= 100 * H else 21600


@DB_SETTINGS
@given(data=st.data())
def test_sketched_views_count_exactly_for_any_range(clickhouse: Client, data: st.DataObject) -> None:
    agent = f"agent-{uuid.uuid4().hex[:10]}"
    start, end = data.draw(ranges(), label="range")
    if not (end - start) >= H:  # a range without a whole hour is never sketched (below)
        end = start + H + data.draw(st.integers(0, 3_600_000), label="more") * MS
    reqs = requests(data, agent, start, end)
    insert_in_parts(clickhouse, reqs, data.draw(st.integers(1, 3), label="parts"))
    views = sketched(clickhouse)
    if views.file_for("daily", {"agent_id": agent, "start": start, "end": end, **Filters().params()}) == "daily":
        start = bucket_of(start, H)  # [start, end) held no whole hour: widened to the hour holding start
        end = max(end, start + H)
    check_views(views, reqs, agent, start, end)


def test_percentiles_are_within_a_percent_of_rank_over_many_values(clickhouse: Client) -> None:
    """40,000 distinct latencies over 40 hours: the sketch's p95 has an exact rank within 1 % of 95 %."""
    agent = "agent-many"
    start = datetime(2026, 10, 20, tzinfo=UTC)
    reqs = [sample.Req(agent, f"m{i}", start + i * 3600 * MS, 200, 1.0 + (i * 7919 % 40_000) * 0.01,
                       f"c{i % 300}", "search", 0.0) for i in range(40_000)]
    insert_in_parts(clickhouse, reqs, 4)
    end = start + 40 * H + 1 * H
    rng = TimeRange(start, end)
    lat = sorted(r.response_ms for r in reqs)
    for views, exact in ((sketched(clickhouse), False), (DashboardQueries(clickhouse, sketch_from_rows=None), True)):
        [tool] = views.tools(agent, rng)
        assert tool["estimated"] is not exact
        if exact:
            assert tool["p95_latency_ms"] == pytest.approx(sample.q_inclusive(lat, 0.95))
        rank = bisect.bisect_left(lat, tool["p95_latency_ms"]) / len(lat)
        assert 0.94 <= rank <= 0.96, rank
        days = [d for d in views.run("daily", {"agent_id": agent, "start": start, "end": end, **Filters().params()})
                if d["requests"]]
        assert sum(d["requests"] for d in days) == 40_000
        assert [d["customers"] for d in days] == [300, 300]  # each day holds every customer


def test_the_file_follows_the_size_and_the_filters(clickhouse: Client) -> None:
    agent = "agent-which"
    reqs = [sample.Req(agent, f"w{i}", t, 200, 5.0, "c1", "search", 0.1) for i, t in enumerate(edge_times(START, END))]
    sample.insert_requests(clickhouse, reqs)
    [row] = DashboardQueries(clickhouse).run("range_requests", {"agent_id": agent, "start": START, "end": END})
    size = row["requests"]
    assert 0 < size < min(SKETCH_FROM_ROWS.values())
    base = {"agent_id": agent, "start": START, "end": END, "by": "tool", "step_s": 3600, **Filters().params()}
    prev = {"prev_start": START - (END - START)}
    for name in SKETCHED:
        params = {**base, **(prev if name == "breakdown" else {})}
        [row] = DashboardQueries(clickhouse).run("range_requests", {"agent_id": agent, "start": params.get(
            "prev_start", START), "end": END})
        n = row["requests"]
        assert DashboardQueries(clickhouse).file_for(name, params) == name  # the default: too few rows
        assert DashboardQueries(clickhouse, sketch_from_rows=n + 1).file_for(name, params) == name
        assert DashboardQueries(clickhouse, sketch_from_rows=n).file_for(name, params) == f"{name}_sketch"
        assert DashboardQueries(clickhouse, sketch_from_rows=None).file_for(name, params) == name
        for f in (Filters(customer="c1"), Filters(tool="search"), Filters(status="2xx"), Filters(protocol="http")):
            assert sketched(clickhouse).file_for(name, {**params, **f.params()}) == name, f
        no_hour = {**params, "end": START + 59 * timedelta(minutes=1)}
        assert sketched(clickhouse).file_for(name, no_hour) == name
    assert sketched(clickhouse).file_for("breakdown", {**base, **prev, "by": "customer"}) == "breakdown"
    assert sketched(clickhouse).file_for("series", {**base, "step_s": 900}) == "series"


def test_a_repeated_batch_changes_no_sketch(clickhouse: Client) -> None:
    """The sink's insert token reaches every sketch: those fed by the minute rollup and by another sketch too."""
    agent = "agent-again"
    reqs = [sample.Req(agent, f"a{i}", START + i * 60_000 * MS, 200, 5.0 + i, f"c{i % 3}", "search", 0.1)
            for i in range(200)]

    def totals() -> list[Any]:
        return [clickhouse.query(query, parameters={"a": agent}).result_rows[0] for query in (
            "SELECT sum(requests), uniqMerge(customers) FROM agent_hour_sketch WHERE agent_id = {a:String}",
            "SELECT sum(requests), uniqMerge(customers) FROM agent_day_sketch WHERE agent_id = {a:String}",
            "SELECT sum(requests), 0 FROM agent_tool_hour_sketch WHERE agent_id = {a:String}",
            "SELECT sum(requests), 0 FROM agent_tool_day_sketch WHERE agent_id = {a:String}")]

    sample.insert_requests(clickhouse, reqs)
    first = totals()
    assert first == [(200, 3), (200, 3), (200, 0), (200, 0)]
    sample.insert_requests(clickhouse, reqs)  # the same rows with the same token: a retried sink batch
    assert totals() == first


def test_rows_stored_before_the_migration_are_counted_once(clickhouse_dsn: str, tmp_path: Path) -> None:
    """Backfill: rows written before 0006 are in the sketches once after it, and once after it runs again."""
    from meterline.clickhouse import get_client

    before = tmp_path / "before"
    before.mkdir()
    for m in discover():
        if m.version < 6:
            shutil.copy(m.path, before / m.path.name)
    client = get_client(clickhouse_dsn)
    try:
        apply_migrations(client, before)
        agent = "agent-old"
        reqs = [sample.Req(agent, f"o{i}", t, 200 if i % 3 else 500, 30.0 + i, "c1", "search", 0.25 * (i % 2))
                for i, t in enumerate(edge_times(START, END))]
        insert_in_parts(client, reqs, 2)
        apply_migrations(client, MIGRATIONS_DIR)
        check_views(sketched(client), reqs, agent, START, END)
        traffic = sample.traffic(reqs, agent)  # the agents list reads its totals from the day sketch
        [listed] = DashboardQueries(client).agents(agent)
        assert (listed["requests"], listed["first_seen"], listed["last_seen"]) == (
            len(traffic), *(f(r.event_time for r in traffic).replace(second=0, microsecond=0) for f in (min, max)))
        [migration] = [m for m in discover() if m.version == 6]
        for statement in migration.statements():  # a migration interrupted half-way runs again
            client.command(statement)
        check_views(sketched(client), reqs, agent, START, END)
        later = [sample.Req(agent, f"n{i}", START + i * 997 * MS, 200, 7.0, "c2", "search", 0.0) for i in range(50)]
        sample.insert_requests(client, later)  # and the views feed the sketches from now on
        check_views(sketched(client), reqs + later, agent, START, END)
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{client.database}`")
