"""Usage-limit checks for apps that report usage: "may this customer use X more?", asked of the gateway over
HTTP and cached for a few seconds.

The same checker as ``gt8004``'s (``meterline_sdk.limits``, which both SDK packages share: they never
import each other), given the gateway's URL, the app's id and one of its API keys. Optional and separate
from reporting: nothing on the reporting path (MQTT) calls it, and it has its own HTTP client. A check costs one
``GET /v1/agents/{app}/limits/check`` per (meter, unit, model, customer) and ``ttl`` seconds; within the
TTL the answer is worked out locally from the cached limits (each limit's cap and what it had used), for
any quantity. A cached answer expires early when its period ends, so a reset is seen at once. It does not
know what was used since it was fetched: the gateway's answer is itself as fresh as the usage the workers
have stored (docs/limits.md).

Failures never raise into the host: the decision is ``fail_open`` (allowed by default) with ``error`` set,
and is not cached.
"""

from __future__ import annotations

from meterline_sdk.limits import LimitChecker as _SharedChecker
from meterline_sdk.limits import LimitDecision

from ._errors import InvalidUsageError

__all__ = ["LimitChecker", "LimitDecision"]


class LimitChecker(_SharedChecker):
    """Checks one app's usage limits at ``base_url`` (the gateway, e.g. ``http://localhost:9092``); the app is
    the owner of ``api_key`` (the ``app_id`` of its usage reports)."""

    invalid = InvalidUsageError
