"""A monthly statement for a generated month, checked against a naive computation from the raw events.

The month's reports and requests (repeats included) go through real Kafka and the stream workers
(validation, deduplication, the exactly-once sink) into ClickHouse; the statement read back must equal,
line by line and to the last decimal, what ``billing_month.naive_statements`` computes from the distinct
events with ``Decimal`` and its own price list. A report stored after the statement's ``as_of`` is left
out of it, and counted by a statement as of later.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from dashboards.billing import Billing, StatementRequest
from dashboards.queries import TimeRange, utcnow
from meterline.clickhouse import get_client
from schemas.topics import Topics
from stream_workers.processor import Processor
from stream_workers.settings import WorkerSettings
from stream_workers.sink import ClickHouseSink
from tests.integration.dashboards import billing_month as gen
from tests.integration.stream_workers.workload import committed_total, produce
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(180)


@dataclass
class Pipeline:
    processor: Processor
    bootstrap: str
    topics: Topics

    async def drained(self) -> None:
        """Every record of both topics written and committed (the sink writes before it commits)."""
        async def done() -> bool:
            for topic in (self.topics.usage, self.topics.requests):
                got, end = await committed_total(self.bootstrap, self.processor.group_id, topic,
                                                 self.topics.partitions)
                if end == 0 or got < end:
                    return False
            return True
        await eventually(done, 90, "every usage and request record committed", interval=0.3)


@pytest.fixture
async def pipeline(kafka_bootstrap: str, topics: Topics, clickhouse_dsn: str,
                   clickhouse: Client) -> AsyncIterator[Pipeline]:
    settings = WorkerSettings(kafka_bootstrap_servers=kafka_bootstrap, clickhouse_url=clickhouse_dsn,
                              topic_prefix=topics.prefix, partitions=topics.partitions, sink_batch_size=500,
                              sink_interval_s=0.2, session_timeout_s=6, sink_retry_max_s=0.5)
    sink = ClickHouseSink(lambda: get_client(clickhouse_dsn), retry_max_s=0.5)
    assert await sink.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    processor = Processor(settings, sink, producer)
    await processor.start()
    try:
        yield Pipeline(processor, kafka_bootstrap, topics)
    finally:
        await processor.stop()
        await producer.stop()
        await sink.close()


def as_lines(statement: dict[str, Any]) -> dict[tuple[str, str, str], list[Any]]:
    out: dict[tuple[str, str, str], list[Any]] = {}
    for line in statement["lines"] + statement["unpriced"]:
        key = (line["customer_id"], line["module"], line["model"])
        assert key not in out, key  # one price all month: one line per customer and model
        amount = Decimal(line["amount"]) if line["amount"] is not None else None
        out[key] = [line["reports"], line["quantity"], amount]
        module = line["module"]
        assert line["unit"] == gen.UNITS.get(module), line  # never a unit of another meter
        assert (line["unit_price"] is None) == (gen.PRICES[(module, line["model"])] is None), line
        if line["unit_price"] is not None:
            assert Decimal(line["unit_price"]) == gen.PRICES[(module, line["model"])], line
            assert line["currency"] == "USD"
    return out


def check(got: dict[str, Any], want: dict[str, gen.NaiveStatement]) -> None:
    statements = {s["app_id"]: s for s in got["statements"]}
    assert set(statements) == set(want)
    for app, naive in want.items():
        st = statements[app]
        assert as_lines(st) == naive.lines, app
        priced = any(ln[2] is not None for ln in naive.lines.values())
        assert [(t["currency"], Decimal(t["amount"])) for t in st["totals"]] == ([("USD", naive.total)] if priced
                                                                                 else []), app
        assert all("e" not in t["amount"].lower() for t in st["totals"])  # plain decimals, never 2e-05
        per_customer: dict[str, Decimal] = {}
        for (customer, _m, _mo), (_n, _q, amount) in naive.lines.items():
            if amount is not None:
                per_customer[customer] = per_customer.get(customer, Decimal(0)) + amount
        assert {c["customer_id"]: Decimal(c["totals"][0]["amount"]) for c in st["customers"] if c["totals"]} \
            == per_customer, app
        x402 = {(ln["customer_id"], ln["currency"]): [ln["paid_requests"], Decimal(ln["amount"])]
                for ln in st["x402"]["lines"]}
        assert x402 == naive.x402, app
        by_token: dict[str, Decimal] = {}
        for (_c, token), (_n, amount) in naive.x402.items():
            by_token[token] = by_token.get(token, Decimal(0)) + amount
        assert {t["currency"]: Decimal(t["amount"]) for t in st["x402"]["totals"]} == by_token, app


async def test_the_statement_of_a_generated_month_equals_the_naive_one(pipeline: Pipeline, clickhouse: Client) -> None:
    month = gen.generate()
    usage, requests = gen.usage_records(month), gen.request_records(month)
    assert len(usage) > len(month.reports) and len(requests) > 0  # repeats are in what is sent
    await produce(pipeline.bootstrap, pipeline.topics.usage, usage)
    await produce(pipeline.bootstrap, pipeline.topics.requests, requests)
    await pipeline.drained()

    want = gen.naive_statements(month)
    assert sum(len(s.lines) for s in want.values()) > 150 and all(s.x402 for s in want.values())
    assert any(ln[2] is None for s in want.values() for ln in s.lines.values())  # unpriced usage is there
    billing = Billing(clickhouse)
    got = await asyncio.to_thread(billing.statements, StatementRequest(TimeRange.month(gen.MONTH)))
    check(got, want)
    assert got["currency"] == "USD" and got["price_list"]["currency"] == "USD"
    assert {(p["meter"], p["unit"]) for p in got["price_list"]["prices"]} >= {
        ("llm", "tokens"), ("tts", "characters"), ("asr", "seconds"), ("tool", "calls")}

    # one app alone, one end customer alone: the same lines
    one = await asyncio.to_thread(billing.statement, StatementRequest(TimeRange.month(gen.MONTH), "app-1"))
    assert as_lines(one) == want["app-1"].lines
    customer = "app-2-cust-3"
    only = await asyncio.to_thread(billing.statement, StatementRequest(TimeRange.month(gen.MONTH), "app-2", customer))
    assert as_lines(only) == {k: v for k, v in want["app-2"].lines.items() if k[0] == customer}

    # a report for October arriving after the statement was made: not in a statement as of then, in later ones
    as_of = utcnow() + timedelta(milliseconds=1)
    await eventually(lambda: utcnow() > as_of, 5, "the clock to pass as_of")
    late = gen.Report("app-0", "late-1", "llm", "gpt-4", 1000, gen.END - timedelta(days=2), {"customer_id": "late"})
    late_month = gen.Month(reports=[late], usage_sent=[(late, int(late.at.timestamp() * 1000) + 3_600_000)])
    await produce(pipeline.bootstrap, pipeline.topics.usage, gen.usage_records(late_month))
    await pipeline.drained()
    before = await asyncio.to_thread(billing.statements, StatementRequest(TimeRange.month(gen.MONTH), as_of=as_of))
    check(before, want)
    after = await asyncio.to_thread(billing.statements, StatementRequest(TimeRange.month(gen.MONTH)))
    check(after, gen.naive_statements(month, reports=[*month.reports, late]))
