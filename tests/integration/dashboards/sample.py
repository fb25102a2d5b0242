"""Realistic request and usage rows for the dashboard tests, plus naive Python versions of the views.

The naive functions read the shared definitions of ``schemas/queries/README.md`` literally over plain
Python lists; the SQL files must agree.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from meterline.clickhouse import INSERT_SETTINGS

NOW = datetime(2026, 11, 20, 15, 30, 0, tzinfo=UTC)
TOOLS = ["search", "summarise", "translate", "tools/call", "image.generate"]
REQUEST_COLS = ["agent_id", "request_id", "batch_id", "sdk_version", "event_time", "ingested_at", "stored_at",
                "method", "path", "status_code", "response_ms", "is_error", "is_payment_required",
                "customer_id", "tool_name", "error_type", "protocol", "source", "x402_amount",
                "x402_tx_hash", "x402_token", "x402_payer", "request_body", "response_body",
                "request_body_size", "response_body_size", "headers", "ip_address", "user_agent",
                "referer", "content_type", "accept_language", "country", "city"]
#: USD per unit, written here from the published price list (not read from schemas/prices.toml):
#: module/model, the module's default for an unlisted model, and nothing for an unknown module.
PRICES: dict[tuple[str, str], Decimal] = {
    ("llm", "gpt-4"): Decimal("0.00003"),
    ("llm", "gpt-4o"): Decimal("0.000005"),
    ("llm", "gpt-3.5-turbo"): Decimal("0.0000015"),
    ("llm", "mistral-large"): Decimal("0.000002"),
    ("tts", "eleven-labs"): Decimal("0.00018"),
    ("tts", "azure-neural"): Decimal("0.00015"),
    ("asr", "whisper"): Decimal("0.0001"),
    ("vision", "clip"): Decimal("0"),
}
USAGE_COLS = ["app_id", "report_id", "key_sha256", "module", "model", "usage", "unit_price", "cost",
              "event_time", "ingested_at", "stored_at", "metadata"]


@dataclass
class Req:
    agent_id: str
    request_id: str
    event_time: datetime
    status_code: int
    response_ms: float
    customer_id: str
    tool_name: str
    x402_amount: float
    source: str = "sdk"
    method: str = "POST"
    path: str = "/v1/run"
    request_body: str = '{"q":"hi"}'
    headers: dict[str, str] = field(default_factory=lambda: {"user-agent": "test"})  # as stored


@dataclass
class Usage:
    app_id: str
    report_id: str
    module: str
    model: str
    usage: int
    event_time: datetime
    cost: float = field(init=False)

    def __post_init__(self) -> None:
        self.cost = self.usage * float(PRICES[(self.module, self.model)])


def make_requests(agents: list[str], per_agent: int, seed: int = 7, now: datetime = NOW,
                  quiet_ages: Sequence[tuple[timedelta, timedelta]] = ()) -> list[Req]:
    """Requests of each agent over 40 days; none with an age inside a band of ``quiet_ages`` (window edges)."""
    rnd = random.Random(seed)
    out: list[Req] = []
    for agent in agents:
        customers = [f"cust-{agent[-1]}-{i:03d}" for i in range(25)]
        for i in range(per_agent):
            # 40 days back, denser near now; a few minutes of the last hour always populated
            age = timedelta(seconds=rnd.expovariate(1 / (6 * 86400)))
            if i % 10 == 0:
                age = timedelta(seconds=rnd.uniform(0, 3 * 3600))
            age = min(age, timedelta(days=40))
            for low, high in quiet_ages:
                if low <= age <= high:
                    age = high + (high - age) + timedelta(seconds=1)  # moved out of the quiet band
            status = rnd.choices([200, 201, 400, 402, 404, 429, 500, 503], [70, 5, 4, 6, 4, 3, 5, 3])[0]
            ms = round(rnd.lognormvariate(4.2, 0.9), 3)
            tool = rnd.choice(TOOLS + [""])
            customer = rnd.choice(customers) if rnd.random() < 0.9 else ""
            amount = round(rnd.choice([0.001, 0.01, 0.05, 0.25]), 6) if status == 200 and rnd.random() < 0.3 else 0.0
            when = now - age
            when = when.replace(microsecond=when.microsecond // 1000 * 1000)  # DateTime64(3)
            out.append(Req(agent, f"{agent}-r{i:06d}", when, status, ms, customer, tool, amount))
        # connection checks are not traffic
        out.append(Req(agent, f"{agent}-ping", now - timedelta(minutes=3), 200, 1.0, "", "", 0.0, source="sdk_ping",
                       method="GET", path="/ping"))
    return out


def make_usage(apps: list[str], per_app: int, seed: int = 11, now: datetime = NOW) -> list[Usage]:
    rnd = random.Random(seed)
    models = [("llm", "gpt-4"), ("llm", "gpt-4o"), ("llm", "mistral-large"), ("tts", "eleven-labs"), ("asr", "whisper")]
    out = []
    for app in apps:
        for i in range(per_app):
            module, model = rnd.choice(models)
            t = now - timedelta(seconds=rnd.uniform(0, 70 * 86400))
            out.append(Usage(app, f"{app}-u{i:05d}", module, model, rnd.randint(1, 5000), t.replace(microsecond=0)))
    return out


def insert_requests(client: Client, reqs: list[Req], stored_at: datetime = NOW) -> None:
    rows = []
    for r in reqs:
        err = int(r.status_code >= 400 and r.status_code != 402)
        rows.append([r.agent_id, r.request_id, "b1", "gt8004-python/0.1", r.event_time, r.event_time, stored_at,
                     r.method, r.path, r.status_code, r.response_ms, err, int(r.status_code == 402), r.customer_id,
                     r.tool_name, "server_error" if r.status_code >= 500 else "", "http", r.source,
                     r.x402_amount, f"0x{abs(hash(r.request_id)):x}" if r.x402_amount else "",
                     "USDC-base-mainnet" if r.x402_amount else "", "0xpayer" if r.x402_amount else "",
                     r.request_body, '{"a":"ok"}', len(r.request_body.encode()), 11, r.headers, "10.0.0.1",
                     "test/1.0", "", "application/json", "en", "DE", "Berlin"])
    for i in range(0, len(rows), 5000):
        chunk = rows[i:i + 5000]
        token = hashlib.sha256("\n".join(str(r[1]) for r in chunk).encode()).hexdigest()
        insert_rows(client, "request_logs", chunk, REQUEST_COLS, dedup_token=token)


def insert_rows(client: Client, table: str, rows: list[list[Any]], columns: list[str], dedup_token: str) -> None:
    """Insert as the sink does: synchronously, a retry of the same ``dedup_token`` being a no-op."""
    client.insert(table, rows, column_names=columns,
                  settings={**INSERT_SETTINGS, "insert_deduplication_token": dedup_token})


def insert_usage(client: Client, usage: list[Usage], stored_at: datetime = NOW) -> None:
    rows = [[u.app_id, u.report_id, "ab" * 32, u.module, u.model, u.usage, float(PRICES[(u.module, u.model)]), u.cost,
             u.event_time, u.event_time, stored_at, "{}"] for u in usage]
    token = hashlib.sha256("\n".join(u.report_id for u in usage).encode()).hexdigest()
    insert_rows(client, "usage_events", rows, USAGE_COLS, dedup_token=token)


# ----------------------------------------------------------------------------- naive reference


def q_inclusive(values: list[float], p: float) -> float:
    """Linear-interpolated percentile over sorted values (PERCENTILE.INC, R type 7)."""
    if not values:
        return 0.0
    xs = sorted(values)
    h = (len(xs) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def is_error(r: Req) -> bool:
    return r.status_code >= 400 and r.status_code != 402


def traffic(reqs: list[Req], agent: str, start: datetime | None = None, end: datetime | None = None) -> list[Req]:
    return [r for r in reqs if r.agent_id == agent and r.source != "sdk_ping"
            and (start is None or r.event_time >= start) and (end is None or r.event_time < end)]


def naive_overview(reqs: list[Req], agent: str, now: datetime) -> dict[str, Any]:
    rows = traffic(reqs, agent)
    midnight = datetime.combine(now.date(), datetime.min.time(), UTC)
    n = len(rows)
    errors = sum(is_error(r) for r in rows)
    return {
        "total_requests": n,
        "today_requests": sum(r.event_time >= midnight for r in rows),
        "week_requests": sum(r.event_time >= now - timedelta(days=7) for r in rows),
        "month_requests": sum(r.event_time >= now - timedelta(days=30) for r in rows),
        "revenue": sum(r.x402_amount for r in rows),
        "paid_requests": sum(r.x402_amount > 0 for r in rows),
        "payment_required": sum(r.status_code == 402 for r in rows),
        "errors": errors,
        "avg_latency_ms": sum(r.response_ms for r in rows) / n if n else 0.0,
        "error_rate": errors / n if n else 0.0,
        "last_request_at": max(r.event_time for r in rows) if rows else None,
    }


def naive_daily(reqs: list[Req], agent: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    by_day: dict[date, list[Req]] = defaultdict(list)
    for r in traffic(reqs, agent, start, end):
        by_day[r.event_time.date()].append(r)
    out = []
    day = start.date()
    while day < end.date() or (day == end.date() and end > datetime.combine(day, datetime.min.time(), UTC)):
        rows = by_day.get(day, [])
        lat = [r.response_ms for r in rows]
        out.append({"day": day, "requests": len(rows), "revenue": sum(r.x402_amount for r in rows),
                    "errors": sum(is_error(r) for r in rows),
                    "customers": len({r.customer_id for r in rows if r.customer_id}),
                    "avg_latency_ms": sum(lat) / len(lat) if lat else 0.0,
                    "p95_latency_ms": q_inclusive(lat, 0.95)})
        day += timedelta(days=1)
    return out


def _group(rows: list[Req], key: str) -> dict[str, list[Req]]:
    groups: dict[str, list[Req]] = defaultdict(list)
    for r in rows:
        groups[getattr(r, key)].append(r)
    return groups


def naive_customers(reqs: list[Req], agent: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    out = []
    for cust, rows in _group([r for r in traffic(reqs, agent, start, end) if r.customer_id], "customer_id").items():
        out.append({"customer_id": cust, "first_seen": min(r.event_time for r in rows),
                    "last_seen": max(r.event_time for r in rows), "requests": len(rows),
                    "revenue": sum(r.x402_amount for r in rows),
                    "avg_latency_ms": sum(r.response_ms for r in rows) / len(rows),
                    "error_rate": sum(is_error(r) for r in rows) / len(rows)})
    return sorted(out, key=lambda d: (-d["requests"], d["customer_id"]))


def naive_tools(reqs: list[Req], agent: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    out = []
    for tool, rows in _group([r for r in traffic(reqs, agent, start, end) if r.tool_name], "tool_name").items():
        lat = [r.response_ms for r in rows]
        out.append({"tool_name": tool, "requests": len(rows), "p95_latency_ms": q_inclusive(lat, 0.95),
                    "avg_latency_ms": sum(lat) / len(lat), "error_rate": sum(is_error(r) for r in rows) / len(rows),
                    "revenue": sum(r.x402_amount for r in rows)})
    return sorted(out, key=lambda d: (-d["requests"], d["tool_name"]))


def naive_perf(rows: list[Req], minutes: float) -> dict[str, Any]:
    lat = [r.response_ms for r in rows]
    n = len(rows)
    errors = sum(is_error(r) for r in rows)
    out = {"requests": n, "successes": sum(r.status_code < 400 for r in rows), "errors": errors,
           "payment_required": sum(r.status_code == 402 for r in rows), "error_rate": errors / n if n else 0.0,
           "avg_latency_ms": sum(lat) / n if n else 0.0, "requests_per_minute": n / minutes}
    for p in (50, 75, 90, 95, 99):
        out[f"p{p}_latency_ms"] = q_inclusive(lat, p / 100)
    return out


HIST_BOUNDS = [0.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0]


def naive_histogram(rows: list[Req]) -> list[int]:
    counts = [0] * len(HIST_BOUNDS)
    for r in rows:
        idx = max(i for i, b in enumerate(HIST_BOUNDS) if r.response_ms >= b)
        counts[idx] += 1
    return counts


def naive_revenue(reqs: list[Req], agent: str, start: datetime, end: datetime,
                  period: str) -> dict[date, tuple[float, int]]:
    out: dict[date, tuple[float, int]] = {}
    for r in traffic(reqs, agent, start, end):
        if r.x402_amount <= 0:
            continue
        d = r.event_time.date()
        if period == "week":
            d -= timedelta(days=d.weekday())
        elif period == "month":
            d = d.replace(day=1)
        amount, count = out.get(d, (0.0, 0))
        out[d] = (amount + r.x402_amount, count + 1)
    return out


UsageKey = tuple[str, date, str, str]


def naive_usage(usage: list[Usage], app: str, start: datetime, end: datetime,
                period: str) -> dict[UsageKey, tuple[int, int, float]]:
    out: dict[UsageKey, tuple[int, int, float]] = {}
    for u in usage:
        if (app and u.app_id != app) or not start <= u.event_time < end:
            continue
        d = u.event_time.date()
        if period == "week":
            d -= timedelta(days=d.weekday())
        elif period == "month":
            d = d.replace(day=1)
        key = (u.app_id, d, u.module, u.model)
        n, units, cost = out.get(key, (0, 0, 0.0))
        out[key] = (n + 1, units + u.usage, cost + u.cost)
    return out
