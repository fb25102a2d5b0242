"""Usage-limit checks: "may this customer use X more?", asked of the gateway and cached for a few seconds.

Optional and separate from logging: nothing on the logging path calls it, it has its own HTTP client,
and a check costs one ``GET /v1/agents/{agent}/limits/check`` per (meter, unit, model, customer) and
``ttl`` seconds; within the TTL the answer is worked out locally from the cached limits (each limit's
cap and what it had used), for any quantity. A cached answer expires early when its period ends, so a
reset is seen at once. It does not know what was used since it was fetched: the gateway's answer is
itself as fresh as the usage the workers have stored (docs/limits.md).

Failures never raise into the host: the decision is ``fail_open`` (allowed by default) with ``error`` set,
and is not cached.
"""

from __future__ import annotations

from meterline_sdk.limits import LimitChecker as _SharedChecker
from meterline_sdk.limits import LimitDecision

from ._errors import ConfigError

__all__ = ["LimitChecker", "LimitDecision"]


class LimitChecker(_SharedChecker):
    """Checks one agent's usage limits at ``base_url`` (the gateway, e.g. ``http://localhost:9092``); the
    checker itself is ``meterline_sdk.limits``'s, shared with ``billing_sdk``."""

    invalid = ConfigError
