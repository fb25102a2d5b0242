"""The read API's answers when ClickHouse cannot be reached or the parameters are wrong (no services).

The routes are mounted as the gateway mounts them (``gateway.read_api.mount``: its auth, here with the
operator token of an unstarted runtime) over a ClickHouse client factory of the test's.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, unquote

import httpx
from fastapi import FastAPI

from gateway import read_api
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings
from meterline.errors import InfrastructureError

TOKEN = "unit-operator-token-123456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _app(factory: Any) -> httpx.AsyncClient:
    app = FastAPI()
    app.state.runtime = GatewayRuntime(GatewaySettings(operator_token=TOKEN))
    read_api.mount(app, factory)
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


async def test_ranges_the_store_cannot_hold_are_refused_before_it_is_asked() -> None:
    """Found by the fuzzer: from=0070-... reached the engine and came back as 503 "store unavailable";
    bounds near year 1 or 9999 overflowed into a 500."""
    def factory() -> Any:
        raise AssertionError("must not be reached")

    async with _app(factory) as http:
        for query in ("customers?from=0070-06-19T16:41:31.20-07:24", "tools?to=0001-01-01T00:00:00",
                      "revenue?from=2026-01-01&to=9999-12-31T23:00:00-05:00", "usage?month=9999-12",
                      "usage.csv?from=2300-01-01&to=2300-02-01", "customers?from=1899-12-31T23:59:59Z"):
            resp = await http.get(f"/v1/agents/a/{query}", headers=AUTH)
            assert resp.status_code == 400, (query, resp.text)


class _EmptyStore:
    """A ClickHouse client that answers every query with no rows (the transport boundary)."""

    def query(self, *_args: Any, **_kwargs: Any) -> Any:
        return SimpleNamespace(column_names=[], result_rows=[])


async def test_csv_of_an_agent_with_a_non_ascii_id_names_the_file_in_both_forms() -> None:
    """Found by the fuzzer: a non-Latin-1 agent id in the Content-Disposition header was a 500."""
    agent = "agent-ü-\U0002423e"
    async with _app(lambda: _EmptyStore()) as http:
        resp = await http.get(f"/v1/agents/{quote(agent)}/usage.csv?month=2026-11", headers=AUTH)
    assert resp.status_code == 200, resp.text
    disposition = resp.headers["content-disposition"]
    assert 'filename="usage-agent-_-_-2026-11.csv"' in disposition
    assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == f"usage-{agent}-2026-11.csv"
