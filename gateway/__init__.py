"""Meterline gateway: HTTP ingest (POST /v1/ingest), API-key registry and the MQTT billing bridge.

Assemble with ``gateway.main.create_app``; serve with ``meterline gateway`` / ``python -m gateway``;
run a bridge replica with ``meterline bridge`` / ``python -m gateway.bridge``.
"""
