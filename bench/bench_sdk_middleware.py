"""Overhead of GT8004Middleware and of GT8004Logger.log, measured in one run against a baseline.

1. Real servers: the same FastAPI app served by uvicorn twice (separate processes), once plain and
   once with the middleware logging to a local sink process; a load process (raw keep-alive
   HTTP/1.1) sends the same requests to both, alternating every 250 requests. Each run starts
   several fresh server pairs (one pair alone is biased by its placement: ``--control`` runs the
   A/A check) and prints pooled and per-pair p50/p99. Added latency = with - without. The sink
   is a lean raw asyncio server (``--sink test``: the integration tests' parsing uvicorn sink);
   at the end it checks that every request's entry arrived.
2. In-process ASGI: the app called directly with and without the middleware (no network noise),
   the transport sending for real to a lean sink.
3. ``log()``: cost per call of ``GT8004Logger.log_nowait`` (encode + queue) with a live worker.

``--capture-only`` separates the middleware's own work from the transport's: entries are built but
never encoded, queued or sent. ``--batch-size`` changes how often the transport sends.

    python bench/bench_sdk_middleware.py [--quick] [--control] [--capture-only] [--batch-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCK = 250
BODY = b'{"message":"hello, what is the weather like in Seoul today?"}'


def build_app(with_middleware: bool, sink_url: str | None) -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    if with_middleware:
        from gt8004 import GT8004Logger
        from gt8004.middleware.fastapi import GT8004Middleware

        logger = GT8004Logger("bench-agent", "bench-key", sink_url or "http://127.0.0.1:9/v1/ingest",
                              batch_size=int(os.environ.get("BENCH_BATCH_SIZE", "50")),
                              max_queue_entries=1_000_000)
        logger.transport.start_auto_flush()
        if os.environ.get("BENCH_CAPTURE_ONLY"):  # diagnosis: entries built, never encoded or queued
            logger.log_fields = lambda fields, clamped=False: True  # type: ignore[method-assign]
        app.add_middleware(GT8004Middleware, logger=logger)

    @app.post("/chat")
    async def chat(message: dict[str, Any]) -> dict[str, Any]:
        return {"response": "done", "tokens": 12}

    return app


def serve(kind: str, port: int, sink_url: str) -> None:
    import uvicorn

    uvicorn.run(build_app(kind == "gt8004", sink_url), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)


def serve_sink(port: int, kind: str) -> None:
    """The ingest endpoint the instrumented server sends to.

    ``lean`` (default): a raw asyncio HTTP/1.1 server that keeps the request bodies and answers
    202 at once; entries are decoded only when the bench asks (``GET /count``), after the timed
    rounds. In production the ingest gateway runs on other machines; on this 2-core box a sink
    that parses every batch while the instrumented server is being timed would bill its CPU to
    the middleware. ``test``: the integration tests' uvicorn sink (parses every batch), kept for
    comparison.
    """
    if kind == "test":
        import uvicorn

        from tests.integration.sdk_gt8004._sink import Sink

        uvicorn.run(Sink().app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                    interface="asgi3")
        return
    import gzip

    import orjson

    bodies: list[tuple[bool, bytes]] = []

    def count() -> int:
        n = 0
        for gzipped, raw in bodies:
            n += len(orjson.loads(gzip.decompress(raw) if gzipped else raw)["entries"])
        return n

    class Ingest(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport, self.buf = transport, b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while (end := self.buf.find(b"\r\n\r\n")) >= 0:
                head = self.buf[:end].lower()
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length:" in head else 0
                if len(self.buf) < end + 4 + length:
                    return
                body, self.buf = self.buf[end + 4:end + 4 + length], self.buf[end + 4 + length:]
                if head.startswith(b"get /count"):
                    reply = str(count()).encode()
                else:
                    bodies.append((b"content-encoding: gzip" in head, body))
                    reply = b'{"status":"accepted","entries":0,"rejected":[]}'
                self.transport.write(b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
                                     b"content-length: %d\r\n\r\n%s" % (len(reply), reply))

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Ingest, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


def _sink_count(port: int) -> int:
    """Entries the lean sink has received so far."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"GET /count HTTP/1.1\r\nHost: sink\r\nContent-Length: 0\r\n\r\n")
        buf = b""
        while chunk := sock.recv(65536):
            buf += chunk
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep and len(rest) >= int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]):
                return int(rest)
    raise SystemExit("the sink did not answer /count")


def load(ports: list[int], n: int) -> None:
    """Keep-alive raw HTTP/1.1 client alternating between the servers every BLOCK requests, so both
    see the same machine conditions (not request by request: the middleware's work after the last
    body chunk would then overlap the other server's request on a 2-core machine); prints one line
    of latencies (ns) per server."""
    request = (f"POST /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(BODY)}\r\nUser-Agent: bench\r\n\r\n").encode() + BODY
    socks = []
    for port in ports:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(sock)
    out: list[list[int]] = [[] for _ in ports]
    for i in range(n * len(ports)):
        k = (i // BLOCK) % len(ports)
        sock = socks[k]
        started = time.perf_counter_ns()
        sock.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(65536)
        out[k].append(time.perf_counter_ns() - started)
    for sock in socks:
        sock.close()
    sys.stdout.write("\n".join(" ".join(map(str, row)) for row in out) + "\n")


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT)


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_load(ports: list[int], n: int) -> list[list[float]]:
    out = subprocess.run([sys.executable, __file__, "--load", ",".join(map(str, ports)), str(n)],
                         capture_output=True, check=True, cwd=ROOT).stdout.decode().splitlines()
    return [[int(x) / 1000.0 for x in line.split()] for line in out]  # µs


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(10)


def real_servers(runs: int, rounds: int, per_round: int, sink_kind: str, control: bool) -> None:
    """``runs`` fresh pairs of server processes; each pair gets ``rounds`` x ``per_round`` requests.

    Fresh pairs because one pair alone is biased: an A/A check (``--control``: both servers
    plain) showed single-pair p50 differences of -15..+20 µs from process placement alone
    (which core, next to which neighbour). The median over pairs cancels most of that.
    """
    sink_port = _free_port()
    sink = [_spawn("--sink", str(sink_port), sink_kind)]
    _wait_port(sink_port)
    sink_url = f"http://127.0.0.1:{sink_port}/v1/ingest"
    second = "plain" if control else "gt8004"
    plain: list[float] = []
    sdk: list[float] = []
    per_run: list[tuple[float, float]] = []  # added (p50, p99) of each pair
    sent = delivered = 0
    try:
        for _ in range(runs):
            plain_port, sdk_port = _free_port(), _free_port()
            procs = [_spawn("--serve", "plain", str(plain_port), sink_url),
                     _spawn("--serve", second, str(sdk_port), sink_url)]
            try:
                _wait_port(plain_port)
                _wait_port(sdk_port)
                _run_load([plain_port, sdk_port], 2 * BLOCK)  # warm up both
                run_a: list[float] = []
                run_b: list[float] = []
                for _ in range(rounds):
                    a, b = _run_load([plain_port, sdk_port], per_round)
                    run_a += a
                    run_b += b
            finally:
                _stop(procs)  # the SDK server flushes what is queued at exit
            sent += 2 * BLOCK + rounds * per_round
            plain += run_a
            sdk += run_b
            per_run.append((statistics.median(run_b) - statistics.median(run_a), pct(run_b, 0.99) - pct(run_a, 0.99)))
        if sink_kind == "lean" and not control and not os.environ.get("BENCH_CAPTURE_ONLY"):
            delivered = _sink_count(sink_port)
    finally:
        _stop(sink)
    p50a, p50b = statistics.median(plain), statistics.median(sdk)
    p99a, p99b = pct(plain, 0.99), pct(sdk, 0.99)
    label = "second plain server (A/A control)" if control else "with GT8004Middleware   "
    print(f"[uvicorn, {runs} server pairs x {rounds * per_round} requests each, keep-alive, alternating every "
          f"{BLOCK} requests, {sink_kind} sink]")
    print(f"  baseline (no middleware): p50 {p50a:8.1f} µs   p99 {p99a:8.1f} µs")
    print(f"  {label}: p50 {p50b:8.1f} µs   p99 {p99b:8.1f} µs")
    print(f"  added latency, pooled   : p50 {p50b - p50a:+8.1f} µs   p99 {p99b - p99a:+8.1f} µs"
          f"   (targets <= 50 / <= 200 µs)")
    d50 = [x for x, _ in per_run]
    d99 = [y for _, y in per_run]
    for name, values in (("p50", d50), ("p99", d99)):
        print(f"  added {name}, per pair     : {' '.join(f'{v:+.1f}' for v in values)}"
              f"   (median {statistics.median(values):+.1f} µs)")
    print(f"  ratio to baseline       : p50 x{p50b / p50a:.3f}   p99 x{p99b / p99a:.3f}")
    if delivered:
        print(f"  entries delivered to the sink: {delivered} of {sent} requests"
              + ("" if delivered == sent else "   <-- MISMATCH"))


async def in_process(n: int) -> None:
    from gt8004 import GT8004Logger
    from gt8004.middleware.fastapi import GT8004Middleware

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"response":"done"}'})

    sink_port = _free_port()  # the real transport (wire client, worker thread) to a lean sink
    sink = [_spawn("--sink", str(sink_port), "lean")]
    _wait_port(sink_port)
    logger = GT8004Logger("a", "k", f"http://127.0.0.1:{sink_port}/v1/ingest", max_queue_entries=10 * n,
                          max_queue_bytes=10 * n * 1024)
    wrapped = GT8004Middleware(app, logger=logger)
    scope = {"type": "http", "method": "POST", "path": "/chat", "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"agent"), (b"content-type", b"application/json"), (b"user-agent", b"bench"),
                         (b"content-length", str(len(BODY)).encode())]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def timed(target: Any) -> float:
        best = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(n):
                await target(dict(scope), receive, send)
            best.append((time.perf_counter() - started) / n * 1e6)
        return min(best)

    base = await timed(app)
    with_mw = await timed(wrapped)
    print(f"[in-process ASGI call, best of 5 x {n}]")
    print(f"  baseline app: {base:6.2f} µs/request   with middleware: {with_mw:6.2f} µs/request"
          f"   added {with_mw - base:+6.2f} µs   (x{with_mw / base:.1f})")

    from gt8004 import RequestLogEntry
    from gt8004._entry import encode_entry

    entry = RequestLogEntry(request_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", method="POST", path="/chat",
                            status_code=200, response_ms=12.5, customer_id="customer-123",
                            tool_name="chat", request_body=BODY.decode(), response_body='{"response":"done"}',
                            user_agent="bench", ip_address="127.0.0.1", protocol="http")
    started = time.perf_counter()
    for _ in range(n):
        encode_entry(entry)
    encode_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        logger.log_nowait(entry)
    log_us = (time.perf_counter() - started) / n * 1e6
    seed_style = [entry] * 0
    started = time.perf_counter()
    for _ in range(n):
        seed_style.append(entry)  # the seed's `self._queue.append(entry)`: the floor
    append_us = (time.perf_counter() - started) / n * 1e6
    print(f"[GT8004Logger.log cost, {n} calls]  log_nowait {log_us:.2f} µs/call "
          f"(encode {encode_us:.2f} µs + queue); bare list.append baseline {append_us:.3f} µs")
    await logger.close()
    dropped = logger.stats().dropped
    _stop(sink)
    if dropped:
        print(f"  (in-process: dropped {dropped})")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--sink":
        serve_sink(int(sys.argv[2]), sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        load([int(p) for p in sys.argv[2].split(",")], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (about 15 s)")
    parser.add_argument("--batch-size", type=int, default=50,
                        help="the instrumented server's batch_size (default 50, the SDK default)")
    parser.add_argument("--capture-only", action="store_true",
                        help="diagnosis: the middleware builds entries but nothing is encoded, queued or sent")
    parser.add_argument("--sink", choices=("lean", "test"), default="lean",
                        help="ingest endpoint: lean raw asyncio server (default) or the tests' uvicorn sink")
    parser.add_argument("--control", action="store_true",
                        help="A/A check of the method: the second server is plain too (added should be ~0)")
    args = parser.parse_args()
    os.environ["BENCH_BATCH_SIZE"] = str(args.batch_size)  # read by the --serve child
    if args.capture_only:
        os.environ["BENCH_CAPTURE_ONLY"] = "1"
    runs, rounds, per_round, calls = (3, 2, 500, 5_000) if args.quick else (6, 4, 1_000, 50_000)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, batch_size {args.batch_size}")
    asyncio.run(in_process(calls))
    real_servers(runs, rounds, per_round, args.sink, args.control)


if __name__ == "__main__":
    main()
