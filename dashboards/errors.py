"""The dashboards package's root exception."""

from __future__ import annotations

from meterline.errors import MeterlineError


class DashboardError(MeterlineError):
    """A dashboard request that cannot be answered: bad parameters or an unknown query."""


__all__ = ["DashboardError"]
