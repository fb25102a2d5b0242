"""The dashboards package's public names, and its routes unmounted: nobody may read (no services)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

import dashboards
from dashboards import routes


def test_public_surface_is_pinned() -> None:
    assert set(dashboards.__all__) == {"DashboardError", "DashboardQueries", "TimeRange", "statement_to_csv"}
    for name in dashboards.__all__:
        assert getattr(dashboards, name) is not None
    assert set(routes.__all__) == {"Caller", "ClientFactory", "agents_router", "caller", "operator_access",
                                   "read_access", "router", "sql_client", "sql_router", "views_client"}


async def test_routes_whose_app_provides_nothing_let_nobody_in() -> None:
    app = FastAPI()
    app.include_router(routes.router)
    app.include_router(routes.sql_router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dashboards") as http:
        read = await http.get("/v1/agents/a/stats", headers={"Authorization": "Bearer anything"})
        sql = await http.post("/v1/sql", json={"query": "SELECT 1"}, headers={"Authorization": "Bearer anything"})
    assert read.status_code == sql.status_code == 401
    assert read.headers["www-authenticate"] == sql.headers["www-authenticate"] == "Bearer"
