"""Serve the gateway with uvicorn (``meterline gateway`` and ``python -m gateway``)."""

from __future__ import annotations

import importlib.util
import logging
import os

import uvicorn

from gateway.logs import configure
from gateway.main import create_app
from gateway.settings import GatewaySettings
from meterline import heap


def serve(settings: GatewaySettings | None = None, *, access_log: bool = False) -> None:
    """Run one gateway process until SIGTERM/SIGINT; uvicorn finishes in-flight requests first."""
    settings = settings or GatewaySettings()
    fast = importlib.util.find_spec("uvloop") is not None and importlib.util.find_spec("httptools") is not None
    if os.environ.get("METERLINE_LOG_FORMAT", "text").lower() == "json":
        configure(fmt="json")  # uvicorn keeps the root configuration when log_config is None
    app = create_app(settings)
    heap.settle()  # the imported and built app out of the collector's reach (meterline/heap.py says why)
    uvicorn.run(
        app, host=settings.host, port=settings.port, access_log=access_log,
        loop="uvloop" if fast else "asyncio", http="httptools" if fast else "h11",
        timeout_graceful_shutdown=int(settings.drain_timeout) or None, log_level=logging.INFO,
        server_header=False, log_config=None,
    )


__all__ = ["serve"]
