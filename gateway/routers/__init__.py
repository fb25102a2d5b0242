"""One router per resource: ``ingest`` (POST /v1/ingest) and ``health`` (/healthz, /readyz, /metrics)."""
