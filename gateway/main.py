"""Assemble the gateway app: routers, error handlers, and the runtime owned by the lifespan.

Embedding contract (the one-command local stack): ``create_app(settings, extra_routers=...)``
returns a FastAPI app whose lifespan starts and stops ``app.state.runtime`` (producer, key
registry, MQTT bridge when ``settings.bridge``). ``faust.contrib.asgi.serve_asgi`` runs the
lifespan too. Hosts without lifespan support pass ``manage_runtime=False`` and drive
``app.state.runtime.start()`` / ``.stop()`` themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from gateway.errors import GatewayError
from gateway.routers import health, ingest
from gateway.routers.openapi import complete_document
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings


def create_app(settings: GatewaySettings | None = None, *, extra_routers: Sequence[APIRouter] = (),
               runtime: GatewayRuntime | None = None, manage_runtime: bool = True) -> FastAPI:
    """The gateway ASGI app. ``runtime`` may be given to share one with other components."""
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
    )
    app.state.runtime = runtime
    app.include_router(ingest.router)
    app.include_router(health.router)
    for router in extra_routers:
        app.include_router(router)

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
