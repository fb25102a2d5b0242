"""A real HTTP ingest sink (uvicorn on a free port, in a thread) implementing ``POST /v1/ingest``.

It answers like the gateway (``docs/wire-protocols.md``, section 1: 202 with accepted/rejected counts) and records
what it accepted. Tests switch it between ``ok``, ``fail`` (status + Retry-After), ``hang`` (never
answers until switched back) and ``down`` (``stop()``: connection refused), and can impose a body
size limit (413). Also used by ``bench/bench_sdk_transport.py``.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections import Counter
from typing import Any

import orjson
import uvicorn

from meterline.local.ports import free_port, wait_for_port

__all__ = ["Sink", "serve_app"]


class _Served:
    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="auto",
                                interface="asgi3", timeout_graceful_shutdown=1, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name=f"uvicorn-{port}")
        self.thread.start()
        wait_for_port("127.0.0.1", port, 10.0, "test HTTP server")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10.0)


def serve_app(app: Any, port: int | None = None) -> tuple[int, _Served]:
    """Serve an ASGI app with uvicorn in a thread; returns (port, handle with ``stop()``)."""
    port = port or free_port()
    return port, _Served(app, port)


class Sink:
    def __init__(self, api_key: str | None = None, max_body: int | None = None) -> None:
        self.api_key = api_key
        self.max_body = max_body
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/ingest"
        self.mode = "ok"
        self.fail_status = 503
        self.retry_after: str | None = None
        self.lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self.requests = 0
        self.hung = 0
        self._served: _Served | None = None

    # -- control ------------------------------------------------------------------------------
    def start(self) -> Sink:
        port, self._served = serve_app(self.app, self.port)
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()
            self._served = None

    def request_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(e["request_id"] for e in self.entries)

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.entries) < count:
            assert time.monotonic() < deadline, f"sink has {len(self.entries)} of {count} entries"
            time.sleep(0.02)

    # -- ASGI ---------------------------------------------------------------------------------
    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self.lock:
            self.requests += 1
        if self.mode == "hang":
            with self.lock:
                self.hung += 1
            while self.mode == "hang":  # a server that hangs on purpose, until the test changes the mode
                await asyncio.sleep(0.05)
        if self.mode == "fail":
            extra = [(b"retry-after", self.retry_after.encode())] if self.retry_after else []
            return await self._reply(send, self.fail_status, {"error": "unavailable"}, extra)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return await self._reply(send, 401, {"error": "unauthorized"})
        if self.max_body is not None and len(raw) > self.max_body:
            return await self._reply(send, 413, {"error": "too large"})
        if headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return await self._reply(send, 400, {"error": "malformed JSON"})
        entries = body.get("entries") or []
        with self.lock:
            self.batches.append({k: v for k, v in body.items() if k != "entries"} | {"n": len(entries)})
            self.entries.extend(entries)
        await self._reply(send, 202, {"status": "accepted", "entries": len(entries), "rejected": []})

    @staticmethod
    async def _reply(send: Any, status: int, payload: dict[str, Any],
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
        body = orjson.dumps(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), *(extra or [])]})
        await send({"type": "http.response.body", "body": body})
