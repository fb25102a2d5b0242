"""Exceptions of the gateway package; ``GatewayError`` is the root.

Each error that ends an HTTP request carries the status code and a machine-readable ``code`` so
the routers can answer uniformly (``{"error": code, "detail": message}``).
"""

from __future__ import annotations

from meterline.errors import MeterlineError


class GatewayError(MeterlineError):
    """Root of the errors the gateway raises on purpose."""

    status_code: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class KafkaUnavailable(GatewayError):
    """Kafka did not acknowledge in time; nothing may be reported as accepted."""

    status_code = 503
    code = "kafka_unavailable"


class AuthError(GatewayError):
    """The caller could not be authenticated (401) or is not allowed (403)."""

    status_code = 401
    code = "unauthorized"


class MissingKey(AuthError):
    code = "missing_key"


class UnknownKey(AuthError):
    code = "unknown_key"


class RevokedKey(AuthError):
    status_code = 403
    code = "revoked_key"


class Forbidden(AuthError):
    status_code = 403
    code = "forbidden"


class IngestRefused(GatewayError):
    """The request body cannot be accepted at all (400 malformed, 413 too large, 415 ...)."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, status_code: int = 400, code: str = "bad_request") -> None:
        super().__init__(message, code=code)
        self.status_code = status_code


class RateLimited(GatewayError):
    """The key used up its ingest rate; ``retry_after`` seconds until a call would pass."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegistryError(GatewayError):
    """The API-key registry could not be loaded or updated."""

    code = "registry"


__all__ = [
    "AuthError",
    "Forbidden",
    "GatewayError",
    "IngestRefused",
    "KafkaUnavailable",
    "MissingKey",
    "RateLimited",
    "RegistryError",
    "RevokedKey",
    "UnknownKey",
]
