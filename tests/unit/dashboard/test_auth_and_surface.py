"""The dashboard package's public names and its authorizers (no services)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import HTTPException, Request

import gateway.dashboard as dashboard
from gateway.dashboard.auth import any_of, bearer_token, operator_token_authorizer


def _request(authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization is not None else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""})


def test_public_surface_is_pinned() -> None:
    assert set(dashboard.__all__) == {
        "Authorize", "DashboardError", "DashboardQueries", "TimeRange", "any_of", "create_dashboard_router",
        "gateway_dashboard_router", "operator_token_authorizer", "usage_to_csv"}
    for name in dashboard.__all__:
        assert getattr(dashboard, name) is not None


def test_bearer_token_parsing() -> None:
    assert bearer_token(_request("Bearer abc")) == "abc"
    assert bearer_token(_request("bearer   abc  ")) == "abc"
    assert bearer_token(_request("Basic abc")) is None
    assert bearer_token(_request("Bearer ")) is None
    assert bearer_token(_request()) is None


def test_operator_token() -> None:
    check = operator_token_authorizer("s3cret-operator-token")
    check(_request("Bearer s3cret-operator-token"), "any-agent")
    for header in (None, "Bearer s3cret-operator-tokeN", "Bearer s3cret", "Token s3cret-operator-token"):
        with pytest.raises(HTTPException) as err:
            check(_request(header), "any-agent")
        assert err.value.status_code == 401 and err.value.headers == {"WWW-Authenticate": "Bearer"}
    with pytest.raises(ValueError):
        operator_token_authorizer("short")


def test_any_of_prefers_forbidden_over_unauthorized() -> None:
    def owner_only(request: Request, agent_id: str) -> None:
        token = bearer_token(request) or ""
        if token == f"key-of-{agent_id}":
            return
        if token.startswith("key-of-"):
            raise HTTPException(403, "another agent's key")
        raise HTTPException(401, "unknown key")

    async def operator(request: Request, agent_id: str) -> None:
        if bearer_token(request) != "the-operator-token-0000":
            raise HTTPException(401, "not the operator")

    check = any_of(owner_only, operator)
    asyncio.run(check(_request("Bearer key-of-a"), "a"))
    asyncio.run(check(_request("Bearer the-operator-token-0000"), "a"))
    with pytest.raises(HTTPException) as err:
        asyncio.run(check(_request("Bearer key-of-b"), "a"))
    assert err.value.status_code == 403
    with pytest.raises(HTTPException) as err:
        asyncio.run(check(_request("Bearer nonsense"), "a"))
    assert err.value.status_code == 401
