"""End to end: SDK-format batches over HTTP until every row is queryable, in the stack as users run it.

Two deployments, each started here with its own home and free ports:

* ``up``: ``meterline up`` as a subprocess, as users run it: the stack process (worker + bridge +
  dashboards on the embedded chDB) and its ingest front (``gateway/front.py``), a real Apache Kafka and
  Mosquitto; ``up1``, the baseline of the same run: ``METERLINE_FRONT=0``, everything in one process;
* ``split``: the production split — ``python -m gateway`` (ingest + read API) and ``python -m stream_workers
  worker`` as separate processes on one Kafka; ClickHouse is the embedded engine behind the HTTP
  adapter of ``tests/chdb_http.py`` (a server stand-in: this machine has no ClickHouse server), which
  the worker writes and the gateway's read API reads. The MQTT bridge is not started: HTTP load never
  reaches it (``bench_bridge.py`` measures it).

Load: wrk, 16 connections, unique 50-entry batches for 10 agents (``_load.py``). Measured per
deployment: entries/s from the first send until the last acknowledged row is queryable, ingest latency
p50/p99 (wrk), freshness p50/p95/p99 (marker batches polled through ``POST /v1/sql``, or ClickHouse's
HTTP interface in the split), lost and doubled (distinct ids vs rows in ClickHouse against the 202s
counted by wrk), the p95 of every dashboard view read while ingesting, and the CPU the load generator
and the processes took. Then the same entries through the seed's PostgreSQL write path
(``_pg_write.py``, on the private cluster of ``dashboards_data.py``) at 1 M and 10 M stored rows (100 k
and 1 M with ``--quick``), as ratios to ``up``'s rate from this run.

    python bench/bench_e2e.py [--quick] [--seconds 20] [--connections 16] [--only up|split|pg] [--lock FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from _common import cpu_seconds, holding, load_average, percentile, target, thread_cpu  # noqa: E402
from _load import ENTRIES, Probes, run_wrk, wrk_script  # noqa: E402

from gateway.keys.admin import create_key  # noqa: E402
from meterline.kafka_admin import create_topics  # noqa: E402
from meterline.local.ports import free_port  # noqa: E402
from schemas.topics import Topics  # noqa: E402

AGENTS = [f"e2e-agent-{i}" for i in range(10)]
OPERATOR = "bench-e2e-operator"  # noqa: S105 - the private stacks' operator token
TARGET_RATE, TARGET_P99_MS, TARGET_FRESH_P95_S, TARGET_READ_P95_MS = 45_000, 50.0, 2.0, 150.0


@dataclass
class Deployment:
    """A running stack: where to send, its keys, the pids whose CPU counts, and where to count rows."""

    name: str
    gateway: str
    keys: dict[str, str]
    pids: dict[str, int]
    clickhouse: str | None = None  # ClickHouse's HTTP interface; None: the gateway's POST /v1/sql
    last_error: str = ""

    async def sql(self, client: httpx.AsyncClient, query: str, params: dict[str, str]) -> list[list[Any]] | None:
        if self.clickhouse is None:
            reply = await client.post(f"{self.gateway}/v1/sql", json={"query": query, "params": params},
                                      headers={"Authorization": f"Bearer {OPERATOR}"})
            if reply.status_code != 200:
                self.last_error = f"POST /v1/sql: {reply.status_code} {reply.text[:300]}"
                return None
            return reply.json()["rows"]
        reply = await client.post(self.clickhouse, content=query + " FORMAT JSONCompact",
                                  params={"database": "meterline", **{f"param_{k}": v for k, v in params.items()}})
        return reply.json()["data"] if reply.status_code == 200 else None


#: seconds without a new row of the run after which the rows still missing count as lost
STALL_S = 60.0


@dataclass
class Result:
    rate: float
    p50_ms: float
    p99_ms: float
    fresh: list[float]
    lost: int
    doubled: int
    reads: dict[str, list[float]]
    read_errors: int
    wrk_cpu: float
    probe_cpu: float
    cpu: dict[str, float]
    seconds: float
    drain_s: float
    acked: int
    other: int


# ----------------------------------------------------------------------------------------- stacks


async def make_keys(bootstrap: str, topics: Topics, gateway: str) -> dict[str, str]:
    """An API key per agent, once the gateway accepts each of them (its registry follows the keys topic)."""
    keys = {a: (await create_key(bootstrap, topics.keys, a, name="bench_e2e"))[0] for a in AGENTS}
    async with httpx.AsyncClient(timeout=10) as client:
        for agent, key in keys.items():
            deadline = time.monotonic() + 60
            while True:
                reply = await client.post(f"{gateway}/v1/ingest", headers={"Authorization": f"Bearer {key}"},
                                          json={"agent_id": agent, "entries": [{
                                              "request_id": f"warm-{uuid.uuid4().hex}", "method": "GET",
                                              "path": "/", "status_code": 200, "response_ms": 1.0}]})
                if reply.status_code == 202:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"gateway never accepted the key of {agent}: {reply.status_code} {reply.text}")
                await asyncio.sleep(0.2)
    return keys


def start_up(stack: ExitStack, work: Path, *, front: bool = True) -> Deployment:
    """``meterline up`` with defaults, except its home, ports and the operator token."""
    from tests.e2e.stackproc import StackHome

    home = StackHome(METERLINE_GATEWAY_RATE_LIMIT=os.environ.get("METERLINE_GATEWAY_RATE_LIMIT", "200"),
                     METERLINE_FRONT="1" if front else "0")
    home.env.pop("METERLINE_SINK_INTERVAL_S", None)  # the stack's default, as users run it
    home.env["METERLINE_OPERATOR_TOKEN"] = OPERATOR
    # the benchmark's own count of its rows is ad-hoc SQL over the whole table: a long run's ten million
    # rows need more than the sandbox's defaults (one thread, 30 s, 512 MiB), which an operator may raise
    home.env.update(METERLINE_SQL_MAX_THREADS="2", METERLINE_SQL_MAX_EXECUTION_TIME="300",
                    METERLINE_SQL_BUSY_TIMEOUT="60", METERLINE_SQL_MAX_MEMORY_USAGE=str(4 * 1024**3))
    stack.callback(home.remove)
    proc = home.launch()
    stack.callback(proc.stop)
    bootstrap = f"127.0.0.1:{home.ports['kafka']}"
    keys = asyncio.run(make_keys(bootstrap, Topics(prefix="meterline."), home.gateway))
    front_pid = proc.front_pid()  # none with METERLINE_FRONT=0
    pids = {"meterline up": proc.proc.pid, **({"front": front_pid} if front_pid else {}), **home.child_pids()}
    return Deployment("up" if front else "up1", home.gateway, keys, pids)


def start_up_one_process(stack: ExitStack, work: Path) -> Deployment:
    return start_up(stack, work, front=False)


def _terminate(proc: object) -> None:
    import subprocess

    assert isinstance(proc, subprocess.Popen)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def start_split(stack: ExitStack, work: Path) -> Deployment:
    """Kafka, the chDB HTTP stand-in, one worker and one gateway, each its own process."""
    import subprocess

    from meterline.clickhouse import get_client
    from meterline.local.kafka import LocalKafka
    from meterline.migrations import apply_migrations
    from tests.chdb_http import ChdbHttpProcess

    kafka = LocalKafka(work / "kafka", port=free_port(), controller_port=free_port()).start()
    stack.callback(kafka.stop)
    bootstrap = kafka.bootstrap_servers
    topics = Topics(prefix="bench.", partitions=6)
    asyncio.run(create_topics(bootstrap, topics))
    ch = ChdbHttpProcess(str(work / "chdb"), free_port(), str(work / "chdb_http.log")).start()
    stack.callback(ch.stop)
    dsn = ch.dsn("meterline")
    apply_migrations(get_client(dsn))
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, METERLINE_TOPIC_PREFIX=topics.prefix,
               CLICKHOUSE_URL=dsn, METERLINE_OPERATOR_TOKEN=OPERATOR, PYTHONPATH=str(ROOT),
               METERLINE_DEDUPE_DIR=str(work / "dedupe"))
    for name in ("MQTT_URL", "METERLINE_HOME"):
        env.pop(name, None)
    port = free_port()
    procs = {
        "worker": subprocess.Popen([sys.executable, "-m", "stream_workers", "worker"], cwd=work,
                                   env=dict(env, METERLINE_WORKER_WEB_PORT=str(free_port())),
                                   stdout=(work / "worker.log").open("ab"), stderr=subprocess.STDOUT),
        "gateway": subprocess.Popen([sys.executable, "-m", "gateway"], cwd=work,
                                    env=dict(env, METERLINE_GATEWAY_PORT=str(port),
                                             METERLINE_GATEWAY_CREATE_TOPICS="false"),
                                    stdout=(work / "gateway.log").open("ab"), stderr=subprocess.STDOUT),
    }
    for proc in procs.values():
        stack.callback(_terminate, proc)
    gateway = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{gateway}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs.values()):
            raise SystemExit(f"the split stack did not start; see {work}/gateway.log and worker.log")
        time.sleep(0.3)
    keys = asyncio.run(make_keys(bootstrap, topics, gateway))
    pids = {name: p.pid for name, p in procs.items()}
    pids["chdb_http"] = ch.proc.pid if ch.proc else 0
    pids["kafka"] = int((work / "kafka" / "kafka.pid").read_text().split()[0])
    return Deployment("split", gateway, keys, pids, f"http://127.0.0.1:{ch.port}/")


# ------------------------------------------------------------------------------------------- run


async def stored(client: httpx.AsyncClient, dep: Deployment, run: str) -> tuple[int, int]:
    """(rows, distinct request ids) of this run in ClickHouse. The ids are counted by their 64-bit hashes (a
    third of the memory of the strings at 10 M ids); a collision (a few chances in a million at 10 M ids)
    could only report an entry lost or doubled that was not, never hide one that was."""
    rows = await dep.sql(client, "SELECT count(), uniqExact(cityHash64(request_id)) FROM request_logs "
                         "WHERE startsWith(request_id, {r:String})", {"r": run + "-"})
    if rows is None:
        raise SystemExit(f"the store did not answer the count: {dep.last_error}")
    return int(rows[0][0]), int(rows[0][1])


async def measure(dep: Deployment, connections: int, seconds: float, work: Path,
                  profile: Path | None = None, reads: bool = True, rate: float | None = None) -> Result:
    import resource

    run = f"r{uuid.uuid4().hex[:8]}"
    delay = connections * ENTRIES * 1000 / rate if rate else None  # ms between a connection's batches
    script = wrk_script(run, dep.keys, work / f"{dep.name}.lua", delay)
    warm = wrk_script(f"warm{uuid.uuid4().hex[:6]}", dep.keys, work / f"{dep.name}-warm.lua")
    await run_wrk(f"{dep.gateway}/v1/ingest", warm, connections, 3)
    probes = Probes(dep.gateway, OPERATOR, AGENTS[0], dep.keys[AGENTS[0]], run, dep.sql)
    cpu_before = {name: cpu_seconds(pid) for name, pid in dep.pids.items()}
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=8)) as client:
        tasks = [asyncio.create_task(probes.markers(client)), asyncio.create_task(probes.poll(client)),
                 asyncio.create_task(probes.read(client, AGENTS) if reads else probes.stop.wait())]
        spy = None
        main_pid = next(iter(dep.pids.values()))
        threads_before = thread_cpu(main_pid)
        if profile is not None:  # py-spy samples the stack's main process while the load runs
            profile.mkdir(parents=True, exist_ok=True)
            pid = next(iter(dep.pids.values()))
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking", "--threads", "--rate", "100",
                "--format", "raw", "--duration", f"{seconds:.0f}", "-o", str(profile / f"{dep.name}.txt"),
                "--pid", str(pid), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        started = time.monotonic()
        wrk = await run_wrk(f"{dep.gateway}/v1/ingest", script, connections, seconds)
        if spy is not None:
            await spy.wait()
        threads = {k: v - threads_before.get(k, 0.0) for k, v in thread_cpu(main_pid).items()}
        ended = time.monotonic()
        probes.stop.set()
        await asyncio.gather(tasks[0], tasks[2])
        expected = wrk.acked * ENTRIES + probes.acked_entries
        rows = distinct = 0
        progressed = time.monotonic()  # an entry not stored 60 s after the store last stored one is lost;
        while time.monotonic() - progressed < STALL_S:  # a long run's backlog takes minutes to drain
            before, asked = distinct, time.monotonic()
            rows, distinct = await stored(client, dep, run)
            if distinct >= expected:
                break
            if distinct > before:
                progressed = time.monotonic()
            # the count reads the whole table: over millions of rows it takes seconds of the stack's CPU,
            # so it waits as long as it took (the drain it measures keeps at least half the machine)
            await asyncio.sleep(max(0.1, time.monotonic() - asked))
        queryable = time.monotonic()
        await tasks[1]
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in dep.pids.items()}
    probe_cpu = (self_after.ru_utime - self_before.ru_utime) + (self_after.ru_stime - self_before.ru_stime)
    top = sorted(threads.items(), key=lambda kv: -kv[1])[:8]
    print(f"   {next(iter(dep.pids))} process, CPU seconds by thread during the load: "
          + ", ".join(f"{k} {v:.1f}" for k, v in top if v >= 0.05))
    return Result(rate=distinct / (queryable - started), p50_ms=wrk.p50_ms, p99_ms=wrk.p99_ms, fresh=probes.freshness,
                  lost=max(0, expected - distinct), doubled=rows - distinct, reads=probes.reads,
                  read_errors=probes.read_errors, wrk_cpu=wrk.cpu_s, probe_cpu=probe_cpu, cpu=cpu,
                  seconds=queryable - started, drain_s=queryable - ended, acked=wrk.acked, other=wrk.other)


def report(name: str, r: Result, note: str, paced: bool = False) -> None:
    fresh = {q: percentile(r.fresh, q) for q in (0.5, 0.95, 0.99)}
    print(f"\n== {name}: {r.rate:,.0f} entries/s first send -> last row queryable "
          f"({r.seconds:.1f} s, last row queryable {r.drain_s:.2f} s after the load ended)")
    print(f"   ingest p50 {r.p50_ms:.1f} ms  p99 {r.p99_ms:.1f} ms; {r.acked:,} batches acknowledged, "
          f"{r.other:,} other answers")
    print(f"   freshness (send -> queryable, {len(r.fresh)} markers): p50 {fresh[0.5]:.2f} s  p95 {fresh[0.95]:.2f} s  "
          f"p99 {fresh[0.99]:.2f} s")
    print(f"   lost {r.lost}  doubled {r.doubled}")
    worst = max((percentile(v, 0.95), k) for k, v in r.reads.items()) if r.reads else (float("nan"), "-")
    print("   dashboard reads while ingesting, p95 ms: " + ", ".join(
        f"{k} {percentile(v, 0.95):.0f} (n={len(v)})" for k, v in sorted(r.reads.items()))
          + f"; {r.read_errors} errors")
    busy = ", ".join(f"{k} {v:.1f}" for k, v in r.cpu.items())
    stored = r.rate * r.seconds
    if stored:  # CPU per entry: a figure a busy machine changes much less than entries/s
        print("   CPU per stored entry: " + ", ".join(f"{k} {v / stored * 1e6:.0f} µs" for k, v in r.cpu.items()))
        if not paced:
            print("   " + cpu_budget(sum(r.cpu.values()) / stored * 1e6, (r.wrk_cpu + r.probe_cpu) / stored * 1e6))
    print(f"   CPU seconds over the run: {busy}; load generator (wrk) {r.wrk_cpu:.1f} "
          f"({r.wrk_cpu / r.seconds * 100:.0f}% of a core); probes and reader (this process) {r.probe_cpu:.1f}")
    if name == "meterline up" and paced:  # below the machine's capacity: do reads and freshness hold there?
        target("e2e up paced freshness p95", f"p95 {fresh[0.95]:.2f} s at {r.rate:,.0f} entries/s",
               f"<= {TARGET_FRESH_P95_S:.0f} s", fresh[0.95] <= TARGET_FRESH_P95_S, note)
        target("e2e up paced reads p95", f"worst p95 {worst[0]:.0f} ms ({worst[1]}) at {r.rate:,.0f} entries/s",
               f"<= {TARGET_READ_P95_MS:.0f} ms", worst[0] <= TARGET_READ_P95_MS and not r.read_errors, note)
    elif name == "meterline up":
        target("e2e up entries/s", f"{r.rate / 1000:.1f}k entries/s", f">= {TARGET_RATE // 1000}k entries/s",
               r.rate >= TARGET_RATE, note)
        target("e2e up ingest p99", f"p99 {r.p99_ms:.1f} ms", f"<= {TARGET_P99_MS:.0f} ms", r.p99_ms <= TARGET_P99_MS,
               note)
        target("e2e up freshness p95", f"p95 {fresh[0.95]:.2f} s", f"<= {TARGET_FRESH_P95_S:.0f} s",
               fresh[0.95] <= TARGET_FRESH_P95_S, note)
        target("e2e up reads p95 while ingesting", f"worst p95 {worst[0]:.0f} ms ({worst[1]})",
               f"<= {TARGET_READ_P95_MS:.0f} ms", worst[0] <= TARGET_READ_P95_MS and not r.read_errors, note)
    target(f"e2e {name} lost/doubled", f"{r.lost} lost, {r.doubled} doubled", "0 / 0",
           r.lost == 0 and r.doubled == 0, note)


def cpu_budget(stack_us: float, load_us: float, cores: int | None = None) -> str:
    """What the CPU an entry costs allows on this machine's cores: at full load the cores, not a lock or a
    queue, are the ceiling, so ``cores`` CPU-seconds a second over the µs per entry bound the rate."""
    cores = cores or os.cpu_count() or 1
    return (f"CPU budget: the stack's processes {stack_us:.0f} µs per stored entry (+ {load_us:.0f} µs for the "
            f"load generator and probes): {cores} cores carry at most {cores * 1e6 / stack_us:,.0f} entries/s at "
            f"that cost ({cores * 1e6 / (stack_us + load_us):,.0f} with this benchmark's own load); "
            f"{TARGET_RATE // 1000}k entries/s needs <= {cores * 1e6 / TARGET_RATE:.0f} µs in all")


def _client_cpu(run: Callable[[], float]) -> tuple[float, float]:
    """``run()``'s result and the CPU seconds this process (the PostgreSQL client) spent in it."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF)
    result = run()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return result, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def postgres(sizes: list[int], seconds: float, connections: int, up_rate: float | None, lock: Path | None,
             note: str) -> None:
    import _pg_write
    from dashboards_data import postgres_cluster  # bench_dashboards' private cluster (fsync off)

    with postgres_cluster() as (conninfo, _):
        for size in sizes:
            with holding(lock, exclusive=False):
                prep = _pg_write.prepare(conninfo, size, AGENTS)
            with holding(lock, exclusive=True):
                row, row_cpu = _client_cpu(lambda: _pg_write.drive(conninfo, "row", connections, seconds, AGENTS))
                batch, batch_cpu = _client_cpu(
                    lambda: _pg_write.drive(conninfo, "batch", connections, seconds, AGENTS))
                load = load_average()
            ratio: Callable[[float], str] = (lambda v: f"; meterline up / this = {up_rate / v:.1f}x") if up_rate \
                else (lambda v: "")
            print(f"PostgreSQL at {size:,} stored rows (filled + indexed in {prep:.0f} s), {connections} connections:")
            print(f"   per entry (INSERT + UPDATE, commit)      {row:>9,.0f} entries/s{ratio(row)}")
            print(f"   per 50-entry batch (COPY + UPDATEs, 1 tx) {batch:>9,.0f} entries/s{ratio(batch)}")
            print(f"   ({load}; the Python client used {row_cpu / seconds * 100:.0f} % / "
                  f"{batch_cpu / seconds * 100:.0f} % of a core in the two runs)")
    print(f"   (PostgreSQL 15 with fsync=off and synchronous_commit=off: a generous baseline{note and '; ' + note})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="8 s loads; PostgreSQL at 100 k and 1 M rows")
    parser.add_argument("--seconds", type=float, help="load duration (default 20, 8 with --quick)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", choices=["up", "up1", "split", "pg"], action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--pg-rows", help="stored rows of the PostgreSQL runs, comma-separated (default 1M,10M; "
                        "100k,1M with --quick)")
    parser.add_argument("--pg-seconds", type=float, help="seconds per PostgreSQL run (default 10, 5 with --quick)")
    parser.add_argument("--lock", type=Path, help="hold FILE (flock) shared while starting stacks and filling "
                        "PostgreSQL, exclusively only while measuring (instead of wrapping the run in flock -x)")
    parser.add_argument("--rate", type=float, help="pace the load to about this many entries/s (wrk's delay "
                        "between a connection's batches) instead of as fast as the stack answers: freshness and "
                        "reads below the machine's capacity; the target lines of the full load are not printed")
    parser.add_argument("--no-reads", action="store_true", help="no dashboard reader beside the load (to compare "
                        "the ingest path's CPU alone)")
    parser.add_argument("--profile", type=Path, help="record the stack's main process with py-spy into this "
                        "directory (<deployment>.txt, collapsed stacks; see bench/pyspy_top.py)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: .ci/setup --bench")
    seconds = args.seconds or (8.0 if args.quick else 20.0)
    parts = args.only or ["up", "up1", "split", "pg"]
    note = "; ".join(filter(None, [f"quick: {seconds:.0f} s load" if args.quick else "",
                                   f"paced at {args.rate:,.0f} entries/s" if args.rate else ""]))
    print(f"e2e: wrk, {args.connections} connections, unique {ENTRIES}-entry batches, {len(AGENTS)} agents, "
          f"{seconds:.0f} s per deployment; {load_average()}")
    up_rate = None
    for part, start, title in (("up", start_up, "meterline up"),
                               ("up1", start_up_one_process, "meterline up, one process (METERLINE_FRONT=0)"),
                               ("split", start_split, "split")):
        if part not in parts:
            continue
        work = Path(tempfile.mkdtemp(prefix=f"bench-e2e-{part}-"))
        with ExitStack() as stack:
            stack.callback(shutil.rmtree, work, True)
            with holding(args.lock, exclusive=False):
                dep = start(stack, work)
            with holding(args.lock, exclusive=True):
                print(f"   measuring; {load_average()}")
                result = asyncio.run(measure(dep, args.connections, seconds, work, args.profile,
                                             not args.no_reads, args.rate))
            report(title, result, note, paced=bool(args.rate))
            if part == "up":
                up_rate = result.rate
            if part == "up1" and up_rate:
                print(f"   meterline up with its ingest front: {up_rate / result.rate:.2f}x the entries/s "
                      "of one process, measured in this run")
        print(f"   {load_average()}")
    if "pg" in parts:
        sizes = [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000]
        if args.pg_rows:
            sizes = [int(float(v.lower().replace("k", "e3").replace("m", "e6"))) for v in args.pg_rows.split(",")]
        print()
        postgres(sizes, args.pg_seconds or (5.0 if args.quick else 10.0), 8, up_rate, args.lock,
                 "" if sizes == [1_000_000, 10_000_000] else
                 f"{' and '.join(f'{n:,}' for n in sizes)} stored rows, not 1 M and 10 M")
    print(f"\n{load_average()}")


if __name__ == "__main__":
    main()
