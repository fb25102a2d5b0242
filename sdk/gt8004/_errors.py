"""The package's one root exception and its subclasses."""

from __future__ import annotations

__all__ = ["ConfigError", "GT8004Error"]


class GT8004Error(Exception):
    """Root of every exception the gt8004 package raises."""


class ConfigError(GT8004Error, ValueError):
    """An argument given to the SDK is invalid (raised at construction, never while logging)."""
