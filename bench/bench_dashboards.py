"""Dashboard queries at 10 million stored requests: embedded ClickHouse (chDB) vs the seed's PostgreSQL.

The same rows (30 days, 50 agents with a skewed spread, 10,000 customers, 20 tools, errors, 402s and
x402 payments, plus billing usage reports) are generated inside ClickHouse with
``INSERT ... SELECT ... FROM numbers(N)`` and copied into a private PostgreSQL cluster (Debian's
``postgresql`` package, started here with initdb/pg_ctl as the ``postgres`` user on a free port)
with ``COPY``, into row-per-request tables indexed on (agent_id, event_time) like the seed's design.
Every view of ``schemas/queries`` runs against random agents; the PostgreSQL side runs the same
view written in PostgreSQL SQL (exact ``percentile_cont`` where ClickHouse uses
``quantileExactInclusive``). Prints p50/p95 per view, the p95 ratio PostgreSQL / chDB, and whether
chDB meets the 100 ms p95 target.

Run: ``python bench/bench_dashboards.py`` (10 M rows) or ``--quick`` (1 M rows).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dashboards.queries import DashboardQueries, TimeRange
from meterline.clickhouse import INSERT_SETTINGS, get_client
from meterline.local.ports import free_port
from meterline.migrations import apply_migrations

AGENTS, CUSTOMERS, TOOLS, DAYS = 50, 10_000, 20, 30
TARGET_MS = 100.0
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
PG_BIN = Path("/usr/lib/postgresql/15/bin")

# --------------------------------------------------------------------------------------------- data

# Deterministic pseudo-random columns from the row number: h(k) = cityHash64(number, k).
GENERATE_REQUESTS = """
INSERT INTO request_logs (agent_id, request_id, batch_id, sdk_version, event_time, ingested_at, stored_at,
    method, path, status_code, response_ms, is_error, is_payment_required, customer_id, tool_name, error_type,
    protocol, source, x402_amount, x402_tx_hash, x402_token, request_body, response_body,
    request_body_size, response_body_size, ip_address, user_agent, country)
SELECT
    concat('agent-', toString(toUInt32(floor(pow((cityHash64(number, 1) % 1000000) / 1e6, 2) * {agents:UInt32}))))
        AS agent_id,
    toString(generateUUIDv4(number)) AS request_id,
    concat('b', toString(intDiv(number, 50))) AS batch_id,
    'gt8004-python/0.1' AS sdk_version,
    {now:DateTime64(3, 'UTC')} - toIntervalMillisecond(cityHash64(number, 2) % ({days:UInt32} * 86400000))
        AS event_time,
    event_time AS ingested_at,
    event_time AS stored_at,
    if(cityHash64(number, 3) % 4 = 0, 'tools/call', 'POST') AS method,
    concat('/v1/', toString(cityHash64(number, 4) % 20)) AS path,
    multiIf(cityHash64(number, 5) % 100 < 80, 200, cityHash64(number, 5) % 100 < 86, 402,
            cityHash64(number, 5) % 100 < 91, 404, cityHash64(number, 5) % 100 < 93, 429,
            cityHash64(number, 5) % 100 < 97, 500, 201) AS status_code,
    round(3 + pow((cityHash64(number, 6) % 10000) / 10000, 3) * 2500 + (cityHash64(number, 7) % 400) / 10, 3)
        AS response_ms,
    toUInt8(status_code >= 400 AND status_code != 402) AS is_error,
    toUInt8(status_code = 402) AS is_payment_required,
    if(cityHash64(number, 8) % 20 = 0, '', concat('cust-', toString(cityHash64(number, 9) % {customers:UInt32})))
        AS customer_id,
    concat('tool-', toString(cityHash64(number, 4) % {tools:UInt32})) AS tool_name,
    if(status_code >= 500, 'server_error', if(status_code >= 400 AND status_code != 402, 'client_error', ''))
        AS error_type,
    if(method = 'tools/call', 'mcp', 'http') AS protocol,
    'sdk' AS source,
    if(status_code = 200 AND cityHash64(number, 10) % 10 < 3,
       [0.001, 0.01, 0.05, 0.25][1 + cityHash64(number, 11) % 4], 0.) AS x402_amount,
    if(x402_amount > 0, hex(cityHash64(number, 12)), '') AS x402_tx_hash,
    if(x402_amount > 0, 'USDC-base-mainnet', '') AS x402_token,
    '{"q":"hello"}' AS request_body,
    '{"a":"ok"}' AS response_body,
    14, 11,
    IPv4NumToString(toUInt32(cityHash64(number, 13) % 4294967295)) AS ip_address,
    'python-httpx/0.28' AS user_agent,
    ['DE', 'US', 'KR', 'CN', 'FR'][1 + cityHash64(number, 14) % 5] AS country
FROM numbers({offset:UInt64}, {count:UInt64})
"""

GENERATE_USAGE = """
INSERT INTO usage_events (app_id, report_id, key_sha256, module, model, usage, unit_price, cost, event_time,
    ingested_at, stored_at, metadata)
SELECT
    concat('agent-', toString(cityHash64(number, 21) % {agents:UInt32})) AS app_id,
    toString(generateUUIDv4(number + 1000000000)) AS report_id,
    lower(hex(SHA256(app_id))) AS key_sha256,
    ['llm', 'llm', 'llm', 'tts', 'asr'][1 + cityHash64(number, 22) % 5] AS module,
    multiIf(module = 'tts', 'eleven-labs', module = 'asr', 'whisper',
            ['gpt-4', 'gpt-4o', 'gpt-3.5-turbo'][1 + cityHash64(number, 23) % 3]) AS model,
    1 + cityHash64(number, 24) % 4000 AS usage,
    multiIf(model = 'gpt-4', 0.00003, model = 'gpt-4o', 0.000005, model = 'gpt-3.5-turbo', 0.0000015,
            module = 'tts', 0.00018, 0.0001) AS unit_price,
    usage * unit_price AS cost,
    {now:DateTime64(3, 'UTC')} - toIntervalMillisecond(cityHash64(number, 25) % ({days:UInt32} * 86400000))
        AS event_time,
    event_time, event_time, '{}'
FROM numbers({count:UInt64})
"""

PG_SCHEMA = """
CREATE TABLE request_logs (
    agent_id text NOT NULL, request_id text NOT NULL, event_time timestamptz NOT NULL, method text, path text,
    status_code int NOT NULL, response_ms double precision NOT NULL, customer_id text NOT NULL,
    tool_name text NOT NULL, source text NOT NULL, x402_amount double precision NOT NULL,
    x402_tx_hash text, request_body text, response_body text
);
CREATE TABLE usage_events (
    app_id text NOT NULL, report_id text NOT NULL, module text NOT NULL, model text NOT NULL,
    usage bigint NOT NULL, cost double precision NOT NULL, event_time timestamptz NOT NULL
);
"""
PG_INDEXES = """
CREATE UNIQUE INDEX request_logs_agent_request ON request_logs (agent_id, request_id);
CREATE INDEX request_logs_agent_time ON request_logs (agent_id, event_time);
CREATE INDEX usage_events_app_time ON usage_events (app_id, event_time);
VACUUM ANALYZE request_logs;
VACUUM ANALYZE usage_events;
"""
PG_REQUEST_COLS = ("agent_id, request_id, event_time, method, path, status_code, response_ms, customer_id, "
                   "tool_name, source, x402_amount, x402_tx_hash, request_body, response_body")
PG_USAGE_COLS = "app_id, report_id, module, model, usage, cost, event_time"


def generate_chdb(client: Any, rows: int) -> float:
    started = time.perf_counter()
    chunk = 2_000_000
    for offset in range(0, rows, chunk):
        client.command(GENERATE_REQUESTS, parameters={
            "agents": AGENTS, "customers": CUSTOMERS, "tools": TOOLS, "days": DAYS, "now": NOW,
            "offset": offset, "count": min(chunk, rows - offset)}, settings=INSERT_SETTINGS)
    client.command(GENERATE_USAGE, parameters={"agents": AGENTS, "days": DAYS, "now": NOW, "count": rows // 10},
                   settings=INSERT_SETTINGS)
    # steady state: the parts merged, as background merges leave them (rollups included)
    for table in ("request_logs", "usage_events", "agent_minute", "agent_customer_minute", "agent_tool_minute",
                  "usage_minute"):
        if client.command("EXISTS TABLE {table:Identifier}", parameters={"table": table}):
            client.command("OPTIMIZE TABLE {table:Identifier} FINAL", parameters={"table": table})
    return time.perf_counter() - started


# ----------------------------------------------------------------------------------------- postgres


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A private PostgreSQL cluster in a temp dir on a free port; yields a conninfo string."""
    if not (PG_BIN / "initdb").exists():
        raise SystemExit("PostgreSQL is required: apt-get install -y postgresql")
    root = Path(tempfile.mkdtemp(prefix="meterline-bench-pg-"))
    data, port = root / "data", free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "bench",
                    "--encoding=UTF8", "--locale=C"], check=True, stdout=subprocess.DEVNULL)
    opts = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c shared_buffers=2GB "
            "-c work_mem=256MB -c maintenance_work_mem=1GB -c max_wal_size=8GB -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c jit=off")
    subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"),
                    "-w", "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"host=127.0.0.1 port={port} user=bench dbname=postgres"
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


def load_postgres(pg: Any, client: Any, rows: int) -> float:
    """Copy the chDB rows into PostgreSQL with COPY (tab-separated), then index and analyse."""
    started = time.perf_counter()
    with pg.cursor() as cur:
        cur.execute(PG_SCHEMA)
        parts = max(1, rows // 1_000_000)
        for part in range(parts):
            data = client.raw_query(
                "SELECT agent_id, request_id, concat(toString(event_time), '+00'), method, path, status_code, "
                "response_ms, customer_id, tool_name, source, x402_amount, x402_tx_hash, request_body, response_body "
                "FROM request_logs WHERE cityHash64(request_id) % {parts:UInt32} = {part:UInt32}",
                parameters={"parts": parts, "part": part}, fmt="TabSeparated")
            with cur.copy(f"COPY request_logs ({PG_REQUEST_COLS}) FROM STDIN") as copy:
                copy.write(data)
        data = client.raw_query("SELECT app_id, report_id, module, model, usage, cost, "
                                "concat(toString(event_time), '+00') FROM usage_events", fmt="TabSeparated")
        with cur.copy(f"COPY usage_events ({PG_USAGE_COLS}) FROM STDIN") as copy:
            copy.write(data)
        pg.commit()
        pg.autocommit = True
        for statement in filter(None, (part.strip() for part in PG_INDEXES.split(";"))):
            cur.execute(statement)
    return time.perf_counter() - started


# The same views in PostgreSQL SQL over the row-per-request table (the seed's design).
# $AGENT: the agent's traffic (no sdk_ping); $RANGE: and event_time in [start, end); $ERR: an error.
_PG_TEMPLATES: dict[str, str] = {
    "overview": """SELECT count(*), count(*) FILTER (WHERE event_time >= %(midnight)s),
        count(*) FILTER (WHERE event_time >= %(week)s), count(*) FILTER (WHERE event_time >= %(month)s),
        coalesce(sum(x402_amount), 0), count(*) FILTER (WHERE x402_amount > 0),
        count(*) FILTER (WHERE status_code = 402), count(*) FILTER (WHERE $ERR), coalesce(avg(response_ms), 0),
        coalesce(count(*) FILTER (WHERE $ERR)::float8 / nullif(count(*), 0), 0),
        count(DISTINCT customer_id) FILTER (WHERE customer_id <> ''), max(event_time)
        FROM request_logs WHERE $AGENT""",
    "daily": """SELECT (event_time AT TIME ZONE 'UTC')::date AS day, count(*), sum(x402_amount),
        count(*) FILTER (WHERE $ERR), count(DISTINCT customer_id) FILTER (WHERE customer_id <> ''),
        avg(response_ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY response_ms)
        FROM request_logs WHERE $RANGE GROUP BY day ORDER BY day""",
    "customers": """SELECT customer_id, min(event_time), max(event_time), count(*) AS requests, sum(x402_amount),
        avg(response_ms), count(*) FILTER (WHERE $ERR)::float8 / count(*)
        FROM request_logs WHERE $RANGE AND customer_id <> ''
        GROUP BY customer_id ORDER BY requests DESC, customer_id LIMIT %(limit)s""",
    "tools": """SELECT tool_name, count(*) AS requests, percentile_cont(0.95) WITHIN GROUP (ORDER BY response_ms),
        avg(response_ms), count(*) FILTER (WHERE $ERR)::float8 / count(*), sum(x402_amount)
        FROM request_logs WHERE $RANGE AND tool_name <> ''
        GROUP BY tool_name ORDER BY requests DESC, tool_name LIMIT %(limit)s""",
    "logs": """SELECT event_time, request_id, method, path, status_code, response_ms, customer_id, tool_name,
        x402_amount, x402_tx_hash, left(request_body, 2048), left(response_body, 2048)
        FROM request_logs WHERE $AGENT ORDER BY event_time DESC, request_id DESC LIMIT %(limit)s""",
    "performance": """SELECT CASE WHEN event_time >= %(start)s THEN 'current' ELSE 'previous' END AS period,
        count(*), count(*) FILTER (WHERE status_code < 400), count(*) FILTER (WHERE $ERR),
        count(*) FILTER (WHERE status_code = 402), avg(response_ms),
        percentile_cont(ARRAY[0.5, 0.75, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY response_ms)
        FROM request_logs WHERE $AGENT AND event_time >= %(prev_start)s AND event_time < %(end)s
        GROUP BY period ORDER BY period""",
    "latency_histogram": """SELECT width_bucket(response_ms,
        ARRAY[0, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]::float8[]) AS bucket, count(*)
        FROM request_logs WHERE $RANGE GROUP BY bucket ORDER BY bucket""",
    "performance_hourly": """SELECT date_trunc('hour', event_time) AS hour, count(*),
        count(*) FILTER (WHERE $ERR), avg(response_ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY response_ms)
        FROM request_logs WHERE $RANGE GROUP BY hour ORDER BY hour""",
    "revenue": """SELECT (event_time AT TIME ZONE 'UTC')::date AS period_start, sum(x402_amount), count(*)
        FROM request_logs WHERE $RANGE AND x402_amount > 0 GROUP BY period_start ORDER BY period_start""",
    "revenue_by_tool": """SELECT tool_name, sum(x402_amount) AS amount, count(*)
        FROM request_logs WHERE $RANGE AND x402_amount > 0 GROUP BY tool_name ORDER BY amount DESC, tool_name""",
    "revenue_by_customer": """SELECT customer_id, sum(x402_amount) AS amount, count(*)
        FROM request_logs WHERE $RANGE AND x402_amount > 0
        GROUP BY customer_id ORDER BY amount DESC, customer_id LIMIT %(limit)s""",
    "usage": """SELECT app_id, (event_time AT TIME ZONE 'UTC')::date AS period_start, module, model, count(*),
        sum(usage), sum(cost) FROM usage_events
        WHERE app_id = %(agent_id)s AND event_time >= %(start)s AND event_time < %(end)s
        GROUP BY app_id, period_start, module, model ORDER BY app_id, period_start, module, model""",
}


def view_params(name: str, agent: str) -> dict[str, Any]:
    """Parameters of one view call as the dashboard API makes it (30 days, 24 h window, limit 100)."""
    month = TimeRange.last_days(DAYS, NOW)
    day_window = (NOW - timedelta(hours=24), NOW)
    base: dict[str, Any] = {"agent_id": agent}
    if name == "overview":
        return {**base, "now": NOW}
    if name == "logs":
        return {**base, "limit": 100}
    if name == "performance":
        return {**base, "prev_start": NOW - timedelta(hours=48), "start": day_window[0], "end": day_window[1]}
    if name in ("latency_histogram", "performance_hourly"):
        return {**base, "start": day_window[0], "end": day_window[1]}
    params = {**base, "start": month.start, "end": month.end}
    if name in ("customers", "tools", "revenue_by_customer"):
        params["limit"] = 100
    if name == "revenue":
        params["period"] = "day"
    if name == "usage":
        params = {"app_id": agent, "start": month.start, "end": month.end, "period": "day"}
    return params


def pg_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    if name == "overview":
        out.update(midnight=NOW.replace(hour=0), week=NOW - timedelta(days=7), month=NOW - timedelta(days=30))
    if name == "usage":
        out["agent_id"] = out.pop("app_id")
    return out
_PG_TOKENS = {
    "$RANGE": "agent_id = %(agent_id)s AND source <> 'sdk_ping' AND event_time >= %(start)s AND event_time < %(end)s",
    "$AGENT": "agent_id = %(agent_id)s AND source <> 'sdk_ping'",
    "$ERR": "(status_code >= 400 AND status_code <> 402)",
}


def _expand(template: str) -> str:
    for token, text in _PG_TOKENS.items():
        template = template.replace(token, text)
    return template


PG_VIEWS: dict[str, str] = {name: _expand(sql) for name, sql in _PG_TEMPLATES.items()}


def chdb_call(views: DashboardQueries, name: str, agents: Iterator[str]) -> Callable[[], object]:
    return lambda: views.run(name, view_params(name, next(agents)))


def pg_call(pg: Any, sql: str, name: str, agents: Iterator[str]) -> Callable[[], object]:
    def run() -> object:
        with pg.cursor() as cur:
            cur.execute(sql, pg_params(name, view_params(name, next(agents))))
            return cur.fetchall()

    return run


def _ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def timed_pair(first: Callable[[], object], second: Callable[[], object], runs: int) -> tuple[list[float], list[float]]:
    """Time both engines alternately, so that both meet the same moments of a shared machine."""
    first()
    second()  # warm-up
    a, b = [], []
    for _ in range(runs):
        a.append(_ms(first))
        b.append(_ms(second))
    return a, b


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1 M rows instead of 10 M, fewer runs")
    parser.add_argument("--rows", type=int, help="stored requests (default 10 M, 1 M with --quick)")
    parser.add_argument("--runs", type=int, help="timed runs per view (default 60, 15 with --quick)")
    args = parser.parse_args()
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    runs = args.runs or (15 if args.quick else 60)

    import psycopg

    workdir = Path(tempfile.mkdtemp(prefix="meterline-bench-chdb-"))
    try:
        client = get_client(f"chdb://{workdir}?database=bench")
        apply_migrations(client)
        gen_s = generate_chdb(client, rows)
        stored = client.query("SELECT count() FROM request_logs").result_rows[0][0]
        print(f"generated {stored:,} requests + {rows // 10:,} usage reports in chDB in {gen_s:.1f} s "
              f"({DAYS} days, {AGENTS} agents, {CUSTOMERS:,} customers, {TOOLS} tools)")
        agent_rows = dict(client.query("SELECT agent_id, count() FROM request_logs GROUP BY agent_id").result_rows)
        print(f"rows per agent: min {min(agent_rows.values()):,}, median "
              f"{int(statistics.median(agent_rows.values())):,}, max {max(agent_rows.values()):,}")
        views = DashboardQueries(client)
        rnd = random.Random(42)
        agents = sorted(agent_rows)

        with postgres_cluster() as conninfo, psycopg.connect(conninfo) as pg:
            load_s = load_postgres(pg, client, rows)
            print(f"loaded the same rows into PostgreSQL 15 with COPY + indexes in {load_s:.1f} s")
            print()
            largest = max(agent_rows, key=lambda a: agent_rows[a])
            print(f"p50/p95 over {runs} views of agents picked at random; the last two columns: the largest agent "
                  f"({largest}, {agent_rows[largest]:,} rows), median of 3")
            header = (f"{'view':<22}{'chDB p50':>10}{'chDB p95':>10}{'PG p50':>10}{'PG p95':>10}"
                      f"{'PG/chDB p95':>13}  target{'chDB big':>10}{'PG big':>10}")
            print(header)
            print("-" * len(header))
            ratios, worst = [], 0.0
            for name, pg_sql in PG_VIEWS.items():
                picks = [rnd.choice(agents) for _ in range(runs + 1)]
                ch, pgt = timed_pair(chdb_call(views, name, iter(picks)), pg_call(pg, pg_sql, name, iter(picks)), runs)
                big_ch, big_pg = timed_pair(chdb_call(views, name, iter([largest] * 4)),
                                            pg_call(pg, pg_sql, name, iter([largest] * 4)), 3)
                ratio = p95(pgt) / p95(ch)
                ratios.append(ratio)
                worst = max(worst, p95(ch))
                ok = "ok" if p95(ch) <= TARGET_MS else "MISSED"
                print(f"{name:<22}{statistics.median(ch):>8.1f}ms{p95(ch):>8.1f}ms{statistics.median(pgt):>8.1f}ms"
                      f"{p95(pgt):>8.1f}ms{ratio:>12.1f}x  {ok:<6}{statistics.median(big_ch):>8.1f}ms"
                      f"{statistics.median(big_pg):>8.1f}ms")
            print("-" * len(header))
            print(f"worst chDB p95 {worst:.1f} ms (target <= {TARGET_MS:.0f} ms); p95 ratio PostgreSQL / chDB, "
                  f"geometric mean over views: {statistics.geometric_mean(ratios):.2f} (> 1: chDB faster)")
            load = os.getloadavg()
            print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
                  "(other processes share these cores; both engines ran in the same conditions)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
