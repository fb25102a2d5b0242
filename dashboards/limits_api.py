"""The usage-limit routes: an agent sets, lists, deletes and checks its own limits; the operator any agent's.

Under ``/v1/agents/{agent_id}/limits`` (docs/limits.md):

- ``GET  .../limits``: every limit with what it has used in its current period (``at=`` another instant);
- ``POST .../limits``: set a limit (201 when new; 200 when the same terms — customer, meter, model, period —
  already had one, whose quantity it replaces);
- ``GET  .../limits/check?meter=llm&quantity=1000&customer=acme``: may this customer use that much more?
- ``GET``/``DELETE .../limits/{limit_id}``: one limit.

Authorisation and the ClickHouse client are the read API's (``dashboards/routes.py``: the agent's own key or
the operator token); the gateway mounts the router (``gateway/read_api.py``). Setting or deleting a limit
also sets or deletes its alert rule (``dashboards/limits.py``). Bodies are validated with bounded fields; the
answers' models document them for the OpenAPI document (``extra="forbid"``: the fuzz test checks them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import APIRouter, HTTPException, Query, Response, Security, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dashboards import openapi as doc
from dashboards.limits import LimitNotFound, Limits, LimitsError, parse_limit
from dashboards.queries import utcnow
from dashboards.routes import ClientFactory, Reader, Views
from meterline.errors import InfrastructureError
from schemas.limits import QUANTITY_PATTERN

__all__ = ["router"]

log = logging.getLogger(__name__)
T = TypeVar("T")

DecimalText = Annotated[str, Field(pattern=QUANTITY_PATTERN, examples=["1000000"])]
LimitId = Annotated[str, PathParam(min_length=1, max_length=64, pattern="^[A-Za-z0-9_:-]+$")]
MeterParam = Annotated[str, Query(min_length=1, max_length=64, description="the meter (schemas/prices.toml), e.g. llm")]
UnitParam = Annotated[str | None, Query(max_length=32, description="the meter's unit, e.g. tokens (checked if given)")]
ModelParam = Annotated[str, Query(max_length=128, description="the model used ('' = unspecified: only limits on "
                                                                "every model of the meter apply)")]
CustomerParam = Annotated[str | None, Query(min_length=1, max_length=256, description=(
    "the end customer (a usage report's metadata.customer_id); left out: the app's own limits only"))]
QuantityParam = Annotated[str, Query(pattern=QUANTITY_PATTERN, description="how much more is to be used (decimal "
                                                                           "text)")]
AtParam = Annotated[datetime | None, Query(description="the instant whose periods count (ISO-8601, default now)")]

# --- bodies ---------------------------------------------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitBody(_Doc):
    """``POST .../limits``: a cap on one meter's usage per UTC day or month, for the app or one customer."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"meter": "llm", "unit": "tokens", "period": "month", "limit": "1000000", "customer_id": "acme-corp"}]})

    meter: str = Field(min_length=1, max_length=64, description="a meter of schemas/prices.toml (llm, tts, ...)")
    unit: str | None = Field(default=None, max_length=32, description="the meter's unit; checked if given")
    model: str = Field(default="", max_length=128, description="count this model only ('' = every model)")
    period: Literal["day", "month"] = Field(description="the UTC calendar day or month the usage is counted in")
    limit: DecimalText | Annotated[int, Field(ge=0, lt=10**15)] = Field(
        description="the most usage allowed per period, exact (decimal text, or an integer)")
    customer_id: str | None = Field(default=None, min_length=1, max_length=256, description=(
        "the end customer (a usage report's metadata.customer_id); left out: the whole app's usage"))
    webhook_url: str | None = Field(default=None, max_length=2048, pattern=r"^(https?://[^\s]+)?$", description=(
        "where the limit's alert (rule `limit:<limit_id>`) is POSTed when the limit is reached; left out: "
        "as before ('' the first time: the alert is recorded, not delivered)"))


class LimitState(_Doc):
    limit_id: str
    agent_id: str
    scope: Literal["app", "customer"]
    customer_id: str | None
    meter: str
    unit: str
    model: str
    period: Literal["day", "month"]
    limit: DecimalText
    created_at: datetime | None
    updated_at: datetime | None
    period_start: datetime
    period_end: datetime = Field(description="when the period ends and the usage counted starts again from 0")
    used: int = Field(description="usage stored in the period (as fresh as the rollups: docs/limits.md)")
    remaining: DecimalText
    reached: bool = Field(description="used >= limit: the alert `limit:<limit_id>` fires")
    allowed: bool = Field(description="used + the quantity asked <= limit")


class LimitListed(LimitState):
    alert_rule_id: str | None = Field(description="the usage alert rule that fires when the limit is reached "
                                                  "(`limit:<limit_id>`, docs/alerts.md); null without one")
    alert_state: Literal["ok", "firing"] | None = Field(description="the rule's state as the evaluator last left it")


class LimitSet(LimitListed):
    created: bool = Field(description="true: a new limit; false: the limit on these terms got a new quantity")
    alert_secret: str | None = Field(description="the alert rule's webhook signing secret, only when the rule was "
                                                 "created now (docs/alerts.md)")


class LimitList(_Doc):
    agent_id: str
    at: datetime
    limits: list[LimitListed]


class LimitCheck(_Doc):
    agent_id: str
    meter: str
    unit: str
    model: str
    customer_id: str | None
    quantity: DecimalText
    at: datetime
    allowed: bool = Field(description="true when every limit that applies has room for quantity")
    limit_id: str | None = Field(description="the limit that decides: the first refusing, else the tightest; "
                                             "null when no limit applies")
    limit: DecimalText | None
    used: int | None
    remaining: DecimalText | None
    period_start: datetime | None
    period_end: datetime | None = Field(description="when the deciding limit resets")
    limits: list[LimitState]


ERRORS: dict[int | str, dict[str, Any]] = {
    **doc.READ_ERRORS,
    400: {"model": doc.Problem, "description": "No such meter, a unit that is not the meter's, too many limits, "
                                               "or an `at` outside 1970-2149"},
}
ONE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 404: {"model": doc.Problem, "description": "The agent has no limit with this id"}}

# --- helpers --------------------------------------------------------------------------------------


async def _run(client: ClientFactory, fn: Callable[[Limits], T]) -> T:
    try:
        result: T = await run_in_threadpool(lambda: fn(Limits(client())))
    except LimitNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except LimitsError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except (ClickHouseError, InfrastructureError) as exc:
        log.warning("limits query failed: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics store unavailable",
                            headers={"Retry-After": "5"}) from exc
    return result


#: the instants whose periods the rollups can hold (their ``Date`` days run from 1970 to 2149)
_EARLIEST, _LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2149, 5, 1, tzinfo=UTC)


def _utc(value: datetime | None) -> datetime | None:
    """``at`` in UTC (no offset means UTC); 400 outside the days the rollups can hold."""
    if value is None:
        return None
    try:
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "at out of range") from exc
    if not _EARLIEST <= moment < _LATEST:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"at must lie between {_EARLIEST:%Y-%m-%d} and "
                                                         f"{_LATEST:%Y-%m-%d}")
    return moment


# --- the routes -----------------------------------------------------------------------------------

router = APIRouter(prefix="/v1/agents/{agent_id}/limits", tags=["limits"], dependencies=[Security(doc.BEARER)])


@router.get("", summary="The agent's usage limits, each with what it has used in its period",
            operation_id="agent_limits", response_model=None, responses={200: {"model": LimitList}, **ERRORS})
async def list_limits(agent_id: Reader, client: Views, at: AtParam = None) -> dict[str, Any]:
    moment = _utc(at) or utcnow()
    states = await _run(client, lambda lim: lim.status(agent_id, moment))
    return {"agent_id": agent_id, "at": moment, "limits": states}


@router.post("", summary="Set a usage limit (a new one, or a new quantity for the same terms)",
             operation_id="agent_limit_set", response_model=None, status_code=status.HTTP_201_CREATED,
             responses={201: {"model": LimitSet, "description": "A new limit"},
                        200: {"model": LimitSet, "description": "The limit on these terms, with its new quantity"},
                        **ERRORS})
async def set_limit(agent_id: Reader, client: Views, body: LimitBody, response: Response
                    ) -> dict[str, Any]:
    def put(limits: Limits) -> dict[str, Any]:
        stored = limits.put(parse_limit(agent_id, body.model_dump()), webhook_url=body.webhook_url)
        return limits.states(agent_id, [stored.limit])[0] | {
            "created": stored.created, "alert_secret": stored.alert_secret}

    state = await _run(client, put)
    if not state["created"]:
        response.status_code = status.HTTP_200_OK
    return state


@router.get("/check", summary="May this customer (or the app) use this much more of a meter?",
            operation_id="agent_limit_check", response_model=None, responses={200: {"model": LimitCheck}, **ERRORS})
async def check_limit(agent_id: Reader, client: Views, meter: MeterParam, quantity: QuantityParam = "1",
                      unit: UnitParam = None, model: ModelParam = "", customer: CustomerParam = None,
                      at: AtParam = None) -> dict[str, Any]:
    moment = _utc(at)
    return await _run(client, lambda lim: lim.check(agent_id, meter, Decimal(quantity), unit=unit, model=model,
                                                          customer=customer, at=moment))


@router.get("/{limit_id}", summary="One usage limit with what it has used in its period",
            operation_id="agent_limit", response_model=None, responses={200: {"model": LimitListed}, **ONE_ERRORS})
async def get_limit(agent_id: Reader, client: Views, limit_id: LimitId, at: AtParam = None) -> dict[str, Any]:
    moment = _utc(at)

    def one(limits: Limits) -> dict[str, Any]:
        found = limits.status(agent_id, moment, limit_id)
        if not found:
            raise LimitNotFound(f"agent {agent_id!r} has no limit {limit_id!r}")
        return found[0]

    return await _run(client, one)


@router.delete("/{limit_id}", summary="Delete a usage limit (and its alert rule)", operation_id="agent_limit_delete",
               status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses={204: {"description": "Deleted"}, **ONE_ERRORS})
async def delete_limit(agent_id: Reader, client: Views, limit_id: LimitId) -> Response:
    await _run(client, lambda lim: lim.delete(agent_id, limit_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
