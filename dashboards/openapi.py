"""What the read API declares in the OpenAPI document: response bodies, error answers, links, auth.

The routes return plain dicts (the views' rows); the models here only describe them (the routes
pass them as ``responses={200: {"model": ...}}``, so nothing is validated or re-serialised at run
time). ``extra="forbid"`` makes the document list every field; the stateful fuzz test
(``tests/integration/gateway/test_fuzz.py``) checks every answer against it.

Links tell a client (and the fuzzer) how answers feed the next calls: the ``agent_id`` of one view
reads the agent's other views, and the ``start``/``end`` a ranged view echoes select the same range
in another one.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final

from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

#: Documents ``Authorization: Bearer <API key or operator token>``; reads nothing itself.
BEARER: Final = HTTPBearer(scheme_name="bearer", auto_error=False,  # gateway.routers.openapi.BEARER_SCHEME
                           description="an agent's API key (its own data) or the operator token (any agent)")


#: What a row's ``estimated`` says (dashboards/queries.py, SKETCHED): a long range of a busy agent is read from
#: the hour and day sketches of migration 0006, whose percentiles are t-digest estimates.
ESTIMATED: Final = ("true when {} estimates (t-digest: within about 1 % of rank): a range holding many of the agent's "
                    "requests is read from hour and day sketches; counts, sums and averages stay exact")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Stats(_Doc):
    agent_id: str
    total_requests: int
    today_requests: int
    week_requests: int
    month_requests: int
    revenue: float
    paid_requests: int
    payment_required: int
    errors: int
    avg_latency_ms: float
    error_rate: float
    last_request_at: datetime | None


class Day(_Doc):
    day: date
    requests: int
    revenue: float
    errors: int
    customers: int
    avg_latency_ms: float
    p95_latency_ms: float
    estimated: bool = Field(description=ESTIMATED.format("p95_latency_ms and customers (uniq) are"))


class Daily(_Doc):
    agent_id: str
    days: list[Day]


class Customer(_Doc):
    customer_id: str
    first_seen: datetime
    last_seen: datetime
    requests: int
    revenue: float
    avg_latency_ms: float
    error_rate: float


class Customers(_Doc):
    agent_id: str
    start: datetime
    end: datetime
    customers: list[Customer]


class Tool(_Doc):
    tool_name: str
    requests: int
    p95_latency_ms: float
    avg_latency_ms: float
    error_rate: float
    revenue: float
    estimated: bool = Field(description=ESTIMATED.format("p95_latency_ms is"))


class Tools(_Doc):
    agent_id: str
    start: datetime
    end: datetime
    tools: list[Tool]


class LogEntry(_Doc):
    event_time: datetime
    request_id: str
    method: str
    path: str
    status_code: int
    response_ms: float
    customer_id: str
    tool_name: str
    error_type: str
    protocol: str
    x402_amount: float
    x402_tx_hash: str
    x402_token: str
    x402_payer: str
    ip_address: str
    user_agent: str
    country: str
    city: str
    request_body_size: int
    response_body_size: int
    request_body: str
    response_body: str
    ingested_at: datetime


class Logs(_Doc):
    agent_id: str
    logs: list[LogEntry]
    next_cursor: str | None


class StoredRequest(_Doc):
    """A request as stored: secret headers removed, bodies as captured (their sizes are the originals')."""

    event_time: datetime
    ingested_at: datetime
    stored_at: datetime
    request_id: str
    batch_id: str
    sdk_version: str
    source: str
    method: str
    path: str
    status_code: int
    response_ms: float
    customer_id: str
    tool_name: str
    error_type: str
    protocol: str
    x402_amount: float
    x402_tx_hash: str
    x402_token: str
    x402_payer: str
    request_body: str
    response_body: str
    request_body_size: int
    response_body_size: int
    headers: dict[str, str]
    ip_address: str
    user_agent: str
    referer: str
    content_type: str
    accept_language: str
    country: str
    city: str


class RequestDetail(_Doc):
    agent_id: str
    request: StoredRequest


class WindowStats(_Doc):
    """Successes (status < 400), errors (>= 400 but 402) and payment required (402) add up to requests."""

    requests: int
    successes: int
    errors: int
    payment_required: int
    revenue: float
    paid_requests: int
    customers: int
    error_rate: float
    avg_latency_ms: float
    requests_per_minute: float
    p50_latency_ms: float
    p75_latency_ms: float
    p90_latency_ms: float
    p95_latency_ms: float
    p99_latency_ms: float


class Change(_Doc):
    """Relative change to the window before, in percent; null when there is nothing to compare with."""

    requests: float | None
    requests_per_minute: float | None
    error_rate: float | None
    avg_latency_ms: float | None
    p50_latency_ms: float | None
    p75_latency_ms: float | None
    p90_latency_ms: float | None
    p95_latency_ms: float | None
    p99_latency_ms: float | None


class Bucket(_Doc):
    bucket: int
    lower_ms: float
    upper_ms: float
    requests: int


class Hour(_Doc):
    hour: datetime
    requests: int
    errors: int
    avg_latency_ms: float
    p95_latency_ms: float


class Performance(_Doc):
    agent_id: str
    window: str
    start: datetime
    end: datetime
    previous_start: datetime
    current: WindowStats
    previous: WindowStats
    change_pct: Change
    histogram: list[Bucket]
    hourly: list[Hour]


class SummaryChange(Change):
    successes: float | None
    errors: float | None
    payment_required: float | None
    revenue: float | None
    paid_requests: float | None
    customers: float | None


class Summary(_Doc):
    """The range [start, end) and the period of the same length before it, [previous_start, start)."""

    agent_id: str
    start: datetime
    end: datetime
    previous_start: datetime
    current: WindowStats
    previous: WindowStats
    change_pct: SummaryChange


class Point(_Doc):
    t: datetime
    requests: int
    errors: int
    payment_required: int
    revenue: float
    avg_latency_ms: float
    p50_latency_ms: float
    p95_latency_ms: float
    estimated: bool = Field(description=ESTIMATED.format("p50_latency_ms and p95_latency_ms are"))


class Series(_Doc):
    """One point per bucket of ``step_seconds`` (aligned to UTC) that overlaps [start, end), empty ones too."""

    agent_id: str
    start: datetime
    end: datetime
    step_seconds: int
    points: list[Point]


class Group(_Doc):
    key: str
    requests: int
    errors: int
    payment_required: int
    error_rate: float
    revenue: float
    avg_latency_ms: float
    p95_latency_ms: float
    previous_requests: int
    estimated: bool = Field(description=ESTIMATED.format("p95_latency_ms is"))


class Breakdown(_Doc):
    """Groups with traffic in [start, end); ``previous_requests`` counts [previous_start, start)."""

    agent_id: str
    by: str
    start: datetime
    end: datetime
    previous_start: datetime
    groups: list[Group]


class AgentRow(_Doc):
    agent_id: str
    requests: int
    errors: int
    payment_required: int
    revenue: float
    recent_requests: int
    first_seen: datetime | None
    last_seen: datetime | None


class Agents(_Doc):
    """``recent_requests``: the last 24 hours (whole minutes); ``first_seen``/``last_seen``: minutes."""

    agents: list[AgentRow]


class PeriodRevenue(_Doc):
    period_start: date
    amount: float
    paid_requests: int


class ToolRevenue(_Doc):
    tool_name: str
    amount: float
    paid_requests: int


class CustomerRevenue(_Doc):
    customer_id: str
    amount: float
    paid_requests: int


class Revenue(_Doc):
    agent_id: str
    period: str
    start: datetime
    end: datetime
    total_amount: float
    paid_requests: int
    series: list[PeriodRevenue]
    by_tool: list[ToolRevenue]
    by_customer: list[CustomerRevenue]


class SqlResult(_Doc):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


class Problem(_Doc):
    detail: str


def _error(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


#: Answers every read can give besides 200 and 422 (FastAPI declares 422 itself).
READ_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: _error("No credentials, or an unknown or revoked key"),
    403: _error("The key belongs to another agent"),
    503: _error("The analytics store is unavailable; retry after Retry-After"),
}
#: ... and those that take a time range.
RANGE_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **READ_ERRORS, 400: _error("The range is empty, or not within the years 1900 to 2299, or no month")}
DETAIL_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **READ_ERRORS, 404: _error("The agent has no request with this id")}
SQL_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: _error("Not one read-only statement, refused by the sandbox (what and why), or stopped at a limit "
                "(which, and its value)"),
    401: _error("The operator token is required"),
    429: _error("Another ad-hoc query is running; retry after Retry-After"),
    503: _error("The analytics store is unavailable (retry after Retry-After), or ad-hoc SQL has no read-only user"),
}
CSV_OK: Final[dict[str, Any]] = {
    "description": "One line per (app, period, module, model) after a header line",
    "content": {"text/csv": {"schema": {"type": "string"}}},
}

#: operationId of each read view (the targets of the links below).
VIEWS: Final = ("agent_stats", "agent_daily", "agent_customers", "agent_tools", "agent_logs", "agent_performance",
                "agent_revenue", "agent_usage", "agent_usage_csv", "agent_summary", "agent_series", "agent_breakdown",
                "agent_statement", "agent_statement_csv")
_RANGED: Final = ("agent_customers", "agent_tools", "agent_revenue", "agent_usage", "agent_usage_csv",
                  "agent_statement", "agent_statement_csv",
                  "agent_summary", "agent_series", "agent_breakdown", "agent_logs", "agent_performance")
#: Links that follow a value inside an answer rather than its agent and range.
_FOLLOW: Final[dict[str, dict[str, Any]]] = {
    "agent_logs": {
        "next_page": {"operationId": "agent_logs", "parameters": {
            "agent_id": "$response.body#/agent_id", "cursor": "$response.body#/next_cursor"}},
        "agent_request": {"operationId": "agent_request", "parameters": {
            "agent_id": "$response.body#/agent_id", "request_id": "$response.body#/logs/0/request_id"}},
    },
    "agents": {
        target: {"operationId": target, "parameters": {"agent_id": "$response.body#/agents/0/agent_id"}}
        for target in ("agent_stats", "agent_summary", "agent_logs")
    },
}


def links(source: str, *, ranged: bool = False) -> dict[str, Any]:
    """The 200 answer of ``source`` links to the agent's other views (with its range, if it has one)."""
    out: dict[str, Any] = dict(_FOLLOW.get(source, {}))
    if source == "agents":
        return out
    for target in VIEWS:
        if target == source:
            continue
        parameters = {"agent_id": "$response.body#/agent_id"}
        if ranged and target in _RANGED:
            parameters |= {"from": "$response.body#/start", "to": "$response.body#/end"}
        out[target] = {"operationId": target, "parameters": parameters}
    return out


def ok(model: type[BaseModel], source: str, *, ranged: bool = False) -> dict[str, Any]:
    return {"model": model, "links": links(source, ranged=ranged)}


__all__ = ["BEARER", "CSV_OK", "DETAIL_ERRORS", "RANGE_ERRORS", "READ_ERRORS", "SQL_ERRORS", "VIEWS", "SqlResult",
           "ok"]
