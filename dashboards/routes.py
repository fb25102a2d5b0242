"""The read API: one JSON view per route under ``/v1/agents/{agent_id}``, the agents list, a CSV export,
and ad-hoc SQL.

The routes are declared once, here. What they need from the app that serves them — who may read,
and which ClickHouse to read — comes through five dependencies defined below, which that app replaces
with its own (``app.dependency_overrides``): the gateway does it in ``gateway/read_api.py`` with its key
registry and operator token, tests do it with theirs. Left alone, the dependencies let nobody in.

Every view runs its SQL file (``schemas/queries``, through ``DashboardQueries``) in Starlette's thread
pool, because chDB has no async client; the client is opened there too, on first use, so a store that
is down costs a 503 with ``Retry-After``, not a failed start-up. A caller is authorised before the
store is touched; parameters are checked before the store is touched. The analytics views take the same
filters (customer, tool, status class, protocol) as query parameters, bound by the engine. The JSON shapes and
the errors are declared for the OpenAPI document in ``dashboards/openapi.py``; the web page is ``dashboards/page.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Security, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dashboards import openapi as doc
from dashboards.errors import DashboardError
from dashboards.queries import (
    DIMENSIONS,
    MAX_DAYS,
    MAX_LIMIT,
    STATUS_CLASSES,
    STEPS,
    WINDOWS,
    Cursor,
    DashboardQueries,
    Filters,
    TimeRange,
    utcnow,
)
from dashboards.sql import MAX_ROWS, MAX_SQL_BYTES, SqlBusy, SqlSandboxError, run_read_only
from meterline.errors import InfrastructureError

__all__ = ["Caller", "ClientFactory", "agents_router", "caller", "operator_access", "read_access", "router",
           "sql_client", "sql_router", "views_client"]

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Opens (or returns) the ClickHouse client; called in the thread pool, when a view first needs it.
ClientFactory = Callable[[], Client]

# --- parameters ----------------------------------------------------------------------------------

AgentId = Annotated[str, PathParam(min_length=1, max_length=256)]
Days = Annotated[int, Query(ge=1, le=MAX_DAYS, description="whole UTC days ending today")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Period = Annotated[str, Query(pattern="^(day|week|month)$")]
Window = Annotated[str, Query(pattern="^(" + "|".join(WINDOWS) + ")$")]
Month = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="a calendar month, e.g. 2026-11")]
From = Annotated[datetime | None, Query(alias="from", description="ISO-8601 start; no offset means UTC")]
To = Annotated[datetime | None, Query(alias="to", description="ISO-8601 end (exclusive); no offset means UTC")]
Customer = Annotated[str, Query(max_length=256, description="only this customer id")]
Tool = Annotated[str, Query(max_length=256, description="only this tool")]
StatusClass = Annotated[str, Query(pattern="^(" + "|".join(STATUS_CLASSES) + ")$",
                                   description="only this status class (4xx leaves 402 out: it is a class of its own)")]
Protocol = Annotated[str, Query(max_length=64, description="only this protocol (http, mcp, a2a, ...)")]
Search = Annotated[str, Query(max_length=256, description="case-insensitive text in id, path, customer, tool, "
                                                          "error type, user agent or bodies")]
CursorParam = Annotated[str | None, Query(max_length=600, pattern="^[A-Za-z0-9_-]+$",
                                          description="next_cursor of the page before (keyset pagination)")]
Step = Annotated[int | None, Query(description="bucket width in seconds, one of " + ", ".join(map(str, STEPS))
                                   + "; default: about 180 buckets over the range")]
By = Annotated[str, Query(pattern="^(" + "|".join(DIMENSIONS) + ")$", description="the dimension to group by")]
RequestId = Annotated[str, PathParam(min_length=1, max_length=256)]


def _filters(customer: Customer = "", tool: Tool = "", status: StatusClass = "", protocol: Protocol = "") -> Filters:
    return Filters(customer=customer, tool=tool, status=status, protocol=protocol)


#: The filters of the analytics views, from their query parameters ('' or absent: any).
FiltersDep = Annotated[Filters, Depends(_filters)]

# --- what the serving app provides (it overrides these four) -------------------------------------


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def read_access(request: Request, agent_id: AgentId) -> object:
    """Return if the caller may read ``agent_id``'s data; else raise ``HTTPException`` 401 (no or unknown
    credentials) or 403 (credentials of another agent)."""
    raise _unauthorized("missing or unknown credentials")


def operator_access(request: Request) -> object:
    """Return if the caller is the operator (who may run ad-hoc SQL); else raise ``HTTPException`` 401."""
    raise _unauthorized("operator token required")


@dataclass(frozen=True)
class Caller:
    """Who reads, when no agent is named in the path: the operator (``agent_id`` None) or one agent."""

    agent_id: str | None
    #: agents the host knows without traffic (the gateway: its key registry), listed to the operator too
    known: tuple[str, ...] = ()


def caller(request: Request) -> Caller:
    """The caller of a route that names no agent (the agents list); else raise ``HTTPException`` 401."""
    raise _unauthorized("missing or unknown credentials")


def _no_store() -> Client:
    raise InfrastructureError("no ClickHouse is configured for the read API")


def views_client() -> ClientFactory:
    """The client the views read."""
    return _no_store


def sql_client() -> ClientFactory:
    """The client ad-hoc SQL runs on: a client of its own, so that a long query does not hold the views'."""
    return _no_store


Views = Annotated[ClientFactory, Depends(views_client)]


async def _reader(agent_id: AgentId, _access: Annotated[object, Depends(read_access)]) -> str:
    return agent_id


#: The agent whose data is read, once the caller may read it.
Reader = Annotated[str, Depends(_reader)]


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


def _cursor(token: str | None) -> Cursor | None:
    try:
        return Cursor.decode(token) if token else None
    except DashboardError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _unavailable(exc: Exception) -> HTTPException:
    log.warning("dashboard query failed: %s", exc)
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics store unavailable",
                         headers={"Retry-After": "5"})


async def _view(client: ClientFactory, fn: Callable[[DashboardQueries], T]) -> T:
    """``fn`` over the views, in the thread pool (where the client is opened too, on first use)."""
    try:
        result: T = await run_in_threadpool(lambda: fn(DashboardQueries(client())))
    except DashboardError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except (ClickHouseError, InfrastructureError) as exc:
        raise _unavailable(exc) from exc
    return result


# --- the views -----------------------------------------------------------------------------------

router = APIRouter(prefix="/v1/agents/{agent_id}", tags=["dashboard"], dependencies=[Security(doc.BEARER)])


@router.get("/stats", summary="Overview: totals, today/week/month, revenue, latency, error rate",
            operation_id="agent_stats", response_model=None,
            responses={200: doc.ok(doc.Stats, "agent_stats"), **doc.READ_ERRORS})
async def stats(agent_id: Reader, client: Views) -> dict[str, Any]:
    result: dict[str, Any] = await _view(client, lambda q: q.overview(agent_id))
    return {"agent_id": agent_id, **result}


@router.get("/stats/daily", summary="Daily trend: requests, revenue, errors, customers, latency per day",
            operation_id="agent_daily", response_model=None,
            responses={200: doc.ok(doc.Daily, "agent_daily"), **doc.READ_ERRORS})
async def daily(agent_id: Reader, client: Views, filters: FiltersDep, days: Days = 30) -> dict[str, Any]:
    return {"agent_id": agent_id, "days": await _view(client, lambda q: q.daily(agent_id, days, filters=filters))}


@router.get("/customers", summary="Per customer: first/last seen, requests, revenue, latency, error rate",
            operation_id="agent_customers", response_model=None,
            responses={200: doc.ok(doc.Customers, "agent_customers", ranged=True), **doc.RANGE_ERRORS})
async def customers(agent_id: Reader, client: Views, filters: FiltersDep, days: Days = 30, limit: Limit = 100,
                    start: From = None, end: To = None) -> dict[str, Any]:
    rng = _range(days, start, end)
    rows = await _view(client, lambda q: q.customers(agent_id, rng, limit, filters))
    return {"agent_id": agent_id, "start": rng.start, "end": rng.end, "customers": rows}


@router.get("/tools", summary="Per tool: requests, p95 latency, error rate, revenue",
            operation_id="agent_tools", response_model=None,
            responses={200: doc.ok(doc.Tools, "agent_tools", ranged=True), **doc.RANGE_ERRORS})
async def tools(agent_id: Reader, client: Views, filters: FiltersDep, days: Days = 30, limit: Limit = 100,
                start: From = None, end: To = None) -> dict[str, Any]:
    rng = _range(days, start, end)
    rows = await _view(client, lambda q: q.tools(agent_id, rng, limit, filters))
    return {"agent_id": agent_id, "start": rng.start, "end": rng.end, "tools": rows}


@router.get("/logs", summary="Observability: requests newest first, searched and filtered, a page at a time",
            operation_id="agent_logs", response_model=None,
            responses={200: doc.ok(doc.Logs, "agent_logs"), **doc.RANGE_ERRORS})
async def logs(agent_id: Reader, client: Views, filters: FiltersDep, limit: Limit = 50, q: Search = "",
               cursor: CursorParam = None, start: From = None, end: To = None) -> dict[str, Any]:
    """Without ``from``/``to``, all time. ``next_cursor`` (null on the last page) asks for the next page."""
    rng = None if start is None and end is None else _range(MAX_DAYS, start, end)
    after = _cursor(cursor)
    rows, nxt = await _view(client, lambda v: v.logs(agent_id, limit, rng, filters, q, after))
    return {"agent_id": agent_id, "logs": rows, "next_cursor": nxt.encode() if nxt else None}


@router.get("/requests/{request_id}", summary="One request: headers kept, bodies as captured, timings, payment",
            operation_id="agent_request", response_model=None,
            responses={200: doc.ok(doc.RequestDetail, "agent_request"), **doc.DETAIL_ERRORS})
async def request_detail(agent_id: Reader, client: Views, request_id: RequestId) -> dict[str, Any]:
    row = await _view(client, lambda q: q.request(agent_id, request_id))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no request {request_id!r} of agent {agent_id!r}")
    return {"agent_id": agent_id, "request": row}


@router.get("/summary", summary="A range's totals and those of the period before it, with the change",
            operation_id="agent_summary", response_model=None,
            responses={200: doc.ok(doc.Summary, "agent_summary", ranged=True), **doc.RANGE_ERRORS})
async def summary(agent_id: Reader, client: Views, filters: FiltersDep, days: Days = 30, start: From = None,
                  end: To = None) -> dict[str, Any]:
    rng = _range(days, start, end)
    result: dict[str, Any] = await _view(client, lambda q: q.compare(agent_id, rng, filters))
    return {"agent_id": agent_id, **result}


@router.get("/series", summary="Time series: requests, errors, 402s, revenue and latency per bucket of the range",
            operation_id="agent_series", response_model=None,
            responses={200: doc.ok(doc.Series, "agent_series", ranged=True), **doc.RANGE_ERRORS})
async def series(agent_id: Reader, client: Views, filters: FiltersDep, days: Days = 30, step: Step = None,
                 start: From = None, end: To = None) -> dict[str, Any]:
    rng = _range(days, start, end)
    result: dict[str, Any] = await _view(client, lambda q: q.series(agent_id, rng, step, filters))
    return {"agent_id": agent_id, **result}


@router.get("/breakdown", summary="Traffic per customer, tool, status class or protocol, with the period before",
            operation_id="agent_breakdown", response_model=None,
            responses={200: doc.ok(doc.Breakdown, "agent_breakdown", ranged=True), **doc.RANGE_ERRORS})
async def breakdown(agent_id: Reader, client: Views, filters: FiltersDep, by: By = "status", days: Days = 30,
                    limit: Limit = 100, start: From = None, end: To = None) -> dict[str, Any]:
    rng = _range(days, start, end)
    result: dict[str, Any] = await _view(client, lambda q: q.breakdown(agent_id, rng, by, limit, filters))
    return {"agent_id": agent_id, **result}


@router.get("/performance", summary="Speed insights: percentiles, histogram, hourly trend, change",
            operation_id="agent_performance", response_model=None,
            responses={200: doc.ok(doc.Performance, "agent_performance", ranged=True), **doc.RANGE_ERRORS})
async def performance(agent_id: Reader, client: Views, filters: FiltersDep, window: Window = "24h",
                      start: From = None, end: To = None) -> dict[str, Any]:
    """The last ``window``, or the range ``from``/``to`` (then ``window`` is "custom")."""
    rng = None if start is None and end is None else _range(1, start, end)
    shown = window if rng is None else "custom"
    result: dict[str, Any] = await _view(client, lambda q: q.performance(agent_id, shown, rng=rng, filters=filters))
    return {"agent_id": agent_id, **result}


@router.get("/revenue", summary="Revenue per day/week/month, by tool, per customer",
            operation_id="agent_revenue", response_model=None,
            responses={200: doc.ok(doc.Revenue, "agent_revenue", ranged=True), **doc.RANGE_ERRORS})
async def revenue(agent_id: Reader, client: Views, filters: FiltersDep, period: Period = "day", days: Days = 30,
                  limit: Limit = 100, start: From = None, end: To = None) -> dict[str, Any]:
    rng = _range(days, start, end)
    result: dict[str, Any] = await _view(client, lambda q: q.revenue(agent_id, rng, period, limit, filters))
    return {"agent_id": agent_id, **result}


# Billing usage and statements (/usage, /usage.csv, /statement, ...) are dashboards/billing_api.py's.


# --- the agents list: every agent for the operator, its own for an agent's key ---------------------

agents_router = APIRouter(tags=["dashboard"], dependencies=[Security(doc.BEARER)])


@agents_router.get("/v1/agents", summary="Agents with traffic: every one for the operator, its own for a key",
                   operation_id="agents", response_model=None,
                   responses={200: doc.ok(doc.Agents, "agents"), **doc.READ_ERRORS})
async def agents(who: Annotated[Caller, Depends(caller)], client: Views) -> dict[str, Any]:
    return {"agents": await _view(client, lambda q: q.agents(who.agent_id, known=who.known))}


# --- ad-hoc SQL (operator only): `meterline sql` while a running stack owns the embedded engine ------

sql_router = APIRouter(tags=["dashboard"], dependencies=[Security(doc.BEARER)])


class SqlRequest(BaseModel):
    """``POST /v1/sql``: one read-only statement with ``{name:Type}`` parameters bound by the engine."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "query": "SELECT toDate(event_time) AS day, count() FROM request_logs WHERE agent_id = {agent:String} "
                 "GROUP BY day ORDER BY day", "params": {"agent": "agent-1"}, "max_rows": 100}]})

    query: str = Field(min_length=1, max_length=MAX_SQL_BYTES)
    params: dict[str, Annotated[str, Field(max_length=4096)]] = Field(default_factory=dict, max_length=64)
    max_rows: int = Field(default=1000, ge=1, le=min(MAX_ROWS, 100_000))


@sql_router.post("/v1/sql", summary="Operator: run one read-only SQL statement", operation_id="sql",
                 response_model=None, responses={200: {"model": doc.SqlResult}, **doc.SQL_ERRORS})
async def sql(body: SqlRequest, _operator: Annotated[object, Depends(operator_access)],
              client: Annotated[ClientFactory, Depends(sql_client)]) -> dict[str, Any]:
    try:
        columns, rows, truncated = await run_in_threadpool(
            lambda: run_read_only(client(), body.query, body.params, body.max_rows))
    except SqlBusy as exc:  # one ad-hoc query at a time: this one may come back shortly
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc), headers={"Retry-After": "5"}) from exc
    except SqlSandboxError as exc:  # the server's SQL user is not a read-only one with limits: the host's to fix
        log.error("ad-hoc SQL is off: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    except DashboardError as exc:  # refused by the sandbox (named), or stopped at a limit (named)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except DatabaseError as exc:  # the engine refused the statement (syntax, readonly)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, _first_line(exc)) from exc
    except (ClickHouseError, InfrastructureError) as exc:
        raise _unavailable(exc) from exc
    return {"columns": columns, "rows": rows, "truncated": truncated}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else "query refused"
