"""No BillingClient singleton leaks between the billing SDK's unit tests; no broker env overrides."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from billing_sdk import BillingClient
from billing_sdk._config import ENV_VARS


@pytest.fixture(autouse=True)
def fresh_billing_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    BillingClient._reset_singleton()
    yield
    BillingClient._reset_singleton()
