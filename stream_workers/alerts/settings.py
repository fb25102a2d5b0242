"""Settings of the alert evaluator in a stream worker (pydantic-settings; every field names its variable)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AlertSettings"]


class AlertSettings(BaseSettings):
    """What the evaluator reads from the environment (docs/alerts.md); tests pass keyword arguments."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    #: METERLINE_ALERTS — run the evaluator in this worker (it runs only where the worker writes ClickHouse).
    enabled: bool = Field(default=True, alias="METERLINE_ALERTS")
    #: METERLINE_ALERTS_INTERVAL_S — seconds between two evaluations (and delivery rounds).
    interval_s: float = Field(default=60.0, gt=0, le=3600, alias="METERLINE_ALERTS_INTERVAL_S")
    #: METERLINE_ALERTS_LAG_S — the request kinds' window ends at the last whole minute this many seconds
    #: before now, so a minute still being ingested does not read as a quiet one.
    lag_s: int = Field(default=60, ge=0, le=3600, alias="METERLINE_ALERTS_LAG_S")
    #: METERLINE_ALERTS_TIMEOUT_S — how long one webhook attempt may take (connect, send, answer).
    timeout_s: float = Field(default=10.0, gt=0, le=120, alias="METERLINE_ALERTS_TIMEOUT_S")
    #: METERLINE_ALERTS_RETRY_FIRST_S — the delay before the first retry; it doubles after each failure.
    retry_first_s: float = Field(default=30.0, gt=0, le=86400, alias="METERLINE_ALERTS_RETRY_FIRST_S")
    #: METERLINE_ALERTS_RETRY_MAX_S — the longest delay between two attempts.
    retry_max_s: float = Field(default=3600.0, gt=0, le=7 * 86400, alias="METERLINE_ALERTS_RETRY_MAX_S")
    #: METERLINE_ALERTS_MAX_ATTEMPTS — attempts of one delivery before it is logged as failed.
    max_attempts: int = Field(default=10, ge=1, le=100, alias="METERLINE_ALERTS_MAX_ATTEMPTS")
    #: METERLINE_ALERTS_CONCURRENCY — webhook attempts in flight at once.
    concurrency: int = Field(default=16, ge=1, le=256, alias="METERLINE_ALERTS_CONCURRENCY")
    #: METERLINE_ALERTS_ALLOW_PRIVATE_URLS — deliver to webhook hosts that resolve to loopback, private,
    #: link-local or reserved addresses. Off: an agent's key cannot make the worker POST into the services'
    #: own network (ClickHouse's HTTP interface, a metadata endpoint); turn it on for receivers on this host.
    allow_private_urls: bool = Field(default=False, alias="METERLINE_ALERTS_ALLOW_PRIVATE_URLS")
    #: METERLINE_ALERTS_LEASE_TOPIC — the one-partition topic whose partition 0 is the evaluator's lease;
    #: default "<topic prefix>alerts-lease".
    lease_topic: str | None = Field(default=None, alias="METERLINE_ALERTS_LEASE_TOPIC")
