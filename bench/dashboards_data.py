"""Data for bench_dashboards.py: the same requests in embedded ClickHouse (chDB) and in the seed's PostgreSQL.

Rows (30 days, 50 agents with a skewed spread, 10,000 customers, 20 tools, errors, 402s and x402
payments, plus billing usage reports) are generated inside ClickHouse with ``INSERT ... SELECT ... FROM
numbers(N)`` through the migrations' materialized views and projections, as the sink's inserts are, and
copied into a private PostgreSQL cluster (Debian's ``postgresql`` package, started with initdb/pg_ctl as
the ``postgres`` user on a free port) with ``COPY``, into row-per-request tables indexed on
(agent_id, event_time) like the seed's design. Both can be kept in a directory and reused by the next
run (``--data``): generating 10 M rows takes minutes on a loaded 2-core machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from meterline.clickhouse import INSERT_SETTINGS
from meterline.local.ports import free_port

AGENTS, CUSTOMERS, TOOLS, DAYS = 50, 10_000, 20, 30
PG_BIN = Path("/usr/lib/postgresql/15/bin")
#: rows per INSERT ... SELECT (each is sorted and written as parts of the raw table and its rollups)
CHUNK = 2_000_000
ROLLUPS = ("agent_minute", "usage_minute", "agent_hour_sketch", "agent_day_sketch",
           "agent_tool_hour_sketch", "agent_tool_day_sketch", "agent_customer_day", "agent_tool_customer_day")

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


def generate_chdb(client: Any, rows: int, now: datetime, *, merge: bool = True, first: int = 0,
                  until: int | None = None) -> float:
    """Generate ``rows`` requests and rows / 10 usage reports ending at ``now``; seconds taken. ``merge``
    merges every table's parts (OPTIMIZE FINAL) as background merges eventually leave them; at 100 M rows
    that rewrites the raw table, so the caller may leave it to the background merges. ``first`` resumes a
    generation that was stopped after that many requests (row numbers from there on: a chunk stopped half-way
    may have stored some of its rows, which are then generated again, a few duplicates in a benchmark's data);
    ``until`` stops after that many requests, before the usage reports (the next call resumes)."""
    started = time.perf_counter()
    for offset in range(first, rows, CHUNK):
        if until is not None and offset >= until:
            return time.perf_counter() - started
        client.command(GENERATE_REQUESTS, parameters={
            "agents": AGENTS, "customers": CUSTOMERS, "tools": TOOLS, "days": DAYS, "now": now,
            "offset": offset, "count": min(CHUNK, rows - offset)}, settings=INSERT_SETTINGS)
        print(f"  generated {min(offset + CHUNK, rows):,} of {rows:,} requests "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    client.command(GENERATE_USAGE, parameters={"agents": AGENTS, "days": DAYS, "now": now, "count": rows // 10},
                   settings=INSERT_SETTINGS)
    for table in (("request_logs", "usage_events") if merge else ()) + ROLLUPS:
        client.command("OPTIMIZE TABLE {table:Identifier} FINAL", parameters={"table": table})
    return time.perf_counter() - started


def wait_for_mutations(client: Any) -> float:
    """Wait until the mutations a migration started (MATERIALIZE PROJECTION) are done; seconds waited."""
    started = time.perf_counter()
    while client.query("SELECT count() FROM system.mutations WHERE database = currentDatabase() "
                       "AND NOT is_done").result_rows[0][0]:
        time.sleep(0.5)
    return time.perf_counter() - started


# ----------------------------------------------------------------------------------------- postgres


@contextmanager
def postgres_cluster(keep: Path | None = None) -> Iterator[tuple[str, bool]]:
    """A private PostgreSQL cluster on a free port, in ``keep`` (reused if it holds one) or a temp dir that
    is removed afterwards; yields a conninfo string and whether the cluster is new (empty)."""
    if not (PG_BIN / "initdb").exists():
        raise SystemExit("PostgreSQL is required: apt-get install -y postgresql")
    root = keep or Path(tempfile.mkdtemp(prefix="meterline-bench-pg-"))
    root.mkdir(parents=True, exist_ok=True)
    data, port = root / "data", free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    new = not (data / "PG_VERSION").exists()
    if new:
        subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "bench",
                        "--encoding=UTF8", "--locale=C"], check=True, stdout=subprocess.DEVNULL)
    opts = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c shared_buffers=2GB "
            "-c work_mem=256MB -c maintenance_work_mem=1GB -c max_wal_size=8GB -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c jit=off")
    subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"),
                    "-w", "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"host=127.0.0.1 port={port} user=bench dbname=postgres", new
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       check=False, stdout=subprocess.DEVNULL)
        if keep is None:
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
