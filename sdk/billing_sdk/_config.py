"""Broker settings: constructor arguments, deployment overrides from the environment, the TLS context.

Environment variables (read once, when the ``BillingClient`` is created, unless ``use_env=False``).
They OVERRIDE the constructor arguments: the documented examples hard-code ``"localhost", 8883`` and
placeholder credentials, and an operator must be able to point such code at the real broker without
editing it (the same way ``SSL_CERT_FILE`` changes the trusted CAs without code changes).

- ``BILLING_MQTT_HOST``: broker host name (must match the broker certificate when TLS verifies).
- ``BILLING_MQTT_PORT``: broker port (8883 TLS by default, 1883 for plain MQTT).
- ``BILLING_MQTT_USERNAME`` / ``BILLING_MQTT_PASSWORD``: broker login.
- ``BILLING_MQTT_CA_FILE``: PEM file of the CA(s) that signed the broker certificate.

Turning TLS or certificate verification off is deliberately NOT possible from the environment: it must be
asked for in code (``tls=False`` / ``insecure=True``). ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` (OpenSSL's own
variables) are honoured on the default path, which uses ``ssl.create_default_context()``.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ._errors import BillingError

__all__ = ["ENV_VARS", "BrokerConfig", "apply_env", "make_ssl_context"]

logger = logging.getLogger(__name__)

ENV_VARS = {
    "host": "BILLING_MQTT_HOST",
    "port": "BILLING_MQTT_PORT",
    "username": "BILLING_MQTT_USERNAME",
    "password": "BILLING_MQTT_PASSWORD",
    "ca_file": "BILLING_MQTT_CA_FILE",
}


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int
    username: str | None
    password: str | None = None
    ca_file: str | None = None
    tls: bool = True
    insecure: bool = False

    def __repr__(self) -> str:  # never print the password
        return (f"BrokerConfig(host={self.host!r}, port={self.port}, username={self.username!r}, "
                f"tls={self.tls}, insecure={self.insecure}, ca_file={self.ca_file!r})")


def apply_env(config: BrokerConfig, environ: Mapping[str, str] | None = None) -> BrokerConfig:
    """Return ``config`` with the ``BILLING_MQTT_*`` variables that are set (non-empty) applied."""
    env = os.environ if environ is None else environ
    changes: dict[str, object] = {}
    for name, var in ENV_VARS.items():
        value = env.get(var, "")
        if not value:
            continue
        if name == "port":
            try:
                port = int(value)
            except ValueError:
                raise BillingError(f"{var} must be a port number, got {value!r}") from None
            if not 0 < port < 65536:
                raise BillingError(f"{var} must be a port number, got {value!r}")
            changes[name] = port
        else:
            changes[name] = value
    if changes:
        logger.info("billing broker settings overridden from the environment: %s",
                    ", ".join(ENV_VARS[name] for name in changes))
    return replace(config, **changes)  # type: ignore[arg-type]  # keys are BrokerConfig fields


def make_ssl_context(config: BrokerConfig) -> ssl.SSLContext | None:
    """TLS 1.2+ client context; verifies the broker unless ``insecure``. ``None`` means plain MQTT."""
    if not config.tls:
        return None
    if config.insecure:
        logger.warning("billing MQTT TLS certificate verification is OFF (insecure=True)")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        try:
            # cafile=None loads the default trust store, which honours SSL_CERT_FILE / SSL_CERT_DIR.
            ctx = ssl.create_default_context(cafile=config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise BillingError(f"cannot load the CA file {config.ca_file!r}: {exc}") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
