"""Money views against naive computations: revenue per customer, and usage cost from our own price list.

- ``revenue_by_customer``: generated raw rows (several customers, payments without a customer, other
  agents, connection checks, rows outside the range, amounts whose float sums tie or nearly tie)
  give, per customer, the exact sum of the amounts and the number of paid requests, ordered by
  amount (largest first, ties by customer id), cut at ``limit``.
- Usage amounts: reports go through the stream worker's own parsing (``UsageHandler``), as the sink
  stores them; the statement's amounts must equal, exactly, quantity times the prices written in
  ``sample.PRICES``, independently of ``schemas/prices.toml`` and its lookup code.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboards.billing import Billing, StatementRequest
from dashboards.queries import DashboardQueries, TimeRange
from meterline.clickhouse import INSERT_SETTINGS
from schemas.events import UsageRecord
from stream_workers.batch import OpenBatch
from stream_workers.handlers.usage import UsageHandler
from tests.integration.dashboards import sample

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)
#: x402 amounts as the clients send them; 0.1 + 0.2 and 0.3 are equal amounts but not equal floats
AMOUNTS = ["0", "0.001", "0.01", "0.05", "0.1", "0.2", "0.3", "0.25", "0.5", "1"]
DB_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                       suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def paid_traffic(draw: st.DrawFn, agent: str) -> list[tuple[sample.Req, Decimal]]:
    """Rows of ``agent`` and of another agent, in and out of [START, END), with their exact amounts."""
    out = []
    for i in range(draw(st.integers(0, 40))):
        owner = draw(st.sampled_from([agent, agent, agent, f"{agent}-other"]))
        text = draw(st.sampled_from(AMOUNTS))
        status = 200 if Decimal(text) > 0 else draw(st.sampled_from([200, 402, 500]))
        at = draw(st.one_of(st.integers(0, (END - START) // timedelta(milliseconds=1) - 1),
                            st.sampled_from([-1, -86_400_000, (END - START) // timedelta(milliseconds=1)])))
        source = draw(st.sampled_from(["sdk", "sdk", "sdk", "sdk_ping"]))
        req = sample.Req(owner, f"{agent}-{i}", START + timedelta(milliseconds=at), status, 3.0,
                         draw(st.sampled_from(["", "alice", "bob", "carol", "dave", "erin"])), "t", float(text),
                         source=source)
        out.append((req, Decimal(text)))
    return out


def naive_revenue_by_customer(rows: list[tuple[sample.Req, Decimal]], agent: str,
                              limit: int) -> list[tuple[str, Decimal, int]]:
    amount: dict[str, Decimal] = defaultdict(Decimal)
    paid: dict[str, int] = defaultdict(int)
    for r, exact in rows:
        if r.agent_id == agent and r.source != "sdk_ping" and exact > 0 and START <= r.event_time < END:
            amount[r.customer_id] += exact
            paid[r.customer_id] += 1
    ranked = sorted(amount, key=lambda c: (-amount[c], c))
    return [(c, amount[c], paid[c]) for c in ranked[:limit]]


@DB_SETTINGS
@given(data=st.data())
def test_revenue_by_customer_matches_the_naive_sums_order_and_limit(clickhouse: Client,
                                                                   data: st.DataObject) -> None:
    agent = f"agent-{uuid.uuid4().hex[:10]}"
    rows = data.draw(paid_traffic(agent), label="rows")
    if rows:
        sample.insert_requests(clickhouse, [r for r, _ in rows])
    limit = data.draw(st.integers(1, 7), label="limit")
    got = DashboardQueries(clickhouse).revenue(agent, TimeRange(START, END), "day", limit)["by_customer"]
    want = naive_revenue_by_customer(rows, agent, limit)
    assert [(r["customer_id"], r["paid_requests"]) for r in got] == [(c, n) for c, _, n in want]
    assert [r["amount"] for r in got] == pytest.approx([float(a) for _, a, _ in want], rel=1e-12)


def test_revenue_by_customer_breaks_an_exact_tie_by_customer_id(clickhouse: Client) -> None:
    """0.1 + 0.2 paid by one customer and 0.3 by another are the same revenue: alphabetical order."""
    agent = "agent-tie"
    at = START + timedelta(hours=1)
    reqs = [sample.Req(agent, "t1", at, 200, 1.0, "zed", "t", 0.1),
            sample.Req(agent, "t2", at, 200, 1.0, "zed", "t", 0.2),
            sample.Req(agent, "t3", at, 200, 1.0, "amy", "t", 0.3)]
    sample.insert_requests(clickhouse, reqs)
    got = DashboardQueries(clickhouse).revenue(agent, TimeRange(START, END), "day", 10)["by_customer"]
    assert [(r["customer_id"], r["paid_requests"]) for r in got] == [("amy", 1), ("zed", 2)]


# ---------------------------------------------------------------------------------------------- usage

PRICES = sample.PRICES
UNPRICED = {("vision", "clip")}  # no meter counts vision: unpriced, whatever its price in the sample list


def store_like_the_worker(client: Client, reports: list[UsageRecord]) -> None:
    """Parse and price ``reports`` with the stream worker's handler, write the batch as its sink does."""
    handler = UsageHandler()
    batch = OpenBatch(0)
    for offset, report in enumerate(reports):
        parsed = handler.parse(msgspec.json.encode(report), "usage", 0, offset)
        assert not parsed.dead and not parsed.clamped, parsed.dead
        batch.rows += [row for _key, row in parsed.items]
        batch.end = offset + 1
    sealed = batch.seal(f"usage-{uuid.uuid4().hex}", 0, handler.table, handler.columns)
    for block in sealed.blocks:
        client.raw_insert(block.table, column_names=block.columns, insert_block=block.data, fmt="JSONCompactEachRow",
                          settings={**INSERT_SETTINGS, "insert_deduplication_token": sealed.token})


@DB_SETTINGS
@given(st.lists(st.tuples(st.sampled_from(sorted(PRICES)), st.integers(0, 2_000_000), st.integers(0, 6)),
                min_size=1, max_size=30))
def test_usage_amounts_are_quantity_times_the_price_list_exactly(
        clickhouse: Client, reports: list[tuple[tuple[str, str], int, int]]) -> None:
    app = f"app-{uuid.uuid4().hex[:10]}"
    records = [UsageRecord(app_id=app, report_id=f"{app}-{i}", key_sha256="ab" * 32, module=module, model=model,
                           usage=units, timestamp=int((START + timedelta(days=day)).timestamp() * 1000) + i,
                           ingested_at=int((START + timedelta(days=day, minutes=1)).timestamp() * 1000))
               for i, ((module, model), units, day) in enumerate(reports)]
    store_like_the_worker(clickhouse, records)
    body = Billing(clickhouse).statement(StatementRequest(TimeRange(START, END), app, granularity="week",
                                                          by_customer=False))
    want: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for (module, model), units, _day in reports:
        n, amount = want.get((module, model), (0, Decimal(0)))
        want[(module, model)] = (n + units, amount + units * PRICES[(module, model)])
    got: dict[tuple[str, str], tuple[int, Decimal | None]] = {}
    for line in body["lines"] + body["unpriced"]:
        n, amount = got.get((line["module"], line["model"]), (0, Decimal(0)))
        line_amount = None if line["amount"] is None else Decimal(line["amount"])
        got[(line["module"], line["model"])] = (n + line["quantity"], None if line_amount is None or amount is None
                                                else amount + line_amount)
    assert set(got) == set(want)
    for key, (units, amount) in want.items():
        if key in UNPRICED:  # a module with no meter: listed with its quantity, never priced at 0
            assert got[key] == (units, None), key
        else:
            assert got[key] == (units, amount), key  # exact: Decimal equality, no tolerance
    assert Decimal(body["totals"][0]["amount"] if body["totals"] else 0) == sum(
        (a for k, (_u, a) in want.items() if k not in UNPRICED), Decimal(0))
