"""The floor every Meterline path stands on: errors, paths, settings of the local stack, the ClickHouse
client and its migrations, Kafka administration, the one retry loop, fault-injection points, and the
local infrastructure (``meterline.local``: Kafka from Maven Central and Mosquitto as child processes).

The three paths — ``gateway`` (ingest), ``stream_workers`` (processing), ``dashboards`` (query) — import
this package; it imports only ``schemas`` below it, never them. The ``meterline`` command is
``meterline_cli``, on top.
"""

from meterline.errors import ConfigError, InfrastructureError, MeterlineError

__all__ = ["ConfigError", "InfrastructureError", "MeterlineError"]
