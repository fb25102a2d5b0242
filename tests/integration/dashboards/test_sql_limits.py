"""The limits of the read side on chDB: each stops a query with its name, none can be lifted, the views' own
SQL files run under them too, and one ad-hoc query runs at a time.

Each sandboxed client here is a client of its own (``confine`` makes it read-only for good), confined with
limits small enough to reach in a second.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from clickhouse_connect.driver.client import Client

from dashboards import queries
from dashboards.errors import DashboardError
from dashboards.queries import DashboardQueries, TimeRange
from dashboards.sql import SqlBusy, SqlLimitExceeded, SqlSettings, confine, run_read_only
from meterline.clickhouse import get_client
from tests.integration.dashboards import sample
from tests.integration.dashboards.test_sql_attacks import MiB, rss
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def own(clickhouse: Client, clickhouse_dsn: str) -> Iterator[Client]:
    """A client of the test's own on the fixture's database."""
    client = get_client(clickhouse_dsn, create_database=False)
    try:
        yield client
    finally:
        client.close()


def test_execution_time(own: Client) -> None:
    confine(own, SqlSettings(max_execution_time=1))
    with pytest.raises(SqlLimitExceeded, match=r"query stopped: max_execution_time \(1 s\) exceeded"):
        run_read_only(own, "SELECT count() FROM numbers(400000000) WHERE sipHash64(number) % 7 = 1")


def test_rows_and_bytes_read(own: Client) -> None:
    confine(own, SqlSettings(max_rows_to_read=1000, max_bytes_to_read=10**9))
    with pytest.raises(SqlLimitExceeded, match=r"max_rows_to_read \(1,000 rows\)"):
        run_read_only(own, "SELECT count() FROM numbers(100000)")
    assert run_read_only(own, "SELECT count() FROM numbers(1000)")[1] == [[1000]]


def test_bytes_read(own: Client) -> None:
    confine(own, SqlSettings(max_bytes_to_read=80_000))
    with pytest.raises(SqlLimitExceeded, match=r"max_bytes_to_read"):
        run_read_only(own, "SELECT sum(number) FROM numbers(100000)")


def test_result_rows_and_a_callers_smaller_page(own: Client) -> None:
    confine(own, SqlSettings(max_result_rows=5000))
    columns, rows, truncated = run_read_only(own, "SELECT number FROM numbers(4000)", max_rows=10)
    assert (columns, rows, truncated) == (["number"], [[n] for n in range(10)], True)
    with pytest.raises(SqlLimitExceeded, match=r"max_result_rows \(5,000 rows\)"):
        run_read_only(own, "SELECT number FROM numbers(100000) ORDER BY number DESC", max_rows=100_000)


@pytest.mark.parametrize("limited", [True, False], ids=["limited", "negative-control-unlimited"])
def test_memory_limit_is_what_stops_a_heavy_query(own: Client, limited: bool) -> None:
    """Negative control: with a limit far above it, the same query runs to the end and takes >1 GiB."""
    confine(own, SqlSettings(max_memory_usage=512 * MiB if limited else 16 * 1024 * MiB))
    before = rss()
    peak = [before]
    done = threading.Event()

    def sample_rss() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss())

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    try:
        if limited:
            with pytest.raises(SqlLimitExceeded, match=r"max_memory_usage \(512 MiB\)"):
                run_read_only(own, "SELECT length(groupArray(number)) FROM numbers(150000000)")
        else:
            assert run_read_only(own, "SELECT length(groupArray(number)) FROM numbers(150000000)")[1] == [[150000000]]
    finally:
        done.set()
        sampler.join(5)
    grew = peak[0] - before
    assert (grew < 1024 * MiB) if limited else (grew > 1024 * MiB), f"peak RSS grew {grew / MiB:.0f} MiB"
    # handed back to the system after (polled: the engine's background merges of other tests share the process)
    wait_until(lambda: rss() - before < 256 * MiB, 15, "RSS back within 256 MiB of where it was")


def test_one_ad_hoc_query_at_a_time(own: Client) -> None:
    box = confine(own, SqlSettings(busy_timeout=0.2))
    assert box.busy.acquire(timeout=1)  # as a running query holds it
    try:
        with pytest.raises(SqlBusy, match="another ad-hoc query is running"):
            run_read_only(own, "SELECT 1")
    finally:
        box.busy.release()
    assert run_read_only(own, "SELECT 1 AS x")[1] == [[1]]


def test_the_views_run_under_the_limits(clickhouse: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    reqs = sample.make_requests(["agent-a"], 300)
    sample.insert_requests(clickhouse, reqs)
    rng = TimeRange(sample.NOW - timedelta(days=30), sample.NOW + timedelta(minutes=1))
    views = DashboardQueries(clickhouse)
    assert views.logs("agent-a", 50, rng)[0]  # within the default limits
    monkeypatch.setenv("METERLINE_SQL_MAX_ROWS_TO_READ", "10")
    queries.view_limits.cache_clear()
    try:
        with pytest.raises(DashboardError, match=r"query stopped: max_rows_to_read \(10 rows\) exceeded"):
            views.logs("agent-a", 50, rng)
    finally:
        monkeypatch.undo()
        queries.view_limits.cache_clear()
