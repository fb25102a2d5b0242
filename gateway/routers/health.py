"""``/healthz`` (process up), ``/readyz`` (Kafka reachable, keys loaded), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.deps import RuntimeDep
from gateway.runtime import GatewayRuntime

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Kafka is reachable and the key registry is loaded",
            responses={503: {"description": "not ready", "content": {"application/json": {
                "example": {"status": "not ready", "kafka": False, "keys": True}}}}})
async def readyz(runtime: RuntimeDep, response: Response) -> dict[str, object]:
    ready, parts = await readiness(runtime)
    if not ready:
        response.status_code = 503
    return {"status": "ready" if ready else "not ready", **parts}


async def readiness(runtime: GatewayRuntime) -> tuple[bool, dict[str, object]]:
    """Whether ``runtime`` can take ingest (Kafka answers, keys loaded, the bridge connected if it runs),
    and each part's state (``/readyz``; the ingest front reports its own the same way)."""
    kafka = runtime.started and runtime.producer.available and await runtime.producer.probe()
    keys = runtime.registry.loaded
    bridge = runtime.bridge.connected if runtime.bridge is not None else None
    parts: dict[str, object] = {"kafka": kafka, "keys": keys}
    if bridge is not None:
        parts["mqtt"] = bridge
    return kafka and keys and bridge is not False, parts


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)


__all__ = ["readiness", "router"]
