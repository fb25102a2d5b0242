"""Fixtures for the billing SDK's integration tests: a fresh singleton per test, a tenant login, the server peer."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from billing_sdk import BillingClient, get_billing_client
from billing_sdk._config import ENV_VARS

from meterline.local.mosquitto import MqttEndpoint
from tests.mqtt import new_tenant


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


@pytest.fixture
async def mosquitto(mosquitto: MqttEndpoint) -> MqttEndpoint:
    """The session broker as a billing client sees it: ``username``/``password`` are a fresh tenant login
    (``BillingPeer``, the server's side, takes ``mqtt_server``: the bridge's login)."""
    login = await new_tenant(mosquitto)
    return dataclasses.replace(mosquitto, username=login.username, password=login.password)
