"""The ``meterline`` command: the one package allowed to import every other.

Each area keeps its own subcommands beside its code and exposes a ``register(subparsers)``:
``gateway.cli`` (gateway, bridge, keys), ``stream_workers.cli`` (worker), ``dashboards.cli`` (sql,
dashboard, export). This package adds what belongs to no single area — the local infrastructure
(``infra``), the whole stack in one process (``stack``: ``meterline up``) and the sample traffic
(``demo``) — and assembles the parser (``main``).
"""
