"""The ingest front of ``meterline up``: ingest in a process of its own, everything else forwarded.

``meterline up`` runs the stream worker, the MQTT bridge and the read API in one process, the one that
owns the embedded ClickHouse engine. Its event loop was the stack's ceiling: the gateway's HTTP ingest
and the worker's decoding shared one core, and a worker batch held ingest answers back (the p99).
The front takes the public port and serves ``POST /v1/ingest`` and ``POST /v1/traces`` itself (the
gateway app in topic mode: API keys from the keys topic, records to Kafka, no ClickHouse). Every other
request (read API, dashboard, docs, alerts, limits, SQL) goes unchanged to the stack process on its
internal loopback port. ``/metrics`` is one scrape of both processes, each family merged
(``merge_expositions``); ``/readyz`` is ready when both are.

Run as ``python -m gateway.front`` with ``METERLINE_FRONT_UPSTREAM`` (the stack process's base URL)
and the gateway's usual settings (``meterline up`` sets them; ``docs/capacity.md`` has the figures).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import httpx
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.main import create_app
from gateway.routers.health import readiness
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings

__all__ = ["INGEST_PATHS", "SHARED_GAUGES", "Front", "merge_expositions", "serve"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Served by the front itself; every other path is the stack process's.
INGEST_PATHS = frozenset({"/v1/ingest", "/v1/traces"})
#: Gauges both processes report about the same thing (each loads every key): merged by max, not summed.
SHARED_GAUGES = frozenset({"meterline_gateway_api_keys"})
#: Hop-by-hop headers (RFC 9110 section 7.6.1) and the ones the front sets itself.
_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                  b"trailer", b"transfer-encoding", b"upgrade", b"host", b"x-forwarded-for"})


def merge_expositions(texts: Iterable[str]) -> bytes:
    """One Prometheus exposition from several processes' expositions of the same families.

    Samples with the same name and labels are added (counters, histogram buckets, sums and counts,
    in-flight gauges), except ``_created`` timestamps (the earliest) and ``SHARED_GAUGES`` (the largest).
    """
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            into = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = into.get(key)
                if old is None or math.isnan(old):
                    into[key] = sample.value
                elif sample.name.endswith("_created"):
                    into[key] = min(old, sample.value)
                elif family.type == "gauge" and family.name in SHARED_GAUGES:
                    into[key] = max(old, sample.value)
                else:
                    into[key] = old + sample.value
            del merged.samples[:]
    for name, metric in families.items():
        for (sample_name, labels), value in values[name].items():
            metric.add_sample(sample_name, dict(labels), value)

    class _Merged:
        def collect(self) -> Iterable[Metric]:
            return families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())  # a collector needs only collect()
    return generate_latest(registry)


class Front:
    """The ASGI app of the front: ``ingest`` for ``INGEST_PATHS``, the upstream for the rest."""

    def __init__(self, ingest: App, runtime: GatewayRuntime, upstream: str, *, max_body_bytes: int,
                 timeout: float = 300.0) -> None:
        self.ingest = ingest
        self.runtime = runtime
        self.upstream = upstream.rstrip("/")
        self.max_body_bytes = max_body_bytes
        # reads may run long (exports, the operator's SQL has its own server-side limit): no read timeout
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=5.0),
                                         limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.ingest(scope, receive, send)
            await self._client.aclose()
            return
        if scope["type"] != "http":  # no websockets in this API
            await send({"type": "websocket.close", "code": 1003})
            return
        path = scope["path"]
        if path in INGEST_PATHS:
            await self.ingest(scope, receive, send)
        elif path == "/metrics":
            await self._metrics(send)
        elif path == "/readyz":
            await self._readyz(send)
        else:
            await self._forward(scope, receive, send)

    async def _metrics(self, send: Send) -> None:
        texts = [self.runtime.metrics.render().decode()]
        try:
            reply = await self._client.get(f"{self.upstream}/metrics")
            if reply.status_code == 200:
                texts.append(reply.text)
        except httpx.HTTPError as exc:
            log.warning("metrics of the stack process unavailable: %s", exc)
        await _answer(send, 200, merge_expositions(texts), CONTENT_TYPE_LATEST.encode())

    async def _readyz(self, send: Send) -> None:
        front_ready, front = await readiness(self.runtime)
        try:
            reply = await self._client.get(f"{self.upstream}/readyz")
            stack: dict[str, Any] = reply.json()
            stack_ready = reply.status_code == 200
        except (httpx.HTTPError, ValueError):
            stack, stack_ready = {"status": "unreachable"}, False
        ready = stack_ready and front_ready
        body = {"status": "ready" if ready else "not ready", "ingest": front,
                **{k: v for k, v in stack.items() if k != "status"}, "stack": stack.get("status")}
        await _answer(send, 200 if ready else 503, orjson.dumps(body), b"application/json")

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await _answer(send, 413, orjson.dumps({"detail": f"body over {self.max_body_bytes} bytes"}),
                              b"application/json")
                return
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        client = scope.get("client")
        if client:  # the stack process's uvicorn trusts loopback proxies and reads the client from it
            headers.append((b"x-forwarded-for", client[0].encode()))
        url = self.upstream + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        request = self._client.build_request(scope["method"], url, headers=headers, content=bytes(body))
        try:
            reply = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            log.warning("stack process unreachable for %s %s: %s", scope["method"], scope["path"], exc)
            await _answer(send, 503, orjson.dumps({"detail": "the read API is not available yet; retry shortly"}),
                          b"application/json", retry_after=True)
            return
        try:
            await send({"type": "http.response.start", "status": reply.status_code,
                        "headers": [(k, v) for k, v in reply.headers.raw if k.lower() not in _HOP]})
            async for chunk in reply.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await reply.aclose()


async def _answer(send: Send, status: int, body: bytes, content_type: bytes, *, retry_after: bool = False) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_front(settings: GatewaySettings, upstream: str) -> Front:
    """The front for ``settings`` (topic mode: no ClickHouse, no bridge) forwarding to ``upstream``."""
    settings = settings.model_copy(update={"clickhouse_url": None, "bridge": False, "create_topics": False})
    runtime = GatewayRuntime(settings)
    return Front(create_app(settings, runtime=runtime), runtime, upstream,
                 max_body_bytes=settings.max_body_bytes)


def serve() -> None:
    """``python -m gateway.front``: serve the front until SIGTERM (in-flight ingest answered first)."""
    import uvicorn

    from meterline import heap

    upstream = os.environ.get("METERLINE_FRONT_UPSTREAM")
    if not upstream:
        raise SystemExit("METERLINE_FRONT_UPSTREAM (the stack process's base URL) is not set")
    logging.basicConfig(level=logging.WARNING, format="meterline front: %(levelname)s %(name)s: %(message)s")
    settings = GatewaySettings()
    app = create_front(settings, upstream)
    heap.settle()
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, loop="uvloop", http="httptools",
                timeout_graceful_shutdown=int(settings.drain_timeout) or None, log_level=logging.WARNING,
                server_header=False, log_config=None, lifespan="on")


if __name__ == "__main__":
    serve()
