"""The dashboard views read over the gateway's HTTP read API instead of from ClickHouse.

The shell commands use it when the embedded engine belongs to a running stack (chDB allows one
process per data directory) or when told ``--gateway URL``. Methods mirror ``DashboardQueries``;
times arrive as ISO-8601 strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from dashboards.errors import DashboardError
from dashboards.queries import TimeRange

_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class RemoteViews:
    """``DashboardQueries``' views through ``GET /v1/agents/...`` (and ``POST /v1/sql``)."""

    def __init__(self, base_url: str, token: str, *, transport: httpx.BaseTransport | None = None) -> None:
        if not token:
            raise DashboardError("reading through the gateway needs a token: --token, METERLINE_TOKEN "
                                 "(the agent's API key) or METERLINE_OPERATOR_TOKEN")
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=_TIMEOUT, transport=transport,
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def _get(self, agent_id: str, path: str, **params: Any) -> Any:
        return self._call("GET", f"/v1/agents/{quote(agent_id, safe='')}/{path}", params=params)

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise DashboardError(f"cannot reach the gateway at {self.base_url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise DashboardError(f"gateway answered {resp.status_code}: {str(detail)[:300]}")
        if resp.headers.get("content-type", "").startswith("text/csv"):
            return resp.text
        return resp.json()

    @staticmethod
    def _range(rng: TimeRange) -> dict[str, str]:
        return {"from": rng.start.isoformat(), "to": rng.end.isoformat()}

    def overview(self, agent_id: str, now: datetime | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._get(agent_id, "stats")
        return result

    def daily(self, agent_id: str, days: int, now: datetime | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get(agent_id, "stats/daily", days=days)["days"]
        return result

    def customers(self, agent_id: str, rng: TimeRange, limit: int = 100) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get(agent_id, "customers", limit=limit, **self._range(rng))["customers"]
        return result

    def tools(self, agent_id: str, rng: TimeRange, limit: int = 100) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get(agent_id, "tools", limit=limit, **self._range(rng))["tools"]
        return result

    def performance(self, agent_id: str, window: str = "24h", now: datetime | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._get(agent_id, "performance", window=window)
        return result

    def statement(self, app_id: str, params: dict[str, str], fmt: str = "json") -> Any:
        """The app's statement (``GET /v1/agents/{app}/statement``), or every app's (the operator's
        ``GET /v1/statements``) when ``app_id`` is empty: CSV text for ``fmt="csv"``, else the JSON body."""
        suffix = ".csv" if fmt == "csv" else ""
        if app_id:
            return self._get(app_id, "statement" + suffix, **params)
        return self._call("GET", "/v1/statements" + suffix, params=params)

    def sql(self, query: str, params: dict[str, str], max_rows: int) -> tuple[list[str], list[list[Any]], bool]:
        body = self._call("POST", "/v1/sql", json={"query": query, "params": params, "max_rows": max_rows})
        return body["columns"], body["rows"], bool(body["truncated"])


__all__ = ["RemoteViews"]
