"""The SDK version sent with every batch (``sdk_version``)."""

from __future__ import annotations

__all__ = ["SDK_VERSION"]

SDK_VERSION = "meterline-gt8004/0.1.0"
