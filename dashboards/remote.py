"""The dashboard views read over the gateway's HTTP read API instead of from ClickHouse.

The shell commands use it when the embedded engine belongs to a running stack (chDB allows one
process per data directory) or when told ``--gateway URL``. Methods mirror ``DashboardQueries``;
times arrive as ISO-8601 strings. The gateway's refusals become sentences a person can act on:
which gateway, which token (by where it came from, never its value), and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from dashboards.errors import DashboardError
from dashboards.queries import TimeRange

_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class GatewayRefused(DashboardError):
    """The gateway answered with an error status; ``status`` and ``detail`` are its answer."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Token:
    """A bearer token and where it came from (``--token``, ``METERLINE_TOKEN``, a file...), for messages."""

    value: str
    source: str


class RemoteViews:
    """``DashboardQueries``' views through ``GET /v1/agents/...`` (and ``POST /v1/sql``)."""

    def __init__(self, base_url: str, token: Token, *, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.Client(base_url=self.base_url, timeout=_TIMEOUT, transport=transport,
                                  headers={"Authorization": f"Bearer {token.value}"})

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
            raise self._refusal(resp, operator_only=url == "/v1/sql")
        if resp.headers.get("content-type", "").startswith("text/csv"):
            return resp.text
        return resp.json()

    def _refusal(self, resp: httpx.Response, *, operator_only: bool = False) -> GatewayRefused:
        detail = _detail(resp)
        status = resp.status_code
        if status == 401:
            wanted = "the operator token" if operator_only else "an agent's API key or the operator token"
            text = (f"the gateway at {self.base_url} does not accept {self.token.source} (401: {detail}); "
                    f"give {wanted} with --token")
        elif status == 403:
            text = f"{self.token.source} may not read this: {detail}"
        elif status == 422:
            text = f"the gateway at {self.base_url} refused the request: {detail}"
        else:
            text = f"the gateway at {self.base_url} answered {status}: {detail}"
        return GatewayRefused(text, status, detail)

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

    def agents(self, agent_id: str | None = None, limit: int = 1000, now: datetime | None = None
               ) -> list[dict[str, Any]] | None:
        """``GET /v1/agents``: the agents the token may see (the gateway decides, not ``agent_id``); None
        from a gateway without the list."""
        try:
            result: list[dict[str, Any]] = self._call("GET", "/v1/agents")["agents"]
        except GatewayRefused as exc:
            if exc.status in (404, 405):
                return None
            raise
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


def _detail(resp: httpx.Response) -> str:
    """The ``detail`` of a FastAPI error answer, validation errors as ``name: message`` (else the text)."""
    try:
        detail = resp.json().get("detail", resp.text)
    except (ValueError, AttributeError):
        return resp.text[:300]
    if isinstance(detail, list):  # request validation: [{"loc": [...], "msg": ...}, ...]
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = [str(p) for p in item.get("loc", []) if p not in ("query", "path", "body")]
                parts.append(f"{'.'.join(loc) or 'request'}: {item.get('msg', '')}")
        return "; ".join(parts)[:300] or resp.text[:300]
    return str(detail)[:300]


__all__ = ["GatewayRefused", "RemoteViews", "Token"]
