"""Billing SDK: report usage of AI services over MQTT and check API keys.

    from billing_sdk import BillingClient, UsageData, report_usage, require_api_key, get_billing_client

    client = BillingClient("localhost", 8883, "user", "pass")   # process-wide singleton, TLS by default
    await client.connect()
    await report_usage(api_key=key, module="llm", model="gpt-4", usage=150)
    await client.disconnect()                                     # delivers what is queued first

    limits = LimitChecker("http://localhost:9092", "app-1", key)  # optional: usage limits over HTTP, cached
    if not (await limits.check("llm", 812, customer="acme-corp")).allowed: ...

Broker settings can be overridden by ``BILLING_MQTT_HOST`` / ``_PORT`` / ``_USERNAME`` / ``_PASSWORD`` /
``_CA_FILE`` (see ``billing_sdk._config``).
"""

from __future__ import annotations

import warnings
from typing import Any

from ._client import BillingClient, get_billing_client, report_usage
from ._decorators import StreamMetadata, require_api_key
from ._errors import (
    AuthenticationError,
    BillingError,
    BrokerConnectionError,
    InvalidApiKeyError,
    InvalidUsageError,
    MissingApiKeyError,
    NotConnectedError,
    TlsVerificationError,
)
from ._limits import LimitChecker, LimitDecision
from ._models import UsageData
from ._queue import QueueStats

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BillingClient",
    "BillingError",
    "BrokerConnectionError",
    "InvalidApiKeyError",
    "InvalidUsageError",
    "LimitChecker",
    "LimitDecision",
    "MissingApiKeyError",
    "NotConnectedError",
    "QueueStats",
    "StreamMetadata",
    "TlsVerificationError",
    "UsageData",
    "get_billing_client",
    "report_usage",
    "require_api_key",
]


def __getattr__(name: str) -> Any:
    # The seed README's first example imports ``report_usage_usage`` (a typo for ``report_usage``); it
    # keeps working, with a DeprecationWarning, so that example runs unchanged. Not part of ``__all__``.
    if name == "report_usage_usage":
        warnings.warn("billing_sdk.report_usage_usage is a misspelling of report_usage", DeprecationWarning,
                      stacklevel=2)
        return report_usage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
