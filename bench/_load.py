"""The e2e benchmark's load: wrk with a generated Lua script, and the probes that run beside it.

The load is the SDK's wire format (``POST /v1/ingest``, 50-entry batches) with unique request ids and a
spread of agents (one API key each), customers, tools, status codes, latencies and body sizes. wrk
(C + LuaJIT, one thread) builds each body from 64 pre-rendered entry fragments, so the generator costs
a few percent of a core; its Lua counts the 202s, so the run knows exactly which batches were acknowledged.

Beside it, in the benchmark's own process: a prober that sends a marker batch every ``MARKER_EVERY_S``
and one poller that asks the store (the read API's SQL, or ClickHouse) which markers are queryable
(one query per tick for all of them, not one per marker), and a reader that requests every dashboard
view in turn.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ENTRIES = 50
#: (client, statement with {name:Type} parameters, parameters) -> rows, or None if the store did not answer
SqlCall = Callable[[httpx.AsyncClient, str, dict[str, str]], Awaitable[list[list[Any]] | None]]
MARKER_EVERY_S = 0.25
#: The poller's tick. Each tick is one sandboxed SQL call (parse, EXPLAIN, read), so at 20 ticks/s it took
#: 13 % of the stack's samples under load (py-spy); at 10 ticks/s freshness stays resolved to 0.1 s.
POLL_EVERY_S = 0.1
TOOLS = ["search", "chat", "summarize", "translate", "embed", "rerank", "classify", "extract", "plan", "code"]
STATUSES = [200] * 80 + [201] * 3 + [402] * 6 + [404] * 5 + [429] * 2 + [500] * 4
#: every dashboard view a page shows (with the parameters the page sends), read while ingesting
VIEWS = {
    "stats": "stats", "daily": "stats/daily?days=30", "customers": "customers?days=30",
    "tools": "tools?days=30", "logs": "logs?limit=50", "summary": "summary?days=7",
    "series": "series?days=1", "breakdown": "breakdown?by=status&days=7", "performance": "performance?window=24h",
    "revenue": "revenue?period=day&days=30", "usage": "usage", "statement": "statement",
}


def entry_fragment(rnd: random.Random) -> dict[str, object]:
    """One entry without request_id/timestamp: what an SDK middleware captures for a request."""
    status = rnd.choice(STATUSES)
    tool = rnd.choice(TOOLS)
    mcp = rnd.random() < 0.3
    body = json.dumps({"q": "x" * rnd.randint(8, 300)})
    entry: dict[str, object] = {
        "method": "tools/call" if mcp else "POST", "path": f"/v1/{tool}", "status_code": status,
        "response_ms": round(3 + rnd.random() ** 3 * 2500, 2), "customer_id": f"cust-{rnd.randint(0, 9999)}",
        "tool_name": tool, "protocol": "mcp" if mcp else "http", "source": "sdk",
        "ip_address": f"203.0.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}", "user_agent": "python-httpx/0.28",
        "content_type": "application/json", "request_body": body,
        "response_body": json.dumps({"ok": status < 400, "n": rnd.randint(0, 10**6)}),
        "headers": {"accept": "application/json", "x-request-source": "bench"},
    }
    if status >= 400 and status != 402:
        entry["error_type"] = "server_error" if status >= 500 else "client_error"
    if status == 200 and rnd.random() < 0.3:
        entry.update(x402_amount=rnd.choice([0.001, 0.01, 0.05]), x402_tx_hash=f"0x{rnd.getrandbits(128):032x}",
                     x402_token="USDC-base-mainnet")
    return entry


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def wrk_script(run: str, keys: dict[str, str], path: Path, delay_ms: float | None = None) -> Path:
    """Write the Lua script: unique ids ``<run>-w<thread>-<n>-<i>``, agents round-robin, 202s counted;
    with ``delay_ms``, every connection waits that long after an answer before its next request (a paced
    load: each connection then sends one batch per ``delay_ms`` plus the answer's latency)."""
    rnd = random.Random(13)
    fragments = []
    for _ in range(64):
        rest = json.dumps(entry_fragment(rnd), separators=(",", ":"))
        fragments.append('","' + rest[2:])  # after the timestamp's value: ","method":... }
    agents = list(keys)
    lua = [
        f"local run = {_lua_string(run)}",
        "local frags = {" + ",".join(_lua_string(f) for f in fragments) + "}",
        "local agents = {" + ",".join(_lua_string(a) for a in agents) + "}",
        "local auth = {" + ",".join(_lua_string("Bearer " + keys[a]) for a in agents) + "}",
        """
local threads = {}
tid, n, acked, other = 0, 0, 0, 0  -- globals: thread:get reads them
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args) tid = wrk.thread:get("tid") end
function request()
  n = n + 1
  local a = (n + tid) % #agents + 1
  local ts = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local base = run .. "-w" .. tid .. "-" .. n .. "-"
  local parts = {}
  for i = 1, 50 do
    parts[i] = '{"request_id":"' .. base .. i .. '","timestamp":"' .. ts .. frags[(n * 7 + i) % 64 + 1]
  end
  local body = '{"agent_id":"' .. agents[a] .. '","sdk_version":"gt8004-python/0.3","entries":[' ..
    table.concat(parts, ",") .. ']}'
  return wrk.format("POST", "/v1/ingest", {["Authorization"] = auth[a], ["Content-Type"] = "application/json"},
                    body)
end
function response(status, headers, body)
  if status == 202 then acked = acked + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local a, o = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("acked"); o = o + t:get("other") end
  io.write(string.format("ACKED %d OTHER %d\\n", a, o))
end
""",
    ]
    if delay_ms is not None:
        lua.append(f"function delay() return {max(0, round(delay_ms))} end")
    path.write_text("\n".join(lua))
    return path


@dataclass
class WrkResult:
    requests: int
    acked: int
    other: int
    p50_ms: float
    p99_ms: float
    cpu_s: float
    output: str


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


async def run_wrk(url: str, script: Path, connections: int, seconds: float) -> WrkResult:
    """Run wrk (one thread) against ``url``; its CPU time is read from the child's rusage."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "10s", "--latency", "-s", str(script),
        url, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = (await proc.communicate())[0].decode()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or "ACKED" not in out:
        raise SystemExit(f"wrk failed:\n{out}")
    acked, other = map(int, re.search(r"ACKED (\d+) OTHER (\d+)", out).groups())  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    lat = {p: _ms(re.search(rf"\s{p}%\s+([\d.]+\w+)", out).group(1)) for p in ("50", "99")}  # type: ignore[union-attr]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkResult(requests, acked, other, lat["50"], lat["99"], cpu, out)


# ------------------------------------------------------------------------------------------- probes


@dataclass
class Probes:
    """Markers (freshness) and dashboard reads, run while the load runs; ``stop`` ends them."""

    gateway: str
    operator: str
    agent: str
    key: str
    run: str
    sql: SqlCall  # what is queryable: the read API's SQL, or ClickHouse itself
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    sent: dict[str, tuple[float, float]] = field(default_factory=dict)  # marker id -> (monotonic send, event time)
    acked_entries: int = 0
    freshness: list[float] = field(default_factory=list)
    reads: dict[str, list[float]] = field(default_factory=dict)
    read_errors: int = 0

    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def markers(self, client: httpx.AsyncClient) -> None:
        rnd = random.Random(7)
        fragments = [entry_fragment(rnd) for _ in range(ENTRIES)]
        n = 0
        while not self.stop.is_set():
            n += 1
            now = datetime.now(UTC).replace(microsecond=0)
            ts = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            ids = [f"{self.run}-m-{n}-{i}" for i in range(ENTRIES)]
            body = {"agent_id": self.agent, "sdk_version": "gt8004-python/0.3",
                    "entries": [{"request_id": i, "timestamp": ts, **f} for i, f in zip(ids, fragments, strict=True)]}
            started = time.monotonic()
            reply = await client.post(f"{self.gateway}/v1/ingest", json=body, headers=self._headers(self.key))
            if reply.status_code == 202:
                self.acked_entries += ENTRIES
                self.sent[ids[-1]] = (started, now.timestamp())
            await asyncio.sleep(max(0.0, MARKER_EVERY_S - (time.monotonic() - started)))

    async def poll(self, client: httpx.AsyncClient) -> None:
        """Until stopped and every marker is found (or 60 s after the stop): which markers are queryable."""
        waiting: dict[str, tuple[float, float]] = {}
        stopped_at: float | None = None
        while True:
            waiting.update({k: v for k, v in self.sent.items() if k not in waiting})
            self.sent.clear()
            if self.stop.is_set():
                stopped_at = stopped_at or time.monotonic()
                if not waiting or time.monotonic() - stopped_at > 60:
                    return
            if waiting:
                # Only the seconds the waiting markers carry: a scan of minutes of the agent's rows per tick
                # would make the instrument a load of its own while the backlog grows.
                sql = ("SELECT request_id FROM request_logs WHERE agent_id = {a:String} AND "
                       "event_time >= toDateTime({since:UInt32}) AND has(splitByChar(',', {ids:String}), request_id)")
                rows = await self.sql(client, sql, {"a": self.agent, "ids": ",".join(waiting),
                                                    "since": str(int(min(ts for _, ts in waiting.values())))})
                now = time.monotonic()
                for (found,) in rows or []:
                    self.freshness.append(now - waiting.pop(found)[0])
            await asyncio.sleep(POLL_EVERY_S)

    async def read(self, client: httpx.AsyncClient, agents: list[str]) -> None:
        rnd = random.Random(11)
        while not self.stop.is_set():
            for name, path in VIEWS.items():
                if self.stop.is_set():
                    return
                started = time.monotonic()
                reply = await client.get(f"{self.gateway}/v1/agents/{rnd.choice(agents)}/{path}",
                                         headers=self._headers(self.operator))
                if reply.status_code == 200:
                    self.reads.setdefault(name, []).append((time.monotonic() - started) * 1000)
                else:
                    self.read_errors += 1
