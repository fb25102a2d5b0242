"""The router's answers when ClickHouse cannot be reached or the parameters are wrong (no services)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from gateway.dashboard import create_dashboard_router, operator_token_authorizer
from meterline.errors import InfrastructureError

TOKEN = "unit-operator-token-123456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _app(factory: Any) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(create_dashboard_router(factory, operator_token_authorizer(TOKEN)))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dashboard")


async def test_unreachable_store_is_503_with_retry_after() -> None:
    def factory() -> Any:
        raise InfrastructureError("cannot reach ClickHouse")

    async with _app(factory) as http:
        for path in ("stats", "stats/daily", "customers", "tools", "logs", "performance", "revenue", "usage",
                     "usage.csv"):
            resp = await http.get(f"/v1/agents/a/{path}", headers=AUTH)
            assert resp.status_code == 503, path
            assert resp.headers["retry-after"] == "5"


async def test_auth_runs_before_the_store_is_touched_and_bad_input_is_refused() -> None:
    calls: list[int] = []

    def factory() -> Any:
        calls.append(1)
        raise AssertionError("must not be reached")

    async with _app(factory) as http:
        assert (await http.get("/v1/agents/a/stats")).status_code == 401
        assert (await http.get("/v1/agents/a/stats/daily?days=0", headers=AUTH)).status_code == 422
        assert (await http.get("/v1/agents/a/revenue?period=year", headers=AUTH)).status_code == 422
        assert (await http.get("/v1/agents/a/usage?month=2026-13", headers=AUTH)).status_code == 400
        assert (await http.get("/v1/agents/a/customers?from=2026-02-01&to=2026-01-01", headers=AUTH)).status_code == 400
        assert (await http.get("/v1/agents/" + "x" * 300 + "/stats", headers=AUTH)).status_code == 422
        not_mounted = await http.post("/v1/sql", json={"query": "SELECT 1"}, headers=AUTH)
        assert not_mounted.status_code in (404, 405)
    assert calls == []
