"""Fixtures for the billing SDK's integration tests: a fresh singleton per test, the server peer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from billing_sdk import BillingClient, get_billing_client
from billing_sdk._config import ENV_VARS


@pytest.fixture(autouse=True)
async def fresh_billing_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """No BillingClient before the test, none left after it; no broker overrides from the outer env."""
    for var in (*ENV_VARS.values(), "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(var, raising=False)
    BillingClient._reset_singleton()
    yield
    client = get_billing_client()
    if client is not None:
        await client.disconnect(timeout=0.5)
    BillingClient._reset_singleton()
