"""A generated month of billing traffic, and its statement computed naively from the raw events.

October 2026 for several apps: usage reports of every meter (and of a module no meter counts), end
customers named in ``metadata.customer_id`` or not at all, x402 payments in two tokens, events on
the month's first and last millisecond and just outside it, and deliveries repeated the way an SDK
retry or an MQTT redelivery repeats them. The naive statement reads the distinct events with
``Decimal`` and a price list written here from the published one — not read from
``schemas/prices.toml``, and without the lookup code of ``schemas/prices.py``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from clickhouse_connect.driver.client import Client

from meterline.clickhouse import INSERT_SETTINGS
from schemas.events import RequestBatchRecord, RequestEntry, UsageRecord
from stream_workers.batch import OpenBatch
from stream_workers.handlers.requests import RequestHandler
from stream_workers.handlers.usage import UsageHandler

MONTH = "2026-10"
START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
#: USD per unit for each (module, model) the month uses; None: nothing prices it (no meter for video).
PRICES: dict[tuple[str, str], Decimal | None] = {
    ("llm", "gpt-4"): Decimal("0.00003"),
    ("llm", "gpt-4o"): Decimal("0.000005"),
    ("llm", "gpt-3.5-turbo"): Decimal("0.0000015"),
    ("llm", "llama-3-70b"): Decimal("0.000002"),  # the llm default
    ("tts", "eleven-labs"): Decimal("0.00018"),
    ("tts", "azure-neural"): Decimal("0.00015"),  # the tts default
    ("asr", "whisper"): Decimal("0.0001"),
    ("tool", "web-search"): Decimal("0.001"),  # the tool default
    ("video", "gen-2"): None,
}
UNITS = {"llm": "tokens", "tts": "characters", "asr": "seconds", "tool": "calls"}
TOKENS = ("USDC-base-mainnet", "USDC-base-sepolia")
AMOUNTS = ("0.01", "0.1", "0.2", "0.3", "0.000001", "1.5", "0.05", "0.07")
_enc = msgspec.json.Encoder()


@dataclass(frozen=True)
class Report:
    app: str
    report_id: str
    module: str
    model: str
    usage: int
    at: datetime
    metadata: dict[str, Any] | None

    @property
    def customer(self) -> str:
        """The end customer a statement bills: ``metadata.customer_id`` ('' when the report names none)."""
        return str((self.metadata or {}).get("customer_id", ""))


@dataclass(frozen=True)
class Payment:
    app: str
    request_id: str
    at: datetime
    customer: str
    amount: str  # as the client sent it; "0" for a request that paid nothing
    token: str
    source: str = "sdk"


@dataclass
class Month:
    reports: list[Report] = field(default_factory=list)  # distinct
    payments: list[Payment] = field(default_factory=list)  # distinct
    usage_sent: list[tuple[Report, int]] = field(default_factory=list)  # (report, ingested ms), repeats included
    payments_sent: list[tuple[list[Payment], int]] = field(default_factory=list)  # one record per batch


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def generate(seed: int = 12, apps: int = 6, reports: int = 1500, payments: int = 700) -> Month:
    rnd = random.Random(seed)
    month = Month()
    app_ids = [f"app-{i}" for i in range(apps)]
    customers = {app: [f"{app}-cust-{j}" for j in range(5)] + ["kunde-ü"] for app in app_ids}
    edges = [START, START - timedelta(milliseconds=1), END - timedelta(milliseconds=1), END]

    def when(i: int) -> datetime:
        if i < len(edges) * 2:
            return edges[i % len(edges)]
        seconds = rnd.uniform(-2 * 86400, 33 * 86400)  # a little of the months before and after
        return START + timedelta(milliseconds=int(seconds * 1000))

    for i in range(reports):
        app = app_ids[i % apps]
        module, model = rnd.choice(sorted(PRICES))
        customer = rnd.choice(customers[app] + [""])
        metadata: dict[str, Any] | None = rnd.choice([
            {"customer_id": customer, "prompt_tokens": 3}, {"customer_id": customer}, {"region": "eu"}, None])
        if not customer and metadata and "customer_id" in metadata:
            metadata = None
        usage = rnd.choice([0, 1, rnd.randrange(1, 5000), rnd.randrange(1, 10**9)])
        # the same report id in two apps is two reports (the key is app + report id)
        report_id = f"rep-{i // 2}" if i % 50 < 2 else f"rep-{app}-{i}"
        month.reports.append(Report(app, report_id, module, model, usage, when(i), metadata))
    for i in range(payments):
        app = app_ids[i % apps]
        paid = rnd.random() < 0.7
        month.payments.append(Payment(app, f"req-{app}-{i}", when(i), rnd.choice(customers[app] + [""]),
                                      rnd.choice(AMOUNTS) if paid else "0", rnd.choice(TOKENS) if paid else "",
                                      source="sdk_ping" if i % 97 == 5 else "sdk"))

    for report in month.reports:  # delivered in order, 15% once more a moment later
        month.usage_sent.append((report, _ms(report.at) + 2000))
        if rnd.random() < 0.15:
            month.usage_sent.append((report, _ms(report.at) + 3500))
    batch: list[Payment] = []
    in_time = sorted(month.payments, key=lambda p: p.at)  # an SDK batches what its agent served lately
    for payment in in_time:
        batch.append(payment)
        if len(batch) == 20 or payment is in_time[-1]:
            by_app: dict[str, list[Payment]] = defaultdict(list)
            for p in batch:
                by_app[p.app].append(p)
            for entries in by_app.values():
                ingested = max(_ms(p.at) for p in entries) + 2000
                month.payments_sent.append((entries, ingested))
                if rnd.random() < 0.2:  # an SDK retry re-sends part of a batch
                    month.payments_sent.append((entries[: max(1, len(entries) // 2)], ingested + 1000))
            batch = []
    return month


def usage_records(month: Month) -> list[tuple[str, bytes]]:
    """The ``usage`` topic's records, as the MQTT bridge publishes them (key: app id)."""
    return [(r.app, _enc.encode(UsageRecord(app_id=r.app, report_id=r.report_id, key_sha256="ab" * 32,
                                            module=r.module, model=r.model, usage=r.usage, timestamp=_ms(r.at),
                                            ingested_at=ingested, metadata=r.metadata)))
            for r, ingested in month.usage_sent]


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_records(month: Month) -> list[tuple[str, bytes]]:
    """The ``requests`` topic's records, as the gateway publishes them (key: agent id)."""
    out = []
    for i, (entries, ingested) in enumerate(month.payments_sent):
        items = [RequestEntry(request_id=p.request_id, method="POST", path="/v1/run",
                              status_code=200 if p.amount != "0" else 402, response_ms=12.0, timestamp=_iso(p.at),
                              customer_id=p.customer or None, x402_amount=float(p.amount) if p.amount != "0" else None,
                              x402_token=p.token or None, source=p.source) for p in entries]
        out.append((entries[0].app, _enc.encode(RequestBatchRecord(agent_id=entries[0].app, batch_id=f"b-{i}",
                                                                   ingested_at=ingested, entries=items))))
    return out


@dataclass
class NaiveStatement:
    """One app's month: (customer, module, model) → [reports, quantity, amount or None]; x402 per (customer, token)."""

    lines: dict[tuple[str, str, str], list[Any]] = field(default_factory=dict)
    total: Decimal = Decimal(0)
    x402: dict[tuple[str, str], list[Any]] = field(default_factory=dict)


def naive_statements(month: Month, start: datetime = START, end: datetime = END,
                     reports: list[Report] | None = None) -> dict[str, NaiveStatement]:
    out: dict[str, NaiveStatement] = defaultdict(NaiveStatement)
    for r in month.reports if reports is None else reports:
        if not start <= r.at < end:
            continue
        line = out[r.app].lines.setdefault((r.customer, r.module, r.model), [0, 0, None])
        line[0] += 1
        line[1] += r.usage
        price = PRICES[(r.module, r.model)]
        if price is not None:
            line[2] = Decimal(line[1]) * price
    for st in out.values():
        st.total = sum((ln[2] for ln in st.lines.values() if ln[2] is not None), Decimal(0))
    for p in month.payments:
        if start <= p.at < end and p.source != "sdk_ping" and Decimal(p.amount) > 0:
            pay = out[p.app].x402.setdefault((p.customer, p.token), [0, Decimal(0)])
            pay[0] += 1
            pay[1] += Decimal(p.amount)
    return dict(out)


def store(client: Client, month: Month) -> None:
    """Write the month's distinct events as the stream workers store them (their parsing, one batch per topic),
    without Kafka: for tests of what is read back, not of the pipeline."""
    distinct = Month(usage_sent=[(r, _ms(r.at) + 2000) for r in month.reports],
                     payments_sent=[([p], _ms(p.at) + 2000) for p in month.payments])
    for handler, records in ((UsageHandler(), usage_records(distinct)), (RequestHandler(), request_records(distinct))):
        batch = OpenBatch(0)
        for offset, (_key, value) in enumerate(records):
            parsed = handler.parse(value, handler.kind, 0, offset)
            assert not parsed.dead and not parsed.clamped, parsed.dead
            batch.rows += [row for _k, row in parsed.items]
            batch.end = offset + 1
        sealed = batch.seal(f"{handler.kind}-{month.reports[0].report_id}", 0, handler.table, handler.columns)
        for block in sealed.blocks:
            client.raw_insert(block.table, column_names=block.columns, insert_block=block.data,
                              fmt="JSONCompactEachRow",
                              settings={**INSERT_SETTINGS, "insert_deduplication_token": sealed.token})
