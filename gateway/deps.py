"""Who is calling: the one place the gateway reads a bearer token and decides what it allows.

- ``bearer_token(request)``: the token of ``Authorization: Bearer <token>`` — read here and nowhere else.
- ``authenticate_agent(request)``: the agent that owns the key (ingest; 401 missing/unknown, 403 revoked).
- ``is_operator_token`` / ``require_operator``: the caller presents ``METERLINE_OPERATOR_TOKEN``,
  compared as SHA-256 digests in constant time (neither the token nor its length leaks through timing).
- ``authorize_agent_access(request, agent_id)``: the caller may read ``agent_id``'s data — its own
  key, or the operator token (the read API's ``read_access``, mounted by ``gateway/read_api.py``);
  ``authenticate_reader(request)``: the operator or any key's agent (the agents list).
- ``RuntimeDep``: the process's ``GatewayRuntime``, for routes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from gateway.errors import AuthError, Forbidden
from gateway.keys.registry import AgentIdentity
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings


def get_runtime(request: Request) -> GatewayRuntime:
    runtime: GatewayRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[GatewayRuntime, Depends(get_runtime)]


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (None when absent, empty or another scheme)."""
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


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def is_operator_token(settings: GatewaySettings, token: str | None) -> bool:
    """Whether ``token`` is the operator token (none is configured: never)."""
    if token is None or settings.operator_token is None:
        return False
    expected = settings.operator_token.get_secret_value()
    return bool(expected) and hmac.compare_digest(_digest(token), _digest(expected))


def require_operator(request: Request) -> None:
    """Return if the caller presents the operator token; else ``HTTPException`` 401."""
    if not is_operator_token(get_runtime(request).settings, bearer_token(request)):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "operator token required",
                            headers={"WWW-Authenticate": "Bearer"})


@dataclass(frozen=True)
class Principal:
    """Who is reading: an agent (with its identity) or the operator."""

    operator: bool
    agent: AgentIdentity | None = None


def authenticate_reader(request: Request) -> Principal:
    """The operator, or the agent whose key the caller presents (whichever agent); else ``HTTPException`` 401/403."""
    return authorize_agent_access(request, None)


def authorize_agent_access(request: Request, agent_id: str | None) -> Principal:
    """Allow the operator, or the owner of ``agent_id`` (any key's owner when None); else ``HTTPException`` 401/403."""
    runtime = get_runtime(request)
    token = bearer_token(request)
    if is_operator_token(runtime.settings, token):
        return Principal(operator=True)
    try:
        identity = runtime.registry.authenticate(token)
        if agent_id is not None and not hmac.compare_digest(identity.agent_id.encode(), agent_id.encode()):
            # the key's holder may learn which agent it is theirs for (it says nothing about agent_id)
            raise Forbidden(f"this key belongs to agent {identity.agent_id!r}, not {agent_id!r}")
    except AuthError as exc:
        runtime.metrics.auth_failures.labels(exc.code).inc()
        raise HTTPException(exc.status_code, detail=exc.message,
                            headers={"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None) from exc
    return Principal(operator=False, agent=identity)


__all__ = [
    "Principal",
    "RuntimeDep",
    "authenticate_agent",
    "authenticate_reader",
    "authorize_agent_access",
    "bearer_token",
    "get_runtime",
    "is_operator_token",
    "require_operator",
]
