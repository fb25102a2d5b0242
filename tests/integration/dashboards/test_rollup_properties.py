"""Property tests of the per-minute rollups (migration 0002) and the minute edges of the views, on chDB.

- Partial aggregates: requests inserted in any split into batches (some batches replayed with their
  token, as a restarted sink does) are merged by ClickHouse into the naive per-minute totals: counts,
  sums, min/max, ``uniq`` of customers, and t-digest quantiles (within one rank of the exact ones, and
  the same as one digest over all the rows). Merging the stored parts (``OPTIMIZE ... FINAL``)
  changes nothing.
- Minute buckets: an event lands in the minute ``floor(ms / 60000)``; the views that add whole
  minutes from a rollup to the raw rows of a cut minute (overview's rolling windows, usage) count
  each event in range exactly once, for a range bound anywhere inside a minute or a millisecond.

Each example uses its own agent / app id, so the examples share the test's database.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboards.queries import DashboardQueries, TimeRange
from tests.integration.dashboards import sample

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BASE = datetime(2026, 11, 20, 11, 58, tzinfo=UTC)  # events start here, across a few minutes
LEVELS = (0.5, 0.75, 0.9, 0.95, 0.99)
DB_SETTINGS = settings(max_examples=10, deadline=None, derandomize=True,
                       suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


@st.composite
def requests(draw: st.DrawFn, agent: str) -> list[sample.Req]:
    """Up to 40 requests over 4 minutes (many on minute edges), a few customers and tools, some paid."""
    out = []
    for i in range(draw(st.integers(1, 40))):
        minute = draw(st.integers(0, 3))
        at = draw(st.one_of(st.sampled_from([0, 1, 59_999, 30_000]), st.integers(0, 59_999)))
        status = draw(st.sampled_from([200, 200, 201, 402, 404, 500]))
        amount = draw(st.sampled_from([0.0, 0.0, 0.01, 0.25])) if status == 200 else 0.0
        out.append(sample.Req(
            agent, f"{agent}-{i}", BASE + timedelta(minutes=minute, milliseconds=at), status,
            draw(st.sampled_from([1.5, 2.0, 7.25, 10.0, 120.0, 999.5])),
            draw(st.sampled_from(["", "c1", "c2", "c3", "c4"])), draw(st.sampled_from(["", "search", "tools/call"])),
            amount))
    return out


def split(draw: st.DataObject, rows: list[Any]) -> list[list[Any]]:
    """``rows`` cut into consecutive batches of any size."""
    batches, pos = [], 0
    while pos < len(rows):
        size = draw.draw(st.integers(1, len(rows) - pos), label="batch size")
        batches.append(rows[pos:pos + size])
        pos += size
    return batches


def minute_of(moment: datetime) -> datetime:
    return EPOCH + timedelta(minutes=ms(moment) // 60_000)


def naive_minutes(reqs: list[sample.Req]) -> dict[datetime, dict[str, Any]]:
    groups: dict[datetime, list[sample.Req]] = defaultdict(list)
    for r in reqs:
        groups[minute_of(r.event_time)].append(r)
    return {m: {"requests": len(rows), "errors": sum(sample.is_error(r) for r in rows),
                "payment_required": sum(r.status_code == 402 for r in rows),
                "paid": sum(r.x402_amount > 0 for r in rows), "revenue": sum(r.x402_amount for r in rows),
                "latency_sum": sum(r.response_ms for r in rows), "latency_min": min(r.response_ms for r in rows),
                "latency_max": max(r.response_ms for r in rows),
                "customers": len({r.customer_id for r in rows if r.customer_id})}
            for m, rows in groups.items()}


def within_one_rank(values: list[float], level: float, got: float) -> bool:
    """``got`` is a value of rank ``level * n`` give or take one (what a t-digest of singletons answers)."""
    xs = sorted(values)
    n = len(xs)
    return any(xs[k] == got for k in range(n) if abs(k + 1 - level * n) <= 1)


def rollup(client: Client, agent: str) -> dict[datetime, dict[str, Any]]:
    rows = client.query(
        "SELECT minute, sum(requests), sum(errors), sum(payment_required), sum(paid), sum(revenue), "
        "sum(latency_sum), min(latency_min), max(latency_max), uniqMerge(customers), "
        "quantilesTDigestMerge(0.5, 0.75, 0.9, 0.95, 0.99)(latency_quantiles) "
        "FROM agent_minute WHERE agent_id = {a:String} GROUP BY minute", parameters={"a": agent}).result_rows
    names = ["requests", "errors", "payment_required", "paid", "revenue", "latency_sum", "latency_min",
             "latency_max", "customers", "quantiles"]
    return {r[0].replace(tzinfo=UTC): dict(zip(names, r[1:], strict=True)) for r in rows}


def tool_hours(client: Client, agent: str) -> dict[tuple[str, datetime], tuple[Any, ...]]:
    """agent_tool_hour_sketch per tool and hour: requests, errors, 402s, revenue, latency sum."""
    rows = client.query(
        "SELECT tool_name, hour, sum(requests), sum(errors), sum(payment_required), sum(revenue), sum(latency_sum) "
        "FROM agent_tool_hour_sketch WHERE agent_id = {a:String} GROUP BY tool_name, hour",
        parameters={"a": agent}).result_rows
    return {(r[0], r[1].replace(tzinfo=UTC)): tuple(r[2:]) for r in rows}


def naive_tool_hours(reqs: list[sample.Req]) -> dict[tuple[str, datetime], tuple[Any, ...]]:
    groups: dict[tuple[str, datetime], list[sample.Req]] = defaultdict(list)
    for r in reqs:
        groups[(r.tool_name, minute_of(r.event_time).replace(minute=0))].append(r)
    return {k: (len(rows), sum(sample.is_error(r) for r in rows), sum(r.status_code == 402 for r in rows),
                sum(r.x402_amount for r in rows), sum(r.response_ms for r in rows)) for k, rows in groups.items()}


@DB_SETTINGS
@given(data=st.data())
def test_partial_aggregates_in_any_batch_split_merge_to_the_naive_totals(clickhouse: Client,
                                                                        data: st.DataObject) -> None:
    agent = f"agent-{uuid.uuid4().hex[:10]}"
    reqs = data.draw(requests(agent), label="requests")
    pings = [sample.Req(agent, f"{agent}-ping", BASE, 200, 1.0, "c9", "", 0.0, source="sdk_ping")]
    batches = split(data, reqs + pings)
    for batch in batches:
        sample.insert_requests(clickhouse, batch)
        if data.draw(st.booleans(), label="replayed"):  # a restarted sink re-inserts with the same token
            sample.insert_requests(clickhouse, batch)
    if data.draw(st.booleans(), label="merge parts"):
        for table in ("agent_minute", "agent_tool_hour_sketch", "agent_customer_day",
                      "agent_tool_customer_day"):
            clickhouse.command(f"OPTIMIZE TABLE {table} FINAL")

    got, want = rollup(clickhouse, agent), naive_minutes(reqs)
    assert set(got) == set(want), "an event landed outside the minute floor(ms / 60000)"
    exact = ["requests", "errors", "payment_required", "paid", "customers", "latency_min", "latency_max"]
    for minute, w in want.items():
        g = got[minute]
        assert {k: g[k] for k in exact} == {k: w[k] for k in exact}, minute
        assert (g["revenue"], g["latency_sum"]) == pytest.approx((w["revenue"], w["latency_sum"]), rel=1e-12)
        values = [r.response_ms for r in reqs if minute_of(r.event_time) == minute]
        for level, q in zip(LEVELS, g["quantiles"], strict=True):
            assert within_one_rank(values, level, q), (minute, level, q, sorted(values))
    whole = {r[0].replace(tzinfo=UTC): list(r[1]) for r in clickhouse.query(
        "SELECT toStartOfMinute(event_time) AS m, quantilesTDigest(0.5, 0.75, 0.9, 0.95, 0.99)(response_ms) "
        "FROM request_logs "
        "WHERE agent_id = {a:String} AND source != 'sdk_ping' GROUP BY m", parameters={"a": agent}).result_rows}
    assert {m: list(g["quantiles"]) for m, g in got.items()} == whole
    got_by, want_by = tool_hours(clickhouse, agent), naive_tool_hours(reqs)
    assert set(got_by) == set(want_by)
    for k, w in want_by.items():
        assert got_by[k][:3] == w[:3] and got_by[k][3:] == pytest.approx(w[3:], rel=1e-12), k
    for table, keys in (("agent_customer_day", ("customer_id",)),
                        ("agent_tool_customer_day", ("tool_name", "customer_id"))):
        got_days, want_days = customer_days(clickhouse, table, keys, agent), naive_customer_days(reqs, keys)
        assert set(got_days) == set(want_days), table
        for k, w in want_days.items():  # counts, the decimal revenue, first and last seen exact; the float sums
            g = got_days[k]
            assert (g[:4], g[6:]) == (w[:4], w[6:]) and g[4:6] == pytest.approx(w[4:6], rel=1e-12), (table, k)


def customer_days(client: Client, table: str, keys: tuple[str, ...],
                  agent: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The customer days of migration 0007 per key and day: requests, errors, paid requests, the exact decimal
    revenue, the float revenue, latency sum, first and last seen."""
    cols = ", ".join(keys)
    rows = client.query(
        f"SELECT {cols}, day, sum(requests), sum(errors), sum(paid), sum(revenue_exact), sum(revenue), "  # noqa: S608
        "sum(latency_sum), "
        f"min(first_seen), max(last_seen) FROM {table} WHERE agent_id = {{a:String}} GROUP BY {cols}, day",
        parameters={"a": agent}).result_rows
    return {r[:len(keys) + 1]: (*r[len(keys) + 1:-2], r[-2].replace(tzinfo=UTC), r[-1].replace(tzinfo=UTC))
            for r in rows}


def naive_customer_days(reqs: list[sample.Req], keys: tuple[str, ...]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    groups: dict[tuple[Any, ...], list[sample.Req]] = defaultdict(list)
    for r in reqs:  # requests without a customer under customer_id = '', as revenue by customer shows them
        groups[(*(getattr(r, k) for k in keys), r.event_time.date())].append(r)
    return {k: (len(rows), sum(sample.is_error(r) for r in rows), sum(r.x402_amount > 0 for r in rows),
                sum(Decimal(repr(r.x402_amount)) for r in rows), sum(r.x402_amount for r in rows),
                sum(r.response_ms for r in rows), min(r.event_time for r in rows),
                max(r.event_time for r in rows)) for k, rows in groups.items()}


def _usage(app: str, times: list[datetime]) -> list[sample.Usage]:
    return [sample.Usage(app, f"{app}-{i}", "llm", "gpt-4", 10 + i, t) for i, t in enumerate(times)]


edge_ms = st.one_of(st.sampled_from([0, 1, 999, 59_999, 60_000, 60_001, -1, -60_000]),
                    st.integers(-200_000, 200_000))
sub_ms = st.sampled_from([0, 0, 1, 499, 500, 999])  # microseconds inside a millisecond


@DB_SETTINGS
@given(data=st.data())
def test_usage_counts_each_report_in_range_once_for_any_bounds(clickhouse: Client, data: st.DataObject) -> None:
    """Whole minutes from usage_minute plus the raw reports of the cut minutes: exact at any bound."""
    app = f"app-{uuid.uuid4().hex[:10]}"
    start = BASE + timedelta(milliseconds=data.draw(st.integers(0, 59_999), label="start ms"),
                             microseconds=data.draw(sub_ms, label="start us"))
    length = data.draw(st.one_of(st.integers(1, 60_000), st.integers(1, 400_000)), label="length ms")
    end = start + timedelta(milliseconds=length, microseconds=data.draw(sub_ms, label="end us"))
    anchors = [start.replace(microsecond=start.microsecond // 1000 * 1000),
               end.replace(microsecond=end.microsecond // 1000 * 1000)]
    times = sorted({a + timedelta(milliseconds=d) for a in anchors for d in data.draw(
        st.lists(edge_ms, min_size=1, max_size=12), label="offsets")})
    usage = _usage(app, times)
    for batch in split(data, usage):
        sample.insert_usage(clickhouse, batch)
    got = DashboardQueries(clickhouse).usage(app, TimeRange(start, end), "day")
    inside = [u for u in usage if start <= u.event_time < end]
    assert sum(r["reports"] for r in got) == len(inside)
    assert sum(r["units"] for r in got) == sum(u.usage for u in inside)


@DB_SETTINGS
@given(data=st.data())
def test_overview_windows_count_each_request_once_for_any_now(clickhouse: Client, data: st.DataObject) -> None:
    """Rolling 7- and 30-day windows start inside a minute: rollup minutes plus raw rows, exactly."""
    agent = f"agent-{uuid.uuid4().hex[:10]}"
    now = BASE + timedelta(days=40, milliseconds=data.draw(st.integers(0, 86_400_000 - 1), label="now ms"))
    anchors = [now - timedelta(days=7), now - timedelta(days=30), now.replace(hour=0, minute=0, second=0,
                                                                              microsecond=0), now]
    offsets = data.draw(st.lists(st.tuples(st.sampled_from(range(len(anchors))), edge_ms), min_size=1, max_size=16),
                        label="events")
    times = sorted({anchors[a] + timedelta(milliseconds=d) for a, d in offsets})
    reqs = [sample.Req(agent, f"{agent}-{i}", t, 200, 5.0, "c", "t", 0.0) for i, t in enumerate(times)]
    for batch in split(data, reqs):
        sample.insert_requests(clickhouse, batch)
    got = DashboardQueries(clickhouse).overview(agent, now=now)
    want = sample.naive_overview(reqs, agent, now)
    for window in ("total_requests", "today_requests", "week_requests", "month_requests"):
        assert got[window] == want[window], (window, now)


def test_rollup_minute_keys_are_the_floor_of_the_event_time(clickhouse: Client) -> None:
    """The same as above at the edges that matter most, with named expectations (a readable failure)."""
    agent = "agent-floor"
    times = [BASE - timedelta(milliseconds=1), BASE, BASE + timedelta(milliseconds=59_999),
             BASE + timedelta(minutes=1)]
    sample.insert_requests(clickhouse, [sample.Req(agent, f"f{i}", t, 200, 1.0, "", "", 0.0)
                                        for i, t in enumerate(times)])
    got = Counter({m: v["requests"] for m, v in rollup(clickhouse, agent).items()})
    assert got == Counter({BASE - timedelta(minutes=1): 1, BASE: 2, BASE + timedelta(minutes=1): 1})


def test_negative_control_a_replay_under_a_new_token_is_counted_twice(clickhouse: Client) -> None:
    """What the merge test guards against: the same rows under another token reach the rollup again."""
    agent = "agent-double"
    reqs = [sample.Req(agent, f"d{i}", BASE + timedelta(seconds=i), 200, 1.0, "c1", "", 0.0) for i in range(3)]
    sample.insert_requests(clickhouse, reqs)
    sample.insert_requests(clickhouse, reqs)  # same token: dropped by the raw table and every rollup
    assert rollup(clickhouse, agent)[BASE]["requests"] == 3
    rows = [[*row[:2], "b2", *row[3:]] for row in clickhouse.query(
        f"SELECT {', '.join(sample.REQUEST_COLS)} FROM request_logs WHERE agent_id = {{a:String}}",  # noqa: S608
        parameters={"a": agent}).result_rows]
    sample.insert_rows(clickhouse, "request_logs", rows, sample.REQUEST_COLS, dedup_token="another-token")
    assert rollup(clickhouse, agent)[BASE]["requests"] == 6 != naive_minutes(reqs)[BASE]["requests"]
