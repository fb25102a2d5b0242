"""Framework integrations; ``gt8004.middleware.fastapi.GT8004Middleware`` is pure ASGI."""

from __future__ import annotations

__all__: list[str] = []
