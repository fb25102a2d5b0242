"""Request headers the server never keeps: the credentials and payment signatures of an agent's callers.

Our SDK's middleware leaves them out of an entry already; other clients may not. The gateway strips
them before an entry reaches Kafka, and the worker strips them again before a row reaches ClickHouse
(for records other producers wrote to the topic). One list for both, lower-case; it is a superset of
the SDK's own list (``gt8004.middleware.fastapi.SENSITIVE_HEADERS``), which a unit test checks.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SECRET_HEADERS"]

SECRET_HEADERS: Final[frozenset[str]] = frozenset({
    # credentials and sessions
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "apikey",
    "x-auth-token", "x-access-token", "x-refresh-token", "x-session-token", "x-csrf-token", "x-xsrf-token",
    "x-amz-security-token", "x-goog-api-key",
    # x402: the signed payment authorization (the settlement, X-PAYMENT-RESPONSE, is public)
    "x-payment",
})
