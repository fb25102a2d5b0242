"""The gateway's one bearer-token reader and its operator-token check, as the read API uses them."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, HTTPException, Request

from gateway.deps import authorize_agent_access, bearer_token, require_operator
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings

OPERATOR = "s3cret-operator-token"


def _request(authorization: str | None = None) -> Request:
    """A request to an app whose (unstarted) runtime knows the operator token and no API key."""
    app = FastAPI()
    app.state.runtime = GatewayRuntime(GatewaySettings(operator_token=OPERATOR))
    headers = [(b"authorization", authorization.encode())] if authorization is not None else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b"",
                    "app": app})


def test_bearer_token_parsing() -> None:
    assert bearer_token(_request("Bearer abc")) == "abc"
    assert bearer_token(_request("bearer   abc  ")) == "abc"
    assert bearer_token(_request("Basic abc")) is None
    assert bearer_token(_request("Bearer ")) is None
    assert bearer_token(_request()) is None


def test_operator_token() -> None:
    assert authorize_agent_access(_request(f"Bearer {OPERATOR}"), "any-agent").operator
    require_operator(_request(f"Bearer {OPERATOR}"))
    for header in (None, "Bearer s3cret-operator-tokeN", "Bearer s3cret", "Token s3cret-operator-token"):
        for check in (lambda r: authorize_agent_access(r, "any-agent"), require_operator):
            with pytest.raises(HTTPException) as err:
                check(_request(header))
            assert err.value.status_code == 401 and err.value.headers == {"WWW-Authenticate": "Bearer"}
    unset = _request(f"Bearer {OPERATOR}")
    unset.app.state.runtime.settings.operator_token = None
    with pytest.raises(HTTPException):
        require_operator(unset)
