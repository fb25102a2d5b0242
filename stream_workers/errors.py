"""The root exception of the stream workers."""

from __future__ import annotations

from meterline.errors import MeterlineError

__all__ = ["StreamWorkerError"]


class StreamWorkerError(MeterlineError):
    """Raised on purpose by the stream workers (bad settings, an unusable topic layout)."""
