"""The alert routes: an agent manages its own alert rules and reads their events and deliveries; the
operator any agent's, and lists every agent's rules.

Under ``/v1/agents/{agent_id}/alerts`` (docs/alerts.md):

- ``GET  .../rules`` / ``POST .../rules``: list the rules with their state / create one (201, with its webhook
  secret, shown this once; 409 when the id is taken);
- ``GET``/``DELETE .../rules/{rule_id}``: one rule;
- ``POST .../rules/{rule_id}/test``: queue a test delivery (``alert.test``), sent by the evaluator's next tick;
- ``GET  .../events``, ``GET .../deliveries``: transitions and the delivery log, newest first.

And ``GET /v1/alerts/rules`` for the operator. Authorisation and the ClickHouse client are the read API's
(``dashboards/routes.py``); the gateway mounts these routers (``gateway/read_api.py``). Bodies are validated
with bounded fields and refused over ``MAX_BODY_BYTES``; the answers' models document them for the OpenAPI
document (``extra="forbid"``: the fuzz test checks every answer against them).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, Security, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from dashboards import alerts
from dashboards import openapi as doc
from dashboards.errors import DashboardError
from dashboards.routes import ClientFactory, Reader, Views, operator_access
from meterline.errors import InfrastructureError
from schemas.alerts import RULE_ID_PATTERN, Rule

__all__ = ["MAX_BODY_BYTES", "operator_router", "router"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Largest rule body accepted (a rule is a few hundred bytes).
MAX_BODY_BYTES = 8 * 1024

RuleId = Annotated[str, PathParam(pattern=RULE_ID_PATTERN, description="the rule's id")]
RuleFilter = Annotated[str, Query(max_length=128, description="only this rule's")]
EventFilter = Annotated[str, Query(max_length=128, description="only this event's")]
Limit = Annotated[int, Query(ge=1, le=alerts.MAX_LIMIT)]
DecimalText = Annotated[str, Field(pattern=r"^\d+(\.\d+)?$", examples=["0.05"])]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleBody(_Doc):
    """``POST .../alerts/rules``: a rule of the agent in the path (docs/alerts.md has what each field means)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"kind": "error_rate", "name": "checkout errors", "threshold": "0.05", "window_s": 300, "min_requests": 20,
         "webhook_url": "https://hooks.example.com/meterline"},
        {"kind": "usage", "meter": "llm", "unit": "USD", "period": "month", "threshold": "250"}]})

    rule_id: str | None = Field(default=None, pattern=RULE_ID_PATTERN, description="default: one is made (r_…)")
    kind: Literal["error_rate", "p95_latency", "no_traffic", "usage"]
    name: str = Field(default="", max_length=200)
    customer_id: str = Field(default="", max_length=256, description="only this end customer ('' = all)")
    threshold: DecimalText | Annotated[float, Field(ge=0, le=1e15)] = Field(
        default="0", description="error_rate: a fraction (0.05); p95_latency: ms; usage: the unit's quantity")
    window_s: int = Field(default=300, ge=60, le=86400, multiple_of=60)
    min_requests: int = Field(default=1, ge=1, le=1_000_000)
    meter: str = Field(default="", max_length=64, description="usage: a usage report's module (llm, tts, ...)")
    model: str = Field(default="", max_length=256, description="usage: only this model ('' = all)")
    unit: str = Field(default="", max_length=64, description="usage: the meter's unit, or the currency for spend")
    period: Literal["day", "month"] = "day"
    webhook_url: str = Field(default="", max_length=2048, pattern=r"^(https?://[^\s]+)?$")


class RuleOut(_Doc):
    agent_id: str
    rule_id: str
    kind: Literal["error_rate", "p95_latency", "no_traffic", "usage"]
    name: str
    customer_id: str
    threshold: DecimalText
    window_s: int
    min_requests: int
    meter: str
    model: str
    unit: str
    period: Literal["day", "month"]
    webhook_url: str
    created_at: datetime
    updated_at: datetime
    state: Literal["ok", "firing"]
    state_since: datetime | None = Field(description="when the last transition was decided; null: never")
    last_value: str | None = Field(description="the value at the last transition")


class RuleCreated(_Doc):
    rule: RuleOut
    secret: str = Field(description="signs the rule's webhooks (Meterline-Signature); shown this once")


class RuleList(_Doc):
    agent_id: str | None
    rules: list[RuleOut]


class RuleOne(_Doc):
    rule: RuleOut


class EventOut(_Doc):
    agent_id: str
    rule_id: str
    seq: int
    event_id: str
    kind: str
    transition: Literal["fired", "resolved", "test"]
    value: str
    threshold: str
    window_start: datetime
    window_end: datetime
    evaluated_at: datetime
    webhook_url: str


class EventList(_Doc):
    agent_id: str
    events: list[EventOut]


class DeliveryOut(_Doc):
    agent_id: str
    rule_id: str
    event_id: str
    attempt: int
    attempted_at: datetime
    url: str
    status_code: int = Field(description="the receiver's HTTP status; 0: no answer (see error)")
    error: str
    latency_ms: float
    outcome: Literal["delivered", "retry", "failed"]
    next_attempt_at: datetime


class DeliveryList(_Doc):
    agent_id: str
    deliveries: list[DeliveryOut]


class TestQueued(_Doc):
    event_id: str
    agent_id: str
    rule_id: str
    transition: Literal["test"]
    evaluated_at: datetime
    webhook_url: str


ERRORS: dict[int | str, dict[str, Any]] = {
    **doc.READ_ERRORS,
    400: {"model": doc.Problem, "description": "A rule that makes no sense (a unit not its meter's, ...)"},
}
ONE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 404: {"model": doc.Problem, "description": "The agent has no alert rule with this id"}}
CREATE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 409: {"model": doc.Problem, "description": "The agent has a rule with this id already"},
    413: {"model": doc.Problem, "description": f"The body is over {MAX_BODY_BYTES} bytes"}}


def _small_body(request: Request) -> None:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"a rule body is at most {MAX_BODY_BYTES} bytes")


async def _run(client: ClientFactory, fn: Callable[[Client], T]) -> T:
    try:
        result: T = await run_in_threadpool(lambda: fn(client()))
    except DashboardError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    except (ClickHouseError, InfrastructureError) as exc:
        log.warning("alerts query failed: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics store unavailable",
                            headers={"Retry-After": "5"}) from exc
    return result


router = APIRouter(prefix="/v1/agents/{agent_id}/alerts", tags=["alerts"], dependencies=[Security(doc.BEARER)])


@router.get("/rules", summary="The agent's alert rules with their state", operation_id="agent_alert_rules",
            response_model=None, responses={200: {"model": RuleList}, **doc.READ_ERRORS})
async def list_rules(agent_id: Reader, client: Views) -> dict[str, Any]:
    return {"agent_id": agent_id, "rules": await _run(client, lambda c: alerts.list_rules(c, agent_id))}


@router.post("/rules", summary="Create an alert rule; its webhook secret is in this answer only",
             operation_id="agent_alert_rule_create", response_model=None, status_code=status.HTTP_201_CREATED,
             dependencies=[Depends(_small_body)], responses={201: {"model": RuleCreated}, **CREATE_ERRORS})
async def create_rule(agent_id: Reader, client: Views, body: RuleBody) -> dict[str, Any]:
    fields = body.model_dump()
    fields["rule_id"] = fields["rule_id"] or "r_" + secrets.token_hex(8)
    try:
        rule = Rule.model_validate({**fields, "agent_id": agent_id})
    except ValidationError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "; ".join(e["msg"] for e in exc.errors())[:500]) from exc

    def create(c: Client) -> dict[str, Any]:
        if alerts.get_rule(c, agent_id, rule.rule_id) is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"agent {agent_id!r} has a rule {rule.rule_id!r} already")
        result = alerts.put_rule(c, rule)
        stored = alerts.get_rule(c, agent_id, rule.rule_id)
        return {"rule": stored, "secret": result.secret}

    return await _run(client, create)


@router.get("/rules/{rule_id}", summary="One alert rule with its state", operation_id="agent_alert_rule",
            response_model=None, responses={200: {"model": RuleOne}, **ONE_ERRORS})
async def get_rule(agent_id: Reader, client: Views, rule_id: RuleId) -> dict[str, Any]:
    rule = await _run(client, lambda c: alerts.get_rule(c, agent_id, rule_id))
    if rule is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert rule {rule_id!r} of agent {agent_id!r}")
    return {"rule": rule}


@router.delete("/rules/{rule_id}", summary="Delete an alert rule (its events and deliveries stay)",
               operation_id="agent_alert_rule_delete", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response, responses={204: {"description": "Deleted"}, **ONE_ERRORS})
async def delete_rule(agent_id: Reader, client: Views, rule_id: RuleId) -> Response:
    if not await _run(client, lambda c: alerts.delete_rule(c, agent_id, rule_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert rule {rule_id!r} of agent {agent_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/rules/{rule_id}/test", summary="Queue a test delivery of the rule's webhook (sent on the next tick)",
             operation_id="agent_alert_rule_test", response_model=None, status_code=status.HTTP_202_ACCEPTED,
             responses={202: {"model": TestQueued}, **ONE_ERRORS})
async def test_rule(agent_id: Reader, client: Views, rule_id: RuleId) -> dict[str, Any]:
    def queue(c: Client) -> dict[str, Any]:
        if alerts.get_rule(c, agent_id, rule_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert rule {rule_id!r} of agent {agent_id!r}")
        return alerts.queue_test_event(c, agent_id, rule_id)

    return await _run(client, queue)


@router.get("/events", summary="Alert transitions and test events, newest first", operation_id="agent_alert_events",
            response_model=None, responses={200: {"model": EventList}, **ERRORS})
async def list_events(agent_id: Reader, client: Views, rule_id: RuleFilter = "", limit: Limit = 100) -> dict[str, Any]:
    rows = await _run(client, lambda c: alerts.list_events(c, agent_id, rule_id, limit))
    return {"agent_id": agent_id, "events": rows}


@router.get("/deliveries", summary="The webhook delivery log, newest attempt first",
            operation_id="agent_alert_deliveries", response_model=None,
            responses={200: {"model": DeliveryList}, **ERRORS})
async def list_deliveries(agent_id: Reader, client: Views, rule_id: RuleFilter = "", event_id: EventFilter = "",
                          limit: Limit = 100) -> dict[str, Any]:
    rows = await _run(client, lambda c: alerts.list_deliveries(c, agent_id, rule_id, event_id, limit))
    return {"agent_id": agent_id, "deliveries": rows}


operator_router = APIRouter(tags=["alerts"], dependencies=[Security(doc.BEARER)])


@operator_router.get("/v1/alerts/rules", summary="Operator: every agent's alert rules with their state",
                     operation_id="alert_rules", response_model=None,
                     responses={200: {"model": RuleList}, 401: doc.READ_ERRORS[401], 503: doc.READ_ERRORS[503]})
async def all_rules(_operator: Annotated[object, Depends(operator_access)], client: Views) -> dict[str, Any]:
    return {"agent_id": None, "rules": await _run(client, lambda c: alerts.list_rules(c))}

