"""Who may read an agent's dashboard (SPEC §2: the agent's own key, or an operator token).

The router takes an ``Authorize`` callable so that the gateway can plug in its key registry; this
module provides the operator-token check, usable alone (tests, a read-only deployment) or chained
with the registry check by :func:`any_of`.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, status

#: ``authorize(request, agent_id)`` returns (anything, or an awaitable of it) if the caller may read
#: ``agent_id``'s data, else raises ``HTTPException`` 401 (no or unknown credentials) or 403 (valid
#: credentials, other agent). ``gateway.deps.authorize_agent_access`` is one.
Authorize = Callable[[Request, str], object | Awaitable[object]]
#: ``check(request)`` returns if the caller is the operator, else raises ``HTTPException`` 401/403.
OperatorCheck = Callable[[Request], object | Awaitable[object]]


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(detail: str = "missing or unknown credentials") -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def operator_token_check(token: str) -> Callable[[Request], None]:
    """An ``OperatorCheck`` for callers presenting ``token`` (compared as SHA-256 digests, constant time)."""
    if len(token) < 16:
        raise ValueError("an operator token needs at least 16 characters")
    expected = hashlib.sha256(token.encode()).digest()

    def check(request: Request) -> None:
        given = bearer_token(request)
        if given is None or not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), expected):
            raise unauthorized()

    return check


def operator_token_authorizer(token: str) -> Authorize:
    """Allow any agent to a caller presenting ``token`` (compared as SHA-256 digests, constant time)."""
    check = operator_token_check(token)

    def authorize(request: Request, agent_id: str) -> None:
        check(request)

    return authorize


def any_of(*checks: Authorize) -> Callable[[Request, str], Awaitable[None]]:
    """Allow when one check allows; otherwise raise the most specific refusal (403 over 401)."""

    async def authorize(request: Request, agent_id: str) -> None:
        refusal: HTTPException | None = None
        for check in checks:
            try:
                outcome = check(request, agent_id)
                if inspect.isawaitable(outcome):
                    await outcome
                return
            except HTTPException as exc:
                if refusal is None or exc.status_code == status.HTTP_403_FORBIDDEN:
                    refusal = exc
        raise refusal or unauthorized()

    return authorize


__all__ = ["Authorize", "OperatorCheck", "any_of", "bearer_token", "operator_token_authorizer",
           "operator_token_check", "unauthorized"]
