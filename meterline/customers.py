"""Which customer a request entry belongs to, when the client did not say.

Shared by the gateway and the worker: the gateway strips secret headers (``schemas/headers.py``)
before an entry reaches Kafka, and one of them, ``Authorization``, may name the customer. So the
gateway derives the customer before it strips, and the worker derives it for records other producers
wrote; both must give the same answer, hence one function.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

from schemas.events import RequestEntry

__all__ = ["derive_customer_id"]

_MAX_CUSTOMER = 256


def _jwt_subject(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return ""
    payload = token.split(".")[1]
    try:
        claims = msgspec.json.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, msgspec.DecodeError, ValueError):
        return ""
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub[:_MAX_CUSTOMER] if isinstance(sub, str) else ""


def derive_customer_id(entry: RequestEntry) -> str:
    """The entry's ``customer_id``, else ``X-Customer-ID``, else the bearer JWT's ``sub`` (unverified,
    as the SDK middleware does), else the paying wallet ``x402_payer``, else "" (anonymous)."""
    if entry.customer_id:
        return entry.customer_id
    if entry.headers:
        lower = {name.lower(): value for name, value in entry.headers.items()}
        if customer := lower.get("x-customer-id"):
            return customer[:_MAX_CUSTOMER]
        if (authorization := lower.get("authorization")) and (sub := _jwt_subject(authorization)):
            return sub
    return entry.x402_payer or ""
