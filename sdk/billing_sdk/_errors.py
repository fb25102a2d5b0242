"""The billing SDK's exceptions: one root, ``BillingError``, so callers can catch everything we raise."""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BillingError",
    "BrokerConnectionError",
    "InvalidApiKeyError",
    "InvalidUsageError",
    "MissingApiKeyError",
    "NotConnectedError",
    "TlsVerificationError",
]


class BillingError(Exception):
    """Root of every exception raised by ``billing_sdk``."""


class InvalidApiKeyError(BillingError):
    """The API key was announced as blocked by the billing server, or is absent from its full key list."""


class MissingApiKeyError(InvalidApiKeyError):
    """The call carried no ``api-key`` / ``apikey`` metadata (or an empty one)."""


class InvalidUsageError(BillingError, ValueError):
    """A usage report breaks the protocol's limits (empty module, negative usage, oversize metadata...)."""


class NotConnectedError(BillingError):
    """No ``BillingClient`` exists yet, or it was shut down."""


class BrokerConnectionError(BillingError):
    """The MQTT broker could not be reached within the connect timeout (network, refused, TLS...)."""


class AuthenticationError(BrokerConnectionError):
    """The broker refused the login (bad user name or password, not authorised). Retrying cannot help."""


class TlsVerificationError(BrokerConnectionError):
    """The broker's TLS certificate did not verify. Pass ``ca_file=...`` (or set ``SSL_CERT_FILE``)."""
