"""The seed's write path on PostgreSQL, the baseline of the e2e benchmark.

The seed's ingest service stores each entry with one INSERT into ``request_logs`` and keeps the agent's
totals with one ``UPDATE agents SET total_requests = total_requests + 1, avg_response_ms = ...`` per
entry. Two ways to drive it with the same entries as the e2e load:

* ``row``: one transaction per entry (INSERT + UPDATE, commit) — the seed as written;
* ``batch``: one transaction per 50-entry batch (the 50 rows in one COPY, the 50 UPDATEs pipelined, one
  commit).

The client is Python (psycopg, one thread and connection each): its per-statement cost bounds the
``row`` mode on a 2-core machine as much as PostgreSQL does, which is why ``batch`` sends the rows with COPY.

The table is filled first (``generate_series``, indexes built afterwards) to the stored size asked for,
since an index's insert cost grows with it: (agent_id, timestamp) for the dashboards, and a unique
request_id, which is how a relational store deduplicates. ``connections`` threads each hold a connection.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

from _load import TOOLS, entry_fragment

SCHEMA = """
DROP TABLE IF EXISTS request_logs; DROP TABLE IF EXISTS agents;
CREATE TABLE agents (id text PRIMARY KEY, total_requests bigint NOT NULL DEFAULT 0,
                     avg_response_ms double precision NOT NULL DEFAULT 0);
CREATE TABLE request_logs (
    id bigserial, agent_id text NOT NULL, request_id text NOT NULL, method text, path text, status_code int,
    response_ms double precision, customer_id text, tool_name text, "timestamp" timestamptz NOT NULL,
    request_body text, response_body text, x402_amount double precision, x402_tx_hash text);
"""
FILL = """
INSERT INTO request_logs (agent_id, request_id, method, path, status_code, response_ms, customer_id, tool_name,
                          "timestamp", request_body, response_body, x402_amount, x402_tx_hash)
SELECT 'e2e-agent-' || mod(g, %(agents)s), md5(g::text), 'POST', '/v1/' || mod(g, 10), 200, mod(g, 2500)::float,
       'cust-' || mod(g, 10000), (%(tools)s::text[])[1 + mod(g, 10)::int],
       now() - mod(g, 2592000) * interval '1 second',
       '{"q":"hello"}', '{"ok":true}', 0, ''
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g
"""
INDEXES = """
CREATE INDEX request_logs_agent_time ON request_logs (agent_id, "timestamp");
CREATE UNIQUE INDEX request_logs_request_id ON request_logs (request_id);
ANALYZE request_logs; ANALYZE agents
"""
INSERT = """
INSERT INTO request_logs (agent_id, request_id, method, path, status_code, response_ms, customer_id, tool_name,
                          "timestamp", request_body, response_body, x402_amount, x402_tx_hash)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now(), %s, %s, %s, %s)
"""
COPY = """
COPY request_logs (agent_id, request_id, method, path, status_code, response_ms, customer_id, tool_name,
                   "timestamp", request_body, response_body, x402_amount, x402_tx_hash) FROM STDIN
"""
UPDATE = """
UPDATE agents SET total_requests = total_requests + 1,
                  avg_response_ms = (avg_response_ms * total_requests + %s) / (total_requests + 1)
WHERE id = %s
"""


def prepare(conninfo: str, stored: int, agents: list[str]) -> float:
    """A fresh schema holding ``stored`` rows, indexed; returns the seconds it took."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as pg:
        pg.execute(SCHEMA)  # type: ignore[arg-type]  # a constant
        step = 1_000_000
        for start in range(0, stored, step):
            pg.execute(FILL, {"agents": len(agents), "tools": TOOLS, "start": start,  # type: ignore[arg-type]
                              "stop": min(stored, start + step) - 1})
        with pg.cursor() as cur:
            cur.executemany("INSERT INTO agents (id) VALUES (%s)", [(a,) for a in agents])
        for statement in filter(None, (s.strip() for s in INDEXES.split(";"))):
            pg.execute(statement)  # type: ignore[arg-type]
    return time.perf_counter() - started


def _rows(run: str, worker: int, agents: list[str]) -> Any:
    """Endless (insert args, update args) of unique entries with the e2e load's spread."""
    rnd = random.Random(worker)
    fragments = [entry_fragment(rnd) for _ in range(64)]
    n = 0
    while True:
        n += 1
        f = fragments[n % 64]
        agent = agents[n % len(agents)]
        yield ((agent, f"{run}-{worker}-{n}", f["method"], f["path"], f["status_code"], f["response_ms"],
                f["customer_id"], f["tool_name"], f["request_body"], f["response_body"], f.get("x402_amount", 0),
                f.get("x402_tx_hash", "")), (f["response_ms"], agent))


def drive(conninfo: str, mode: str, connections: int, seconds: float, agents: list[str]) -> float:
    """Entries/s stored (committed) by ``connections`` threads in ``mode`` ("row" or "batch") for ``seconds``."""
    import psycopg

    counts = [0] * connections
    deadline = time.perf_counter() + seconds

    def work(i: int) -> None:
        rows = _rows(f"pg{mode}{time.time_ns()}", i, agents)
        with psycopg.connect(conninfo) as pg, pg.cursor() as cur:
            while time.perf_counter() < deadline:
                if mode == "row":
                    ins, upd = next(rows)
                    cur.execute(INSERT, ins)
                    cur.execute(UPDATE, upd)
                    pg.commit()
                    counts[i] += 1
                else:
                    batch = [next(rows) for _ in range(50)]
                    now = datetime.now(UTC)
                    with cur.copy(COPY) as copy:  # the 50 rows in one round trip
                        for ins, _ in batch:
                            copy.write_row((*ins[:8], now, *ins[8:]))
                    # the agents' rows in one order in every transaction: no deadlocks between connections
                    cur.executemany(UPDATE, sorted((upd for _, upd in batch), key=lambda u: u[1]))
                    pg.commit()
                    counts[i] += 50

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)
