"""The read API and web dashboard of SPEC §2/§6: JSON per view, a CSV export, and the page.

``create_dashboard_router(client_factory, authorize)`` returns an ``APIRouter`` that the gateway
includes (``create_app(..., extra_routers=[...])``). ``client_factory()`` returns the ClickHouse
client owned by the app's lifespan; ``authorize(request, agent_id)`` decides who may read.

The page ``/dashboard/{agent_id}`` is a static shell: it holds no data and needs no credentials.
Its script reads the token from the URL fragment (``#token=...``; fragments are never sent to the
server, so never logged) or a login form, keeps it in ``sessionStorage`` and calls the JSON API
with ``Authorization: Bearer``.

No ``from __future__ import annotations`` here: FastAPI must resolve the ``Owner`` alias, which is
local to ``create_dashboard_router``, when the routes are declared.
"""

import inspect
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import quote

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, Security, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gateway.dashboard import openapi as doc
from gateway.dashboard.auth import Authorize, OperatorCheck
from gateway.dashboard.errors import DashboardError
from gateway.dashboard.export import usage_to_csv
from gateway.dashboard.queries import (
    MAX_DAYS,
    MAX_LIMIT,
    WINDOWS,
    DashboardQueries,
    TimeRange,
    utcnow,
)
from gateway.dashboard.sqlguard import MAX_ROWS, MAX_SQL_BYTES, run_read_only
from meterline.errors import InfrastructureError

log = logging.getLogger(__name__)
T = TypeVar("T")

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
#: Files the page may load, with their media types; nothing else under static/ is served.
STATIC_FILES: Final[dict[str, str]] = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE": "text/plain",
}
_PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
}

AgentId = Annotated[str, PathParam(min_length=1, max_length=256)]
Days = Annotated[int, Query(ge=1, le=MAX_DAYS, description="whole UTC days ending today")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Period = Annotated[str, Query(pattern="^(day|week|month)$")]
Window = Annotated[str, Query(pattern="^(" + "|".join(WINDOWS) + ")$")]
Month = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="a calendar month, e.g. 2026-11")]
From = Annotated[datetime | None, Query(alias="from", description="ISO-8601 start; no offset means UTC")]
To = Annotated[datetime | None, Query(alias="to", description="ISO-8601 end (exclusive); no offset means UTC")]


def _range(days: int, start: datetime | None, end: datetime | None, month: str | None = None) -> TimeRange:
    try:
        if month:
            return TimeRange.month(month)
        if start is None and end is None:
            return TimeRange.last_days(days)
        end = _utc(end) if end else utcnow()
        start = _utc(start) if start else end - timedelta(days=days)
        return TimeRange(start, end)
    except DashboardError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except OverflowError as exc:  # a bound near year 1 or 9999 moved by an offset or by `days`
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "time range out of range") from exc


def _sql(factory: Callable[[], Client], query: str, params: dict[str, str],
         max_rows: int) -> tuple[list[str], list[list[Any]], bool]:
    return run_read_only(factory(), query, params, max_rows)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else "query refused"


def _attachment(name: str) -> str:
    """A Content-Disposition for ``name``: an ASCII file name (headers are Latin-1), the exact one in UTF-8."""
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SqlRequest(BaseModel):
    """``POST /v1/sql``: one read-only statement with ``{name:Type}`` parameters bound by the engine."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "query": "SELECT toDate(event_time) AS day, count() FROM request_logs WHERE agent_id = {agent:String} "
                 "GROUP BY day ORDER BY day", "params": {"agent": "agent-1"}, "max_rows": 100}]})

    query: str = Field(min_length=1, max_length=MAX_SQL_BYTES)
    params: dict[str, Annotated[str, Field(max_length=4096)]] = Field(default_factory=dict, max_length=64)
    max_rows: int = Field(default=1000, ge=1, le=min(MAX_ROWS, 100_000))


def create_dashboard_router(client_factory: Callable[[], Client], authorize: Authorize, *,
                            sql_client_factory: Callable[[], Client] | None = None,
                            authorize_operator: OperatorCheck | None = None) -> APIRouter:
    """Build the read API and dashboard page over ``client_factory()`` guarded by ``authorize``.

    With ``sql_client_factory`` and ``authorize_operator`` it also serves ``POST /v1/sql``
    (operator only, read-only) for ``meterline sql`` against a stack whose embedded engine
    another process owns. The SQL client should be a client of its own.
    """

    async def owner(request: Request, agent_id: AgentId) -> str:
        outcome = authorize(request, agent_id)
        if inspect.isawaitable(outcome):
            await outcome
        return agent_id

    Owner = Annotated[str, Depends(owner)]  # noqa: N806 - an Annotated alias, as in deps.py modules
    api = APIRouter(prefix="/v1/agents/{agent_id}", tags=["dashboard"], dependencies=[Security(doc.BEARER)])
    page = APIRouter(tags=["dashboard"], include_in_schema=False)

    async def run(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``method(*args)`` in the thread pool (clients are opened there too: chDB is synchronous)."""
        try:
            return await run_in_threadpool(method, *args, **kwargs)
        except DashboardError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
        except DatabaseError as exc:  # the engine refused the query (ad-hoc SQL: syntax, readonly)
            if method is _sql:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, _first_line(exc)) from exc
            log.warning("dashboard query failed: %s", exc)
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics store unavailable",
                                headers={"Retry-After": "5"}) from exc
        except (ClickHouseError, InfrastructureError) as exc:
            log.warning("dashboard query failed: %s", exc)
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics store unavailable",
                                headers={"Retry-After": "5"}) from exc

    async def view(fn: Callable[[DashboardQueries], T]) -> T:
        """``fn`` over the views, in the thread pool (where the client is opened too, on first use)."""
        result: T = await run(lambda: fn(DashboardQueries(client_factory())))
        return result

    @api.get("/stats", summary="Overview: totals, today/week/month, revenue, latency, error rate",
             operation_id="agent_stats", response_model=None,
             responses={200: doc.ok(doc.Stats, "agent_stats"), **doc.READ_ERRORS})
    async def stats(agent_id: Owner) -> dict[str, Any]:
        result: dict[str, Any] = await view(lambda q: q.overview(agent_id))
        return {"agent_id": agent_id, **result}

    @api.get("/stats/daily", summary="Daily trend: requests, revenue, errors, customers, latency per day",
             operation_id="agent_daily", response_model=None,
             responses={200: doc.ok(doc.Daily, "agent_daily"), **doc.READ_ERRORS})
    async def daily(agent_id: Owner, days: Days = 30) -> dict[str, Any]:
        return {"agent_id": agent_id, "days": await view(lambda q: q.daily(agent_id, days))}

    @api.get("/customers", summary="Per customer: first/last seen, requests, revenue, latency, error rate",
             operation_id="agent_customers", response_model=None,
             responses={200: doc.ok(doc.Customers, "agent_customers", ranged=True), **doc.RANGE_ERRORS})
    async def customers(agent_id: Owner, days: Days = 30, limit: Limit = 100,
                        start: From = None, end: To = None
                        ) -> dict[str, Any]:
        rng = _range(days, start, end)
        rows = await view(lambda q: q.customers(agent_id, rng, limit))
        return {"agent_id": agent_id, "start": rng.start, "end": rng.end, "customers": rows}

    @api.get("/tools", summary="Per tool: requests, p95 latency, error rate, revenue",
             operation_id="agent_tools", response_model=None,
             responses={200: doc.ok(doc.Tools, "agent_tools", ranged=True), **doc.RANGE_ERRORS})
    async def tools(agent_id: Owner, days: Days = 30, limit: Limit = 100,
                    start: From = None, end: To = None
                    ) -> dict[str, Any]:
        rng = _range(days, start, end)
        rows = await view(lambda q: q.tools(agent_id, rng, limit))
        return {"agent_id": agent_id, "start": rng.start, "end": rng.end, "tools": rows}

    @api.get("/logs", summary="Observability: the most recent requests, newest first",
             operation_id="agent_logs", response_model=None,
             responses={200: doc.ok(doc.Logs, "agent_logs"), **doc.READ_ERRORS})
    async def logs(agent_id: Owner, limit: Limit = 50) -> dict[str, Any]:
        return {"agent_id": agent_id, "logs": await view(lambda q: q.logs(agent_id, limit))}

    @api.get("/performance", summary="Speed insights: percentiles, histogram, hourly trend, change",
             operation_id="agent_performance", response_model=None,
             responses={200: doc.ok(doc.Performance, "agent_performance", ranged=True), **doc.READ_ERRORS})
    async def performance(agent_id: Owner, window: Window = "24h") -> dict[str, Any]:
        result: dict[str, Any] = await view(lambda q: q.performance(agent_id, window))
        return {"agent_id": agent_id, **result}

    @api.get("/revenue", summary="Revenue per day/week/month, by tool, per customer",
             operation_id="agent_revenue", response_model=None,
             responses={200: doc.ok(doc.Revenue, "agent_revenue", ranged=True), **doc.RANGE_ERRORS})
    async def revenue(agent_id: Owner, period: Period = "day", days: Days = 30, limit: Limit = 100,
                      start: From = None, end: To = None
                      ) -> dict[str, Any]:
        rng = _range(days, start, end)
        result: dict[str, Any] = await view(lambda q: q.revenue(agent_id, rng, period, limit))
        return {"agent_id": agent_id, **result}

    @api.get("/usage", summary="Billing usage of the agent's app: units and cost per period/module/model",
             operation_id="agent_usage", response_model=None,
             responses={200: doc.ok(doc.Usage, "agent_usage", ranged=True), **doc.RANGE_ERRORS})
    async def usage(agent_id: Owner, period: Period = "day", days: Days = 30, month: Month = None,
                    start: From = None, end: To = None
                    ) -> dict[str, Any]:
        rng = _range(days, start, end, month)
        rows = await view(lambda q: q.usage(agent_id, rng, period))
        return {"agent_id": agent_id, "period": period, "start": rng.start, "end": rng.end, "usage": rows,
                "total_units": sum(r["units"] for r in rows), "total_cost": sum(r["cost"] for r in rows)}

    @api.get("/usage.csv", summary="Billing usage as CSV (one customer app, one period)",
             operation_id="agent_usage_csv", response_class=Response, responses={200: doc.CSV_OK, **doc.RANGE_ERRORS})
    async def usage_csv(agent_id: Owner, period: Period = "day", days: Days = 30, month: Month = None,
                        start: From = None, end: To = None) -> Response:
        rng = _range(days, start, end, month)
        rows = await view(lambda q: q.usage(agent_id, rng, period))
        name = f"usage-{agent_id}-{month or rng.start.date().isoformat()}.csv"
        return Response(usage_to_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": _attachment(name)})

    @page.get("/dashboard/static/{name}")
    async def static_file(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name],
                            headers={"Cache-Control": "public, max-age=3600"})

    @page.get("/dashboard/{agent_id}", response_class=HTMLResponse)
    async def dashboard_page(agent_id: AgentId) -> HTMLResponse:
        return HTMLResponse((STATIC_DIR / "dashboard.html").read_text(), headers=_PAGE_HEADERS)

    router = APIRouter()
    router.include_router(api)
    router.include_router(page)
    if sql_client_factory is not None and authorize_operator is not None:
        sql_router = APIRouter(tags=["dashboard"], dependencies=[Security(doc.BEARER)])
        check_operator = authorize_operator
        sql_factory = sql_client_factory

        @sql_router.post("/v1/sql", summary="Operator: run one read-only SQL statement", operation_id="sql",
                         response_model=None, responses={200: {"model": doc.SqlResult}, **doc.SQL_ERRORS})
        async def sql(request: Request, body: SqlRequest) -> dict[str, Any]:
            outcome = check_operator(request)
            if inspect.isawaitable(outcome):
                await outcome
            columns, rows, truncated = await run(_sql, sql_factory, body.query, body.params, body.max_rows)
            return {"columns": columns, "rows": rows, "truncated": truncated}

        router.include_router(sql_router)
    return router


__all__ = ["STATIC_DIR", "STATIC_FILES", "create_dashboard_router"]
