"""Shared FastAPI dependencies (``Annotated`` aliases) — reused by the read API's routers.

- ``RuntimeDep`` / ``SettingsDep``: the process's ``GatewayRuntime`` and settings.
- ``AgentDep``: the agent that owns the bearer key (401 missing/unknown, 403 revoked).
- ``AgentAccessDep`` / ``authorize_agent_access(request, agent_id)``: the caller may read
  ``agent_id``'s data — its own key, or the operator token (``METERLINE_OPERATOR_TOKEN``),
  both compared in constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from gateway.errors import AuthError, Forbidden
from gateway.keys.registry import AgentIdentity
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings


def get_runtime(request: Request) -> GatewayRuntime:
    runtime: GatewayRuntime = request.app.state.runtime
    return runtime


def get_settings(request: Request) -> GatewaySettings:
    return get_runtime(request).settings


RuntimeDep = Annotated[GatewayRuntime, Depends(get_runtime)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (None when absent or another scheme)."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def authenticate_agent(request: Request) -> AgentIdentity:
    """The owner of the request's key; raises ``AuthError`` (counted in the auth-failure metric)."""
    runtime = get_runtime(request)
    try:
        return runtime.registry.authenticate(bearer_token(request))
    except AuthError as exc:
        runtime.metrics.auth_failures.labels(exc.code).inc()
        raise


AgentDep = Annotated[AgentIdentity, Depends(authenticate_agent)]


@dataclass(frozen=True)
class Principal:
    """Who is reading: an agent (with its identity) or the operator."""

    operator: bool
    agent: AgentIdentity | None = None


def is_operator_token(settings: GatewaySettings, token: str | None) -> bool:
    if token is None or settings.operator_token is None:
        return False
    expected = settings.operator_token.get_secret_value()
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def authorize_agent_access(request: Request, agent_id: str) -> Principal:
    """Allow the operator, or the owner of ``agent_id``; else ``HTTPException`` 401/403."""
    runtime = get_runtime(request)
    token = bearer_token(request)
    if is_operator_token(runtime.settings, token):
        return Principal(operator=True)
    try:
        identity = runtime.registry.authenticate(token)
        if not hmac.compare_digest(identity.agent_id.encode(), agent_id.encode()):
            raise Forbidden("this key belongs to another agent")
    except AuthError as exc:
        runtime.metrics.auth_failures.labels(exc.code).inc()
        raise HTTPException(exc.status_code, detail=exc.message,
                            headers={"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None) from exc
    return Principal(operator=False, agent=identity)


AgentAccessDep = Annotated[Principal, Depends(authorize_agent_access)]

__all__ = [
    "AgentAccessDep",
    "AgentDep",
    "Principal",
    "RuntimeDep",
    "SettingsDep",
    "authenticate_agent",
    "authorize_agent_access",
    "bearer_token",
    "get_runtime",
    "get_settings",
    "is_operator_token",
]
