"""Generated request traffic with known answers: duplicates, late events, poison records.

Expected totals are computed here from the distinct generated events, independently of the worker
code (no worker module is imported).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaProducer

from schemas.events import RequestBatchRecord, RequestEntry, UsageRecord

_enc = msgspec.json.Encoder()


@dataclass
class Expected:
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    payment_required: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    revenue: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    latency_sum: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    per_customer: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    per_tool: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    distinct: int = 0

    def add(self, agent: str, entry: RequestEntry) -> None:
        self.distinct += 1
        self.requests[agent] += 1
        status = entry.status_code
        self.errors[agent] += int(status >= 400 and status != 402)
        self.payment_required[agent] += int(status == 402)
        self.revenue[agent] += entry.x402_amount or 0.0
        self.latency_sum[agent] += entry.response_ms
        self.latencies[agent].append(entry.response_ms)
        self.per_customer[(agent, entry.customer_id or "")] += 1
        self.per_tool[(agent, entry.tool_name or "")] += 1


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def request_traffic(entries: int, *, agents: int = 8, per_record: int = 50, dup_rate: float = 0.10,
                    late_rate: float = 0.05, seed: int = 7) -> tuple[list[tuple[str, bytes]], Expected]:
    """(key, value) records for the requests topic and the expected totals of the distinct events.

    ``dup_rate`` of the records carry entries already sent (an SDK retry re-sends a whole batch, or a
    few of its entries, in a new record); ``late_rate`` of the entries are minutes old.
    """
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    expected = Expected()
    sent: dict[str, list[RequestEntry]] = defaultdict(list)
    records: list[tuple[str, bytes]] = []
    made = 0
    serial = 0
    while made < entries:
        agent = f"agent-{rng.randrange(agents)}"
        batch: list[RequestEntry] = []
        for _ in range(min(per_record, entries - made)):
            serial += 1
            status = rng.choice((200, 200, 200, 200, 201, 400, 402, 404, 500))
            late = rng.random() < late_rate
            ts = now - (rng.randrange(2, 30) * 60_000 if late else rng.randrange(0, 5000))
            entry = RequestEntry(
                request_id=f"req-{serial}", method=rng.choice(("GET", "POST", "tools/call")),
                path="/v1/run", status_code=status, response_ms=round(rng.lognormvariate(3, 0.8), 3),
                timestamp=_iso(ts), customer_id=f"cust-{rng.randrange(40)}" if rng.random() < 0.9 else None,
                tool_name=rng.choice(("search", "summarise", "translate", None)),
                x402_amount=0.01 if status == 200 and rng.random() < 0.2 else None,
                x402_token="USDC-base-mainnet", request_body="{}", source="sdk")
            batch.append(entry)
            expected.add(agent, entry)
            made += 1
        sent[agent].extend(batch)
        records.append((agent, _record(agent, batch, now)))
        if rng.random() < dup_rate * 2:  # retries: half of these resend a recent batch or part of one
            old = sent[agent][-rng.randrange(1, min(len(sent[agent]), 400) + 1):]
            resend = rng.sample(old, min(len(old), rng.randrange(1, per_record + 1)))
            records.append((agent, _record(agent, resend, now)))
    return records, expected


def _record(agent: str, entries: list[RequestEntry], ingested_at: int) -> bytes:
    return _enc.encode(RequestBatchRecord(agent_id=agent, batch_id=f"b-{random.getrandbits(40):x}",
                                          ingested_at=ingested_at, entries=entries, sdk_version="t/1"))


def usage_traffic(reports: int, *, apps: int = 3, dup_rate: float = 0.1,
                  seed: int = 3) -> tuple[list[tuple[str, bytes]], dict[tuple[str, str, str], tuple[int, int]]]:
    """Usage records and expected (reports, units) per (app, module, model)."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    expected: dict[tuple[str, str, str], tuple[int, int]] = defaultdict(lambda: (0, 0))
    out: list[tuple[str, bytes]] = []
    for i in range(reports):
        app = f"app-{rng.randrange(apps)}"
        module, model = rng.choice((("llm", "gpt-4"), ("tts", "eleven-labs"), ("asr", "whisper")))
        units = rng.randrange(1, 500)
        rec = UsageRecord(app_id=app, report_id=f"rep-{i}", key_sha256="0" * 64, module=module, model=model,
                          usage=units, timestamp=now - rng.randrange(0, 60_000), ingested_at=now)
        value = _enc.encode(rec)
        out.append((app, value))
        if rng.random() < dup_rate:
            out.append((app, value))
        n, u = expected[(app, module, model)]
        expected[(app, module, model)] = (n + 1, u + units)
    return out, dict(expected)


async def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key.encode()) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> tuple[int, int]:
    """(sum of committed offsets, sum of end offsets) of ``group`` on ``topic``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    tps = [TopicPartition(topic, p) for p in range(partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        try:
            offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
        except KafkaError:  # the group has no coordinator yet: nothing committed
            offsets = {}
    finally:
        await consumer.stop()
        await admin.close()
    done = sum(max(0, offsets[tp].offset) if tp in offsets else 0 for tp in tps)
    return done, sum(ends.values())


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

