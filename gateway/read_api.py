"""The read path as the gateway serves it: the dashboards' routes, with the gateway's auth and ClickHouse.

The one gateway module that knows ``dashboards`` (the import-layer test allows this edge and no other).
``mount`` includes the read API (with the billing routes of ``dashboards/billing_api.py`` and the usage
limits of ``dashboards/limits_api.py``) and the
dashboard page in the gateway app and fills in what the routes
leave to their host (``app.dependency_overrides``): an agent reads its own data with its API key (the
key registry), the operator reads everything with ``METERLINE_OPERATOR_TOKEN`` (``gateway.deps``).

ClickHouse is opened lazily, on the first read, so a gateway whose ClickHouse is down still ingests.
The operator's read-only ``POST /v1/sql`` gets a client of its own (so that ``meterline sql`` works while
the embedded engine belongs to the running stack); a gateway given only a shared client has none to
open, and serves no SQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from clickhouse_connect.driver.client import Client
from fastapi import FastAPI, Request

from dashboards import alerts_api, billing_api, docs, limits_api, page, routes
from dashboards.sql import SqlSettings
from dashboards.sql import open_client as open_sql_client
from gateway.deps import authenticate_reader, authorize_agent_access, get_runtime, require_operator
from meterline.clickhouse import get_client

__all__ = ["clickhouse_clients", "lazy_client", "mount", "mount_docs"]


def lazy_client(clickhouse_url: str, opener: Callable[[str], Client] = get_client) -> routes.ClientFactory:
    """A factory that opens one client for ``clickhouse_url`` (with ``opener``) on first use (and returns it after)."""
    lock = threading.Lock()
    holder: list[Client] = []

    def factory() -> Client:
        with lock:
            if not holder:
                holder.append(opener(clickhouse_url))
            return holder[0]

    return factory


def clickhouse_clients(clickhouse_url: str | None, client: Client | None = None
                       ) -> tuple[routes.ClientFactory, routes.ClientFactory | None]:
    """The views' client (``client``, or one opened for ``clickhouse_url`` on first use) and the SQL's (its
    own, confined to the sandbox, for ``METERLINE_SQL_CLICKHOUSE_URL`` or else ``clickhouse_url``; None
    without a URL)."""
    if client is None and not clickhouse_url:
        raise ValueError("the read API needs a ClickHouse: a URL or a client")
    views = (lambda: client) if client is not None else lazy_client(clickhouse_url or "")
    sql_url = SqlSettings().clickhouse_url or clickhouse_url
    return views, lazy_client(sql_url, open_sql_client) if sql_url else None


def mount_docs(app: FastAPI) -> None:
    """Serve the API documentation (Swagger UI at /docs, ReDoc at /redoc) from vendored files, with or without
    the read API."""
    app.include_router(docs.router)


def _caller(request: Request) -> routes.Caller:
    """The agents list's reader: the operator (every agent), or the agent of the key presented (its own)."""
    principal = authenticate_reader(request)
    if principal.operator or principal.agent is None:  # every agent, those with keys but no traffic yet too
        return routes.Caller(None, tuple({r.agent_id for r in get_runtime(request).registry.records()}))
    return routes.Caller(principal.agent.agent_id)


def mount(app: FastAPI, views: routes.ClientFactory, sql: routes.ClientFactory | None = None) -> None:
    """Serve the read API and the page from ``app`` with the gateway's auth, and ``POST /v1/sql`` with ``sql``.

    The app's ``state.runtime`` is the ``GatewayRuntime`` whose key registry and settings decide who reads.
    """
    app.include_router(routes.router)
    app.include_router(routes.agents_router)
    app.include_router(billing_api.router)
    app.include_router(billing_api.operator_router)
    app.include_router(limits_api.router)
    app.include_router(alerts_api.router)  # alert rules, events, deliveries (docs/alerts.md)
    app.include_router(alerts_api.operator_router)
    app.include_router(page.router)
    app.dependency_overrides[routes.read_access] = authorize_agent_access
    app.dependency_overrides[routes.operator_access] = require_operator  # also the billing statements'
    app.dependency_overrides[routes.caller] = _caller
    app.dependency_overrides[routes.views_client] = lambda: views
    if sql is not None:
        app.include_router(routes.sql_router)
        app.dependency_overrides[routes.sql_client] = lambda: sql
