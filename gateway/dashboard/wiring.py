"""The dashboard router as the gateway mounts it: ClickHouse from settings, gateway key auth.

``gateway_dashboard_router(clickhouse_url)`` opens the ClickHouse client lazily on the first
dashboard request (so a gateway whose ClickHouse is down still ingests) and authorises with
``gateway.deps.authorize_agent_access`` (the agent's own key, or ``METERLINE_OPERATOR_TOKEN``).
Give ``client=`` instead to share a client the process already owns (the embedded chDB of the
one-command stack: one process, one engine).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from clickhouse_connect.driver.client import Client
from fastapi import APIRouter, Request

from gateway.dashboard.auth import unauthorized
from gateway.dashboard.router import create_dashboard_router
from meterline.clickhouse import get_client
from meterline.settings import StackSettings


def lazy_client(clickhouse_url: str | None = None) -> Callable[[], Client]:
    """A factory that opens one client for ``clickhouse_url`` (default CLICKHOUSE_URL) on first use."""
    lock = threading.Lock()
    holder: list[Client] = []

    def factory() -> Client:
        with lock:
            if not holder:
                holder.append(get_client(clickhouse_url or StackSettings().effective_clickhouse_url()))
            return holder[0]

    return factory


def operator_only(request: Request) -> None:
    """The caller presents the gateway's ``METERLINE_OPERATOR_TOKEN`` (constant-time compare)."""
    from gateway.deps import bearer_token, get_settings, is_operator_token

    if not is_operator_token(get_settings(request), bearer_token(request)):
        raise unauthorized("operator token required")


def gateway_dashboard_router(clickhouse_url: str | None = None, *, client: Client | None = None) -> APIRouter:
    """The read API + page for ``gateway.main.create_app(..., extra_routers=[...])``.

    Also serves the operator's read-only ``POST /v1/sql`` on a client of its own (so that
    ``meterline sql`` works while the embedded engine belongs to the running stack); not when only
    ``client`` is given.
    """
    from gateway.deps import authorize_agent_access

    factory: Callable[[], Client] = (lambda: client) if client is not None else lazy_client(clickhouse_url)
    # ad-hoc SQL gets a client of its own; with only a shared client given there is none to open
    sql_factory = lazy_client(clickhouse_url) if client is None or clickhouse_url else None
    return create_dashboard_router(factory, authorize_agent_access, sql_client_factory=sql_factory,
                                   authorize_operator=operator_only)


__all__ = ["gateway_dashboard_router", "lazy_client", "operator_only"]
