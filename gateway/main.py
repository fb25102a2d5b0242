"""Assemble the gateway app: routers, error handlers, and the runtime owned by the lifespan.

The gateway is the ingest path (``POST /v1/ingest``, the MQTT bridge, API keys, health and metrics)
and, when it knows a ClickHouse (``settings.clickhouse_url``, or ``read_client``), it also serves the
query path: the read API and dashboard page of ``dashboards``, mounted by ``gateway/read_api.py``.

Embedding contract (the one-command local stack): ``create_app(settings)`` returns a FastAPI app
whose lifespan starts and stops ``app.state.runtime`` (producer, key registry, MQTT bridge when
``settings.bridge``). ``faust.contrib.asgi.serve_asgi`` runs the lifespan too. Hosts without lifespan
support pass ``manage_runtime=False`` and drive ``app.state.runtime.start()`` / ``.stop()`` themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from clickhouse_connect.driver.client import Client
from fastapi import FastAPI, Request, Response

from gateway import read_api
from gateway.errors import GatewayError
from gateway.routers import health, ingest, otlp
from gateway.routers.openapi import complete_document
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings


def create_app(settings: GatewaySettings | None = None, *, runtime: GatewayRuntime | None = None,
               manage_runtime: bool = True, read_client: Client | None = None) -> FastAPI:
    """The gateway ASGI app. ``runtime`` may be given to share one with other components; ``read_client``,
    a ClickHouse client the process already owns, for the read API to share."""
    runtime = runtime or GatewayRuntime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not manage_runtime:
            yield
            return
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Meterline gateway",
        version="0.1.0",
        summary="Ingest of AI-agent request logs (HTTP) and usage reports (MQTT bridge) into Kafka",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: ours are vendored
        redoc_url=None,
    )
    app.state.runtime = runtime
    read_api.mount_docs(app)
    app.include_router(ingest.router)
    app.include_router(otlp.router)
    app.include_router(health.router)
    if runtime.settings.clickhouse_url or read_client is not None:
        read_api.mount(app, *read_api.clickhouse_clients(runtime.settings.clickhouse_url, read_client))

    def openapi() -> dict[str, Any]:  # the bearer scheme, and links from ingest to the read views mounted
        if app.openapi_schema is None:
            app.openapi_schema = complete_document(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> Response:
        return ingest.error_response(exc, runtime.settings.retry_after)

    return app


__all__ = ["create_app"]
