"""The hour and day rollups (projections of migration 0003) read in tiers give the raw rows' numbers, on chDB.

A tiered view (``dashboards.queries.TIERED``) reads whole days from ``agent_day`` / ``customer_day`` (the
customers view: the tables ``agent_customer_day`` / ``agent_tool_customer_day`` of migration 0007), whole
hours from ``agent_hour`` and the cut hours at the edges from raw rows, and a range holding no whole day
from raw rows alone (its ``<name>_raw.sql``; schemas/queries/README.md):

- for ranges drawn anywhere (bounds inside hours and days, on them, a millisecond either side, spanning
  the end of a month; shorter and longer than a day, so both files of a view), with or without a
  filter, every tiered view equals the naive computation over the raw rows, inserted in several parts;
- each tier reads the projection meant for it (the plan names it), a range without a whole hour reads
  raw rows only, a range with fewer of the agent's requests than the views' threshold is read by the raw
  file (and by the tiered one from the threshold on), and a SQL file made to take the cut hour at an
  edge from the hour tier is caught: the negative control shows the edge test can fail;
- the customers view reads each table its filters name, and no other (the plan's parts);
- an installation with rows from before migration 0003 gets them in the projections (MATERIALIZE
  PROJECTION rebuilds the old parts), and one from before 0007 in the customer days, counted once, also
  when the migration's statements run again.
"""

from __future__ import annotations

import itertools
import re
import shutil
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboards.queries import (
    TIERED,
    TIERS_FROM_ROWS,
    DashboardQueries,
    Filters,
    TimeRange,
    holds_whole,
    load_sql,
)
from meterline.migrations import MIGRATIONS_DIR, apply_migrations, discover
from tests.integration.dashboards import sample

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BASE = datetime(2026, 10, 30, tzinfo=UTC)  # ranges start within 4 days of here: across the end of October
H, D, MS = timedelta(hours=1), timedelta(days=1), timedelta(milliseconds=1)
DB_SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                       suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FILTERS = [Filters(), Filters(status="5xx"), Filters(status="402"), Filters(tool="search"), Filters(customer="c2")]


def floor(moment: datetime, unit: timedelta) -> datetime:
    return EPOCH + (moment - EPOCH) // unit * unit


def status_class(code: int) -> str:
    return "402" if code == 402 else f"{code // 100}xx"


def matches(r: sample.Req, f: Filters) -> bool:
    return ((not f.customer or r.customer_id == f.customer) and (not f.tool or r.tool_name == f.tool)
            and (not f.status or status_class(r.status_code) == f.status))


@st.composite
def ranges(draw: st.DrawFn) -> tuple[datetime, datetime]:
    """A range from 1 ms to 6 days long starting within 4 days of BASE; bounds on or near hours and days."""
    def bound(anchor: datetime) -> datetime:
        unit = draw(st.sampled_from([H, D, MS]))
        near = floor(anchor, unit) + draw(st.sampled_from([0, 0, 1, -1, 1800_000])) * MS
        return draw(st.sampled_from([anchor, near]))
    start = bound(BASE + draw(st.integers(0, 4 * 86_400_000 - 1)) * MS)
    length = draw(st.one_of(st.integers(1, 7_200_000), st.integers(1, 6 * 86_400_000))) * MS
    end = bound(start + length)
    return (start, end) if start < end else (start, start + length)


def edge_times(start: datetime, end: datetime) -> list[datetime]:
    """Moments where a tier boundary errs: around the bounds and the hours and days next to them."""
    out = []
    for bound in (start, end):
        for unit in (H, D):
            for b in (floor(bound, unit), floor(bound, unit) + unit):
                out += [b - MS, b, b + MS]
        out += [bound - MS, bound, bound + MS]
    return out


def requests(draw: st.DataObject, agent: str, start: datetime, end: datetime) -> list[sample.Req]:
    span = int((end - start + 4 * H) / MS)
    times = edge_times(start, end) + [start - 2 * H + draw.draw(st.integers(0, span)) * MS
                                      for _ in range(draw.draw(st.integers(0, 60), label="spread"))]
    out = []
    for i, t in enumerate(times):
        status = draw.draw(st.sampled_from([200, 200, 201, 402, 404, 500]))
        out.append(sample.Req(
            agent, f"{agent}-{i}", t, status, draw.draw(st.sampled_from([1.5, 10.0, 24.999, 120.0, 999.5, 12000.0])),
            draw.draw(st.sampled_from(["", "c1", "c2"])), draw.draw(st.sampled_from(["", "search", "tools/call"])),
            draw.draw(st.sampled_from([0.0, 0.1, 0.25])) if status == 200 else 0.0,
            source=draw.draw(st.sampled_from(["sdk"] * 9 + ["sdk_ping"]))))
    return out


def insert_in_parts(client: Client, reqs: list[sample.Req], parts: int) -> None:
    """Several inserts, so that several parts each hold a projection the views add up."""
    for k in range(parts):
        sample.insert_requests(client, reqs[k::parts])


def naive_revenue_by(rows: list[sample.Req], key: str) -> dict[str, tuple[float, int]]:
    out: dict[str, tuple[float, int]] = defaultdict(lambda: (0.0, 0))
    for r in rows:
        if r.x402_amount > 0:
            amount, count = out[getattr(r, key)]
            out[getattr(r, key)] = (amount + r.x402_amount, count + 1)
    return dict(out)


def approx_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want, strict=True):
        exact = {k: v for k, v in w.items() if not isinstance(v, float)}
        assert {k: g[k] for k in exact} == exact
        assert {k: g[k] for k in w if k not in exact} == pytest.approx({k: w[k] for k in w if k not in exact},
                                                                       rel=1e-9, abs=1e-9)


def check_views(views: DashboardQueries, reqs: list[sample.Req], agent: str, start: datetime, end: datetime,
                f: Filters) -> None:
    rows = [r for r in sample.traffic(reqs, agent, start, end) if matches(r, f)]
    kept = [r for r in reqs if matches(r, f)]
    params = {"agent_id": agent, "start": start, "end": end, **f.params()}
    hist = views.run("latency_histogram", params)
    assert [b["requests"] for b in hist] == sample.naive_histogram(rows), (start, end, f)
    rng = TimeRange(start, end)
    for period in ("day", "month"):
        got = views.revenue(agent, rng, period, limit=1000, filters=f)
        want = sample.naive_revenue(kept, agent, start, end, period)
        assert {r["period_start"]: r["paid_requests"] for r in got["series"]} == {k: v[1] for k, v in want.items()}
        assert {r["period_start"]: r["amount"] for r in got["series"]} == pytest.approx(
            {k: v[0] for k, v in want.items()}, rel=1e-9)
    for key, got_rows in (("tool_name", got["by_tool"]), ("customer_id", got["by_customer"])):
        want_by = naive_revenue_by(rows, key)
        assert {r[key]: r["paid_requests"] for r in got_rows} == {k: v[1] for k, v in want_by.items()}, key
        assert {r[key]: r["amount"] for r in got_rows} == pytest.approx({k: v[0] for k, v in want_by.items()},
                                                                       rel=1e-9), key
    approx_rows(views.customers(agent, rng, limit=1000, filters=f), sample.naive_customers(kept, agent, start, end))


@DB_SETTINGS
@given(data=st.data())
def test_tiered_views_equal_the_raw_rows_for_any_range(clickhouse: Client, data: st.DataObject) -> None:
    agent = f"agent-{uuid.uuid4().hex[:10]}"
    start, end = data.draw(ranges(), label="range")
    reqs = requests(data, agent, start, end)
    insert_in_parts(clickhouse, reqs, data.draw(st.integers(1, 3), label="parts"))
    # tiers_from_rows=0: every range holding a whole day is read in tiers, however few its rows (the
    # views' default sends a range this small to the raw files, which the tests of the views cover)
    views = DashboardQueries(clickhouse, tiers_from_rows=0)
    check_views(views, reqs, agent, start, end, data.draw(st.sampled_from(FILTERS)))


START = datetime(2026, 10, 29, 10, 30, 0, 250_000, tzinfo=UTC)
END = datetime(2026, 11, 2, 13, 15, 0, 500_000, tzinfo=UTC)  # days, hours and cut hours on both sides


def plan(client: Client, name: str, params: dict[str, Any], sql: str | None = None, indexes: int = 0,
         **settings_: Any) -> str:
    explain = "EXPLAIN indexes = 1 " if indexes else "EXPLAIN "
    return "\n".join(r[0] for r in client.query(explain + (sql or load_sql(name)), parameters=params,
                                                settings=settings_ or None).result_rows)


def tables_read(text: str, database: str) -> set[str]:
    """The tables an ``EXPLAIN indexes = 1`` plan reads parts of (a branch the constant conditions rule out
    names its table with no "Parts: n | Granules" line under it)."""
    lines, read = text.splitlines(), set()
    for i, line in enumerate(lines):
        if f"ReadFromMergeTree ({database}." not in line:
            continue
        for detail in itertools.takewhile(lambda d: "──" not in d, lines[i + 1:]):  # up to the next step
            parts = re.search(r"Parts: (\d+) \| Granules", detail)
            if parts and int(parts[1]) > 0:
                read.add(line.split(f"({database}.")[1].rstrip(")"))
    return read


@pytest.mark.parametrize("name", sorted(TIERED))
def test_each_tier_reads_the_projection_meant_for_it(clickhouse: Client, name: str) -> None:
    agent = "agent-plan"
    reqs = [sample.Req(agent, f"p{i}", t, 200, 5.0, "c1", "search", 0.1) for i, t in enumerate(edge_times(START, END))]
    sample.insert_requests(clickhouse, reqs)
    params = {"agent_id": agent, "start": START, "end": END, "period": "day", "limit": 100, **Filters().params()}
    text = plan(clickhouse, name, params)
    day, hour = ("customer_day", None) if "customer" in name else ("agent_day", "agent_hour")
    if "customer" in name:  # the merged customer days of migration 0007 (the projection is gone)
        day = f"{clickhouse.database}.agent_customer_day"
    assert f"ReadFromMergeTree ({day})" in text
    assert hour is None or f"ReadFromMergeTree ({hour})" in text
    assert "ReadFromMergeTree (t_" in text  # the cut edges: raw rows (database.request_logs)
    # a customer filter is no key of the agent projections: the whole range is read from raw rows
    if hour is not None:
        raw = plan(clickhouse, name, {**params, "customer": "c1"})
        assert "agent_day" not in raw and "agent_hour" not in raw
    # a range holding no whole day is read by <name>_raw.sql (DashboardQueries.run), the projections not weighed
    assert not holds_whole(START, START + 23 * H, D) and holds_whole(START, END, D)
    raw_file = plan(clickhouse, f"{name}_raw", params)
    assert "_day)" not in raw_file and "_hour)" not in raw_file and "ReadFromMergeTree (t_" in raw_file


@pytest.mark.parametrize("f", FILTERS + [Filters(tool="search", customer="c1"), Filters(tool="search", status="5xx")],
                         ids=repr)
def test_customer_views_read_whole_days_from_the_table_their_filters_name(clickhouse: Client, f: Filters) -> None:
    """The customer days (migration 0007) answer no filter or a customer; the tool's customer days a tool; a
    status or protocol filter reads raw rows for the whole range. Every case equals the naive computation."""
    agent = f"agent-cust-{uuid.uuid4().hex[:8]}"
    times = edge_times(START, END) + [START + k * 37 * 60_000 * MS for k in range(150)]
    reqs = [sample.Req(agent, f"cd{i}", t, [200, 201, 402, 404, 500][i % 5], 1.5 + i % 7, ["", "c1", "c2"][i % 3],
                       ["", "search", "tools/call"][i // 3 % 3], 0.1 if i % 5 == 0 else 0.0)
            for i, t in enumerate(times)]
    insert_in_parts(clickhouse, reqs, 2)
    params = {"agent_id": agent, "start": START, "end": END, "limit": 100, **f.params()}
    want = {"request_logs", "agent_customer_day" if not (f.tool or f.status) else
            "agent_tool_customer_day" if not f.status else "request_logs"}
    text = plan(clickhouse, "customers", params, indexes=1)
    assert tables_read(text, clickhouse.database) == want, text
    text = plan(clickhouse, "revenue_by_customer", params, indexes=1)
    assert tables_read(text, clickhouse.database) == want, text
    views, rng = DashboardQueries(clickhouse, tiers_from_rows=0), TimeRange(START, END)
    got = views.customers(agent, rng, limit=1000, filters=f)
    approx_rows(got, sample.naive_customers([r for r in reqs if matches(r, f)], agent, START, END))
    assert got, f
    paying = views.revenue(agent, rng, limit=1000, filters=f)["by_customer"]
    want_paying = naive_revenue_by([r for r in sample.traffic(reqs, agent, START, END) if matches(r, f)], "customer_id")
    assert {r["customer_id"]: r["paid_requests"] for r in paying} == {k: v[1] for k, v in want_paying.items()}
    assert {r["customer_id"]: r["amount"] for r in paying} == pytest.approx({k: v[0] for k, v in want_paying.items()})
    assert paying or f.status, f  # the payments are on 200s


def test_a_small_range_is_read_by_the_raw_file_and_a_large_one_in_tiers(clickhouse: Client) -> None:
    """The file a tiered view runs follows the agent's requests in the range (``range_requests.sql``, from the
    minute rollup): the raw file below the threshold, the tiers from it on; never tiers without a whole day."""
    agent = "agent-size"
    reqs = [sample.Req(agent, f"s{i}", t, 200, 5.0, "c1", "search", 0.1) for i, t in enumerate(edge_times(START, END))]
    sample.insert_requests(clickhouse, reqs)
    minute = timedelta(minutes=1)  # the size counts whole minutes: from the one holding START to END
    traffic = len([r for r in sample.traffic(reqs, agent) if floor(START, minute) <= floor(r.event_time, minute) < END])
    assert traffic > len(sample.traffic(reqs, agent, START, END))  # the minute before START's edge is in it
    params = {"agent_id": agent, "start": START, "end": END}
    assert DashboardQueries(clickhouse).run("range_requests", params) == [{"requests": traffic}]
    assert traffic < TIERS_FROM_ROWS
    for name in TIERED:
        assert DashboardQueries(clickhouse).file_for(name, params) == f"{name}_raw"
        assert DashboardQueries(clickhouse, tiers_from_rows=traffic + 1).file_for(name, params) == f"{name}_raw"
        assert DashboardQueries(clickhouse, tiers_from_rows=traffic).file_for(name, params) == name
        assert DashboardQueries(clickhouse, tiers_from_rows=0).file_for(name, params) == name
        no_day = {**params, "end": START + 23 * H}
        assert DashboardQueries(clickhouse, tiers_from_rows=0).file_for(name, no_day) == f"{name}_raw"
    # both files give the same numbers, floats summed in another order aside (the property test above
    # compares the tiers with the raw rows for any range)
    rng = TimeRange(START, END)
    raw, tiered = DashboardQueries(clickhouse).revenue(agent, rng), DashboardQueries(clickhouse, 1).revenue(agent, rng)
    assert raw["paid_requests"] == tiered["paid_requests"] > 0
    for part in ("series", "by_tool", "by_customer"):
        approx_rows(raw[part], tiered[part])


def test_a_cut_hour_read_from_the_hour_tier_is_caught(clickhouse: Client) -> None:
    """The edge check above, and its negative control: a file whose hour tier starts at the hour holding the
    range's start (the wrong granularity for that cut hour) counts requests from before the range."""
    agent = "agent-edge"
    reqs = [sample.Req(agent, f"e{i}", t, 200, 5.0, "", "", 0.0) for i, t in enumerate(edge_times(START, END))]
    sample.insert_requests(clickhouse, reqs)
    params = {"agent_id": agent, "start": START, "end": END, **Filters().params()}
    want = len(sample.traffic(reqs, agent, START, END))

    def total(sql: str) -> int:
        return sum(r[3] for r in clickhouse.query(sql, parameters=params).result_rows)

    good = load_sql("latency_histogram")
    assert total(good) == want
    ceil_hour = "intDiv(s_ms + 3599999, 3600000) * 3600000"
    assert good.count(ceil_hour) == 2
    wrong = good.replace(f"if(has_hours, {ceil_hour}, e_ms)", "if(has_hours, intDiv(s_ms, 3600000) * 3600000, e_ms)")
    assert wrong != good
    assert total(wrong) > want  # the requests of [10:00, 10:30:00.250) counted: the test above would fail


def test_rows_stored_before_the_migration_are_rebuilt_into_the_projections(clickhouse_dsn: str,
                                                                           tmp_path: Path) -> None:
    """Backfill: rows written before 0003 are counted once after it, and once after its statements run again."""
    from meterline.clickhouse import get_client

    before = tmp_path / "before"
    before.mkdir()
    for m in discover():
        if m.version < 3:
            shutil.copy(m.path, before / m.path.name)
    client = get_client(clickhouse_dsn)
    try:
        apply_migrations(client, before)
        agent = "agent-old"
        reqs = [sample.Req(agent, f"o{i}", t, 200 if i % 3 else 500, 30.0 + i, "c1", "search", 0.25 * (i % 2))
                for i, t in enumerate(edge_times(START, END))]
        insert_in_parts(client, reqs, 2)
        assert _projection_parts(client) == 0
        apply_migrations(client, MIGRATIONS_DIR)
        _wait_for_mutations(client)
        # every old part rebuilt, each projection (agent_hour, agent_day; 0007 dropped customer_day)
        assert _projection_parts(client) == 2 * _parts(client)
        views = DashboardQueries(client)
        check_views(views, reqs, agent, START, END, Filters())
        [migration] = [m for m in discover() if m.version == 3]
        for statement in migration.statements():  # a migration interrupted half-way runs again
            client.command(statement)
        _wait_for_mutations(client)
        check_views(views, reqs, agent, START, END, Filters())
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{client.database}`")


def _parts(client: Client) -> int:
    return int(client.query("SELECT count() FROM system.parts WHERE database = currentDatabase() "
                            "AND table = 'request_logs' AND active").result_rows[0][0])


def _projection_parts(client: Client) -> int:
    return int(client.query("SELECT count() FROM system.projection_parts WHERE database = currentDatabase() "
                            "AND table = 'request_logs' AND active").result_rows[0][0])


def _wait_for_mutations(client: Client) -> None:
    deadline = time.monotonic() + 60
    while client.query("SELECT count() FROM system.mutations WHERE database = currentDatabase() "
                       "AND NOT is_done").result_rows[0][0]:
        assert time.monotonic() < deadline, "MATERIALIZE PROJECTION did not finish in 60 s"
        time.sleep(0.05)  # polls the engine's own progress table


def test_every_tiered_file_computes_the_tiers_with_the_same_block() -> None:
    """The tier bounds are one block of text, the same in every tiered and sketch file (a fix reaches all of them)."""
    def block(name: str) -> list[str]:
        lines = [line.strip().rstrip(",") for line in load_sql(name).splitlines()]
        start = lines.index("WITH")
        return lines[start:lines.index("toDate(toDateTime(intDiv(days_to, 1000), 'UTC')) AS days_end", start) + 1]

    reference = block("latency_histogram")
    assert len(reference) > 10
    for name in TIERED:
        assert block(name) == reference, name
        assert "optimize_use_projections" in load_sql(f"{name}_raw"), name
    for name in ("daily", "tools", "breakdown"):  # the sketch files of migration 0006 (test_rollup_sketches.py)
        assert block(f"{name}_sketch") == reference, name


def test_rows_stored_before_the_customer_days_are_counted_once(clickhouse_dsn: str, tmp_path: Path) -> None:
    """Backfill of migration 0007: rows written before it are in the customer days once after it, once after
    its statements run again (a migration interrupted half-way), and the views feed them from then on."""
    from meterline.clickhouse import get_client

    before = tmp_path / "before"
    before.mkdir()
    for m in discover():
        if m.version < 7:
            shutil.copy(m.path, before / m.path.name)
    client = get_client(clickhouse_dsn)
    agent, rng = "agent-old-customers", TimeRange(START, END)

    def check(reqs: list[sample.Req]) -> None:
        views = DashboardQueries(client, tiers_from_rows=0)
        for f in (Filters(), Filters(tool="search")):
            want = sample.naive_customers([r for r in reqs if matches(r, f)], agent, START, END)
            approx_rows(views.customers(agent, rng, limit=1000, filters=f), want)

    try:
        apply_migrations(client, before)
        reqs = [sample.Req(agent, f"o{i}", t, 200 if i % 3 else 500, 30.0 + i, f"c{i % 4}",
                           ["search", "other"][i % 2], 0.25 * (i % 2)) for i, t in enumerate(edge_times(START, END))]
        insert_in_parts(client, reqs, 2)
        apply_migrations(client, MIGRATIONS_DIR)
        check(reqs)
        [migration] = [m for m in discover() if m.version == 7]
        for statement in migration.statements():
            client.command(statement)
        check(reqs)
        later = [sample.Req(agent, f"n{i}", START + D + i * 997 * MS, 200, 7.0, "c9", "search", 0.0) for i in range(50)]
        sample.insert_requests(client, later)
        check(reqs + later)
        days = client.query("SELECT sum(requests) FROM agent_customer_day WHERE agent_id = {a:String}",
                            parameters={"a": agent}).result_rows[0][0]
        assert days == len([r for r in sample.traffic(reqs + later, agent) if r.customer_id])  # the table holds them
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{client.database}`")
