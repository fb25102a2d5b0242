"""Meterline server runtime: configuration, local infrastructure and storage helpers.

The processing code lives in ``gateway`` (write edge), ``stream_workers`` (processing path) and
``schemas`` (shared data); this package holds what they and the ``meterline`` command share.
"""

from meterline.errors import ConfigError, InfrastructureError, MeterlineError

__all__ = ["ConfigError", "InfrastructureError", "MeterlineError"]
