"""Exactly-once totals with a worker SIGKILLed at random moments (real Kafka, embedded ClickHouse).

100,000 request entries, 10 % of them resent by "SDK retries" in later records, 5 % minutes late,
produced in four waves while the worker is killed and restarted. Afterwards every total in ClickHouse
equals the value computed from the distinct generated events; percentiles from the t-digest state
are compared with the exact quantiles within a stated error.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from meterline.clickhouse import get_client
from schemas.topics import Topics
from tests.integration.stream_workers.procs import WorkerProcess, wait_processed
from tests.integration.stream_workers.workload import Expected, committed_total, produce, quantile, request_traffic

pytestmark = pytest.mark.timeout(240)


def check_totals(dsn: str, expected: Expected) -> None:
    """Check in a fresh process: chDB opens one data directory per process, and this pytest process may
    already own the session's engine (the worker under test wrote to a directory of its own)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        pool.submit(_check_totals_here, dsn, expected).result()


def _check_totals_here(dsn: str, expected: Expected) -> None:
    client = get_client(dsn)
    try:
        rows, distinct = client.query(
            "SELECT count(), uniqExact(agent_id, request_id) FROM request_logs").result_rows[0]
        assert rows == distinct == expected.distinct
        per_agent = {r[0]: r[1:] for r in client.query(
            "SELECT agent_id, sum(requests), sum(errors), sum(payment_required), sum(revenue), sum(latency_sum), "
            "quantilesTDigestMerge(0.5, 0.75, 0.9, 0.95, 0.99)(latency_quantiles) "
            "FROM agent_minute GROUP BY agent_id").result_rows}
        assert set(per_agent) == set(expected.requests)
        raw = dict(client.query("SELECT agent_id, count() FROM request_logs GROUP BY agent_id").result_rows)
        parts = client.query("SELECT table, count(), sum(rows) FROM system.parts WHERE active AND database = "
                             "currentDatabase() GROUP BY table ORDER BY table").result_rows
        for agent, (requests, errors, p402, revenue, latency_sum, qs) in per_agent.items():
            assert requests == expected.requests[agent], (agent, requests, expected.requests[agent], raw[agent], parts)
            assert errors == expected.errors[agent]
            assert p402 == expected.payment_required[agent]
            assert revenue == pytest.approx(expected.revenue[agent], rel=1e-9, abs=1e-9)
            assert latency_sum == pytest.approx(expected.latency_sum[agent], rel=1e-9)
            # t-digest is approximate: within 5 % of the exact quantile (p99: 10 %) on ~12k values.
            for q, got in zip((0.5, 0.75, 0.9, 0.95, 0.99), qs, strict=True):
                exact = quantile(expected.latencies[agent], q)
                assert got == pytest.approx(exact, rel=0.10 if q == 0.99 else 0.05), (agent, q)
        per_customer = dict(((a, c), n) for a, c, n in client.query(
            "SELECT agent_id, customer_id, sum(requests) FROM agent_customer_day GROUP BY agent_id, customer_id"
        ).result_rows)
        assert per_customer == dict(expected.per_customer)
        per_tool = dict(((a, t), n) for a, t, n in client.query(
            "SELECT agent_id, tool_name, sum(requests) FROM agent_tool_hour_sketch GROUP BY agent_id, tool_name"
        ).result_rows)
        assert per_tool == dict(expected.per_tool)
        customers = dict(client.query(
            "SELECT agent_id, uniqMerge(customers) FROM agent_minute GROUP BY agent_id").result_rows)
        for agent in expected.requests:
            assert customers[agent] == len({c for (a, c) in expected.per_customer if a == agent and c})
    finally:
        client.close()


def test_sigkill_at_random_moments_keeps_totals_exact(kafka_bootstrap: str, topics: Topics, tmp_dir: Path) -> None:
    records, expected = request_traffic(100_000, agents=8, dup_rate=0.10, late_rate=0.05, seed=11)
    assert expected.distinct == 100_000 and len(records) > 2000
    dsn = f"chdb://{tmp_dir / 'chdb'}?database=kill_test"
    worker = WorkerProcess(kafka_bootstrap, topics, tmp_dir / "worker.log", dsn)
    rng = random.Random(5)
    waves = [records[i::4] for i in range(4)]  # interleaved: duplicates land in other waves too
    group = f"{topics.prefix}workers.process"
    worker.start()
    for wave in waves[:3]:
        before = asyncio.run(committed_total(kafka_bootstrap, group, topics.requests, topics.partitions))[0]
        asyncio.run(produce(kafka_bootstrap, topics.requests, wave))
        deadline = time.monotonic() + 30  # kill while it works through the wave: mid-batch, mid-write
        while (asyncio.run(committed_total(kafka_bootstrap, group, topics.requests, topics.partitions))[0] == before
               and time.monotonic() < deadline):
            time.sleep(0.1)
        # A random kill moment on purpose (seeded): somewhere in the wave's work, wherever that falls.
        # It complements test_crash_windows.py, which kills exactly inside each crash window.
        time.sleep(rng.uniform(0.0, 0.6))
        worker.kill()
        worker.start()
    asyncio.run(produce(kafka_bootstrap, topics.requests, waves[3]))
    wait_processed(kafka_bootstrap, group, topics, timeout=120, proc=worker)
    assert worker.stop() == 0
    log = worker.log()
    recovered = log.count("rebuilt dedupe window") + log.count("restored dedupe state from")  # either path
    assert worker.starts == 4 and recovered >= 3, log[-3000:]
    print("re-formed batches:", log.count("re-forming the recorded batch"))
    check_totals(dsn, expected)
