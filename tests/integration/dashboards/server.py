"""A real uvicorn serving the read API and page on a free port, in a thread of the test process.

chDB belongs to one process, so the server runs in the process that owns the ``clickhouse`` fixture.
The routes are mounted as the gateway mounts them (``gateway.read_api.mount``: the gateway's auth, here
the operator token of an unstarted runtime that knows no API key), without the gateway's ingest side.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from clickhouse_connect.driver.client import Client
from fastapi import FastAPI

from gateway import read_api
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings
from meterline.local.ports import free_port

OPERATOR_TOKEN = "test-operator-token-0123456789"


def dashboard_app(client: Client, sql_client: Client | None = None) -> FastAPI:
    """The read API and page, operator-token auth; with ``sql_client`` also the operator's ``POST /v1/sql``."""
    app = FastAPI()
    app.state.runtime = GatewayRuntime(GatewaySettings(operator_token=OPERATOR_TOKEN))
    read_api.mount(app, lambda: client, (lambda: sql_client) if sql_client is not None else None)
    return app


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        httpx.get(base + "/openapi.json", timeout=5).raise_for_status()
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
