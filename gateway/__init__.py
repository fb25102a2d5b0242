"""Meterline gateway, the ingest path: HTTP ingest (POST /v1/ingest), API-key registry and the MQTT bridge.

Assemble with ``gateway.main.create_app``; serve with ``meterline gateway`` / ``python -m gateway``;
run a bridge replica with ``meterline bridge`` / ``python -m gateway.bridge``. With ``CLICKHOUSE_URL``
the gateway also serves the query path's read API and dashboard page: ``gateway/read_api.py`` mounts
them from ``dashboards``, the only place the gateway knows that package.
"""
