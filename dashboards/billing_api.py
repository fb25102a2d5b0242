"""The billing routes: usage and monthly statements of an app, and every app's statements for the operator.

- ``GET /v1/agents/{agent_id}/usage`` (and ``.csv``): the app's usage per day/week/month and meter/model,
  priced — what the page's Usage tab charts;
- ``GET /v1/agents/{agent_id}/statement`` (and ``.csv``): the app's statement for a month (default: the
  current UTC month), per end customer;
- ``GET /v1/statements`` (and ``.csv``): the operator's statements of every app (or one, ``app=``).

Bodies come from ``dashboards/billing.py`` (amounts are decimal text); the CSV is ``dashboards/export.py``'s.
The models below only document the bodies (``extra="forbid"``: the fuzz test checks every answer against
them). Authorisation and the ClickHouse client are the read API's (``dashboards/routes.py``); the gateway
mounts these routers next to it (``gateway/read_api.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import APIRouter, Depends, HTTPException, Query, Response, Security, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dashboards import openapi as doc
from dashboards.billing import Billing, StatementRequest
from dashboards.errors import DashboardError
from dashboards.export import statement_to_csv
from dashboards.queries import TimeRange, utcnow
from dashboards.routes import ClientFactory, Days, From, Month, Reader, To, Views, operator_access
from meterline.errors import InfrastructureError

__all__ = ["operator_router", "router"]

log = logging.getLogger(__name__)

# --- parameters ----------------------------------------------------------------------------------

Granularity = Annotated[str | None, Query(pattern="^(day|week|month)$",
                                          description="rows per day, week (from Monday) or month; "
                                                      "default: one row per line for the whole period")]
UsageGranularity = Annotated[str, Query(pattern="^(day|week|month)$", description="rows per day, week or month")]
EndCustomer = Annotated[str | None, Query(max_length=256, description=(
    "only this end customer: a usage report's metadata.customer_id, a request's customer_id "
    "(an empty value: usage that names no customer)"))]
AsOf = Annotated[datetime | None, Query(description=(
    "count only what was stored before this instant (ISO-8601, default now): a statement re-run "
    "with the same as_of has the same lines"))]
App = Annotated[str, Query(max_length=256, description="only this app (default: every app)")]

# --- what the bodies look like (documentation only) ----------------------------------------------

#: An exact decimal as text (JSON numbers would be read back as binary floats).
DecimalText = Annotated[str, Field(pattern=r"^\d+(\.\d+)?$", examples=["0.0045"])]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Money(_Doc):
    currency: str
    amount: DecimalText


class X402Money(_Doc):
    currency: str = Field(description="the payment's token, e.g. USDC-base-mainnet")
    paid_requests: int
    amount: DecimalText


class Line(_Doc):
    app_id: str
    customer_id: str | None = Field(description="the end customer ('' = none named); null in the usage view")
    period_start: datetime
    period_end: datetime
    meter: str | None = Field(description="null: the module has no meter (unpriced)")
    module: str
    model: str
    unit: str | None
    reports: int
    quantity: int
    unit_price: DecimalText | None = Field(description="in `currency`; null: unpriced")
    currency: str | None
    effective_from: date | None = Field(description="the day the unit price applies from")
    amount: DecimalText | None = Field(description="quantity × unit_price, exact; null: unpriced")


class X402Line(_Doc):
    app_id: str
    customer_id: str | None
    period_start: datetime
    period_end: datetime
    currency: str = Field(description="the payment's token")
    paid_requests: int
    amount: DecimalText


class X402(_Doc):
    lines: list[X402Line]
    totals: list[X402Money]


class Quantity(_Doc):
    meter: str = Field(description="the meter, or the module of usage that has none")
    unit: str | None
    reports: int
    quantity: int


class CustomerTotals(_Doc):
    customer_id: str
    totals: list[Money]
    x402: list[X402Money]


class Meter(_Doc):
    meter: str
    unit: str
    description: str


class Price(_Doc):
    meter: str
    model: str = Field(description='"*": the meter\'s price for models not listed')
    unit: str
    unit_price: DecimalText
    currency: str
    effective_from: date


class PriceList(_Doc):
    currency: str
    source: str
    meters: list[Meter]
    prices: list[Price]


class _Envelope(_Doc):
    start: datetime
    end: datetime
    month: str | None
    granularity: str | None
    as_of: datetime = Field(description="only rows stored before this instant are counted")
    customer_id: str | None = Field(description="the end customer asked for; null: every one")
    currency: str = Field(description="the price list's currency: every unit price and usage amount is in it")
    price_list: PriceList


class AppStatement(_Doc):
    app_id: str
    lines: list[Line]
    unpriced: list[Line]
    quantities: list[Quantity]
    totals: list[Money] = Field(description="usage amounts per currency (the price list's)")
    customers: list[CustomerTotals]
    x402: X402


class AgentStatement(_Envelope, AppStatement):
    agent_id: str


class Statements(_Envelope):
    statements: list[AppStatement]


CSV_OK: dict[str, Any] = {
    "description": "Statement rows after a header line; the first column says what each row is (docs/billing.md)",
    "content": {"text/csv": {"schema": {"type": "string"}}},
}
OPERATOR_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": doc.Problem, "description": "The range is empty, or not within the years 1900 to 2299"},
    401: {"model": doc.Problem, "description": "The operator token is required"},
    503: {"model": doc.Problem, "description": "The analytics store is unavailable; retry after Retry-After"},
}

# --- helpers -------------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _range(month: str | None, start: datetime | None, end: datetime | None, days: int | None = None) -> TimeRange:
    """``month``, else ``from``/``to``, else the last ``days`` days (usage) or the current UTC month."""
    try:
        if month:
            return TimeRange.month(month)
        if start is None and end is None:
            return TimeRange.last_days(days) if days else TimeRange.month(f"{utcnow():%Y-%m}")
        end = _utc(end) if end else utcnow()
        start = _utc(start) if start else end - timedelta(days=days or 30)
        return TimeRange(start, end)
    except DashboardError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except OverflowError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "time range out of range") from exc


def _request(rng: TimeRange, app: str, customer: str | None, granularity: str | None, by_customer: bool = True,
             as_of: datetime | None = None) -> StatementRequest:
    try:
        return StatementRequest(rng, app, customer, granularity, by_customer, as_of)
    except DashboardError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except OverflowError as exc:  # an as_of near year 1 or 9999 moved by its offset
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "as_of out of range") from exc


def _month(rng: TimeRange) -> str | None:
    """``YYYY-MM`` when ``rng`` is exactly one calendar month."""
    label = f"{rng.start:%Y-%m}"
    try:
        return label if TimeRange.month(label) == rng else None
    except DashboardError:
        return None


async def _billing(client: ClientFactory, fn: Callable[[Billing], dict[str, Any]]) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await run_in_threadpool(lambda: fn(Billing(client())))
    except DashboardError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except (ClickHouseError, InfrastructureError) as exc:
        log.warning("billing query failed: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics store unavailable",
                            headers={"Retry-After": "5"}) from exc
    return result


def _csv(body: dict[str, Any], name: str) -> Response:
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)
    return Response(statement_to_csv(body), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"})


async def _one(agent_id: str, client: ClientFactory, req: StatementRequest) -> dict[str, Any]:
    body = await _billing(client, lambda b: b.statement(req))
    return {"agent_id": agent_id, "month": _month(req.rng), **body}


# --- the routes ----------------------------------------------------------------------------------

router = APIRouter(prefix="/v1/agents/{agent_id}", tags=["billing"], dependencies=[Security(doc.BEARER)])


@router.get("/usage", summary="Usage of the agent's app per period and meter/model: quantity, unit, unit price, "
            "amount (exact decimals)", operation_id="agent_usage", response_model=None,
            responses={200: doc.ok(AgentStatement, "agent_usage", ranged=True), **doc.RANGE_ERRORS})
async def usage(agent_id: Reader, client: Views, period: UsageGranularity = "day", days: Days = 30,
                month: Month = None, start: From = None, end: To = None, customer: EndCustomer = None,
                as_of: AsOf = None) -> dict[str, Any]:
    req = _request(_range(month, start, end, days), agent_id, customer, period, False, as_of)
    return await _one(agent_id, client, req)


@router.get("/usage.csv", summary="Usage of the agent's app as CSV", operation_id="agent_usage_csv",
            response_class=Response, responses={200: CSV_OK, **doc.RANGE_ERRORS})
async def usage_csv(agent_id: Reader, client: Views, period: UsageGranularity = "day", days: Days = 30,
                    month: Month = None, start: From = None, end: To = None, customer: EndCustomer = None,
                    as_of: AsOf = None) -> Response:
    rng = _range(month, start, end, days)
    body = await _one(agent_id, client, _request(rng, agent_id, customer, period, False, as_of))
    return _csv(body, f"usage-{agent_id}-{month or rng.start.date().isoformat()}.csv")


@router.get("/statement", summary="The app's statement for a month (default: this UTC month), per end customer",
            operation_id="agent_statement", response_model=None,
            responses={200: doc.ok(AgentStatement, "agent_statement", ranged=True), **doc.RANGE_ERRORS})
async def statement(agent_id: Reader, client: Views, month: Month = None, start: From = None, end: To = None,
                    period: Granularity = None, customer: EndCustomer = None, as_of: AsOf = None) -> dict[str, Any]:
    return await _one(agent_id, client, _request(_range(month, start, end), agent_id, customer, period,
                                                 as_of=as_of))


@router.get("/statement.csv", summary="The app's statement as CSV", operation_id="agent_statement_csv",
            response_class=Response, responses={200: CSV_OK, **doc.RANGE_ERRORS})
async def statement_csv(agent_id: Reader, client: Views, month: Month = None, start: From = None, end: To = None,
                        period: Granularity = None, customer: EndCustomer = None, as_of: AsOf = None) -> Response:
    rng = _range(month, start, end)
    body = await _one(agent_id, client, _request(rng, agent_id, customer, period, as_of=as_of))
    return _csv(body, f"statement-{agent_id}-{body['month'] or rng.start.date().isoformat()}.csv")


operator_router = APIRouter(tags=["billing"], dependencies=[Security(doc.BEARER)])


async def _all(client: ClientFactory, req: StatementRequest) -> dict[str, Any]:
    return {"month": _month(req.rng), **await _billing(client, lambda b: b.statements(req))}


@operator_router.get("/v1/statements", summary="Operator: every app's statement for a month (default: this "
                     "UTC month)", operation_id="statements", response_model=None,
                     responses={200: {"model": Statements}, **OPERATOR_ERRORS})
async def statements(_operator: Annotated[object, Depends(operator_access)], client: Views, month: Month = None,
                     start: From = None, end: To = None, period: Granularity = None, app: App = "",
                     customer: EndCustomer = None, as_of: AsOf = None) -> dict[str, Any]:
    return await _all(client, _request(_range(month, start, end), app, customer, period, as_of=as_of))


@operator_router.get("/v1/statements.csv", summary="Operator: every app's statement as CSV",
                     operation_id="statements_csv", response_class=Response,
                     responses={200: CSV_OK, **OPERATOR_ERRORS})
async def statements_csv(_operator: Annotated[object, Depends(operator_access)], client: Views,
                         month: Month = None, start: From = None, end: To = None, period: Granularity = None,
                         app: App = "", customer: EndCustomer = None, as_of: AsOf = None) -> Response:
    req = _request(_range(month, start, end), app, customer, period, as_of=as_of)
    body = await _all(client, req)
    return _csv(body, f"statements-{body['month'] or req.rng.start.date().isoformat()}.csv")
