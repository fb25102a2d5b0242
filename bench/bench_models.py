"""Model library choice: decode + validate a 50-entry ingest batch with msgspec vs pydantic.

Both parse the same JSON bytes into typed entries with the same constraints. Prints the per-batch
time of each and the ratio, measured in this process. Run: ``python bench/bench_models.py [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Annotated, Any, Literal

import msgspec
import orjson
from pydantic import BaseModel, Field, TypeAdapter

from schemas.events import RequestEntry, normalise_keys


class PydEntry(BaseModel):
    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    method: Annotated[str, Field(min_length=1, max_length=32)]
    path: Annotated[str, Field(max_length=2048)]
    status_code: Annotated[int, Field(ge=100, le=599)]
    response_ms: Annotated[float, Field(ge=0, le=86_400_000)]
    timestamp: str | None = None
    customer_id: Annotated[str, Field(max_length=256)] | None = None
    tool_name: Annotated[str, Field(max_length=256)] | None = None
    error_type: Annotated[str, Field(max_length=256)] | None = None
    x402_amount: Annotated[float, Field(ge=0)] | None = None
    x402_tx_hash: Annotated[str, Field(max_length=256)] | None = None
    x402_token: Annotated[str, Field(max_length=64)] | None = None
    x402_payer: Annotated[str, Field(max_length=256)] | None = None
    request_body: str | None = None
    response_body: str | None = None
    request_body_size: int | None = None
    response_body_size: int | None = None
    headers: dict[str, str] | None = None
    protocol: Literal["http", "mcp", "a2a"] | None = None
    source: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None


def make_batch(n: int = 50) -> bytes:
    entries = [{
        "request_id": str(uuid.uuid4()), "method": "POST", "path": "/api/chat", "status_code": 200,
        "response_ms": 142.5 + i, "timestamp": "2026-11-23T10:00:00Z", "customer_id": f"cust-{i % 7}",
        "tool_name": "chat_completion", "request_body": '{"message": "hello"}' * 20,
        "response_body": '{"reply": "hi"}' * 40, "x402_amount": 0.05, "x402_tx_hash": "0xabc",
        "headers": {"content-type": "application/json", "user-agent": "bench"}, "protocol": "http",
        "user_agent": "bench/1.0", "ip_address": "127.0.0.1",
    } for i in range(n)]
    return orjson.dumps({"agent_id": "agent-1", "sdk_version": "0.1.0", "entries": entries})


def run_msgspec(body: bytes) -> int:
    raw = msgspec.json.decode(body)
    return len([msgspec.convert(normalise_keys(e), RequestEntry) for e in raw["entries"]])


_PYD = TypeAdapter(PydEntry)


class TypedBatch(msgspec.Struct):
    entries: list[RequestEntry]
    agent_id: str | None = None
    sdk_version: str | None = None


class PydBatch(BaseModel):
    entries: list[PydEntry]
    agent_id: str | None = None
    sdk_version: str | None = None


_TYPED = msgspec.json.Decoder(TypedBatch)
_PYD_BATCH = TypeAdapter(PydBatch)


def typed_msgspec(body: bytes) -> int:
    return len(_TYPED.decode(body).entries)


def typed_pydantic(body: bytes) -> int:
    return len(_PYD_BATCH.validate_json(body).entries)


def run_pydantic(body: bytes) -> int:
    raw: dict[str, Any] = orjson.loads(body)
    return len([_PYD.validate_python(normalise_keys(e)) for e in raw["entries"]])


def measure(fn: Any, body: bytes, rounds: int, inner: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(inner):
            fn(body)
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, inner = (5, 50) if args.quick else (15, 200)
    body = make_batch()
    assert run_msgspec(body) == run_pydantic(body) == 50
    assert typed_msgspec(body) == typed_pydantic(body) == 50
    print(f"50-entry batch ({len(body)} bytes), decode + validate, median of {rounds}x{inner}:")
    for label, fast, slow in (
        ("whole batch typed (one call)", typed_msgspec, typed_pydantic),
        ("per entry (key normalisation, per-entry errors)", run_msgspec, run_pydantic),
    ):
        t_m = measure(fast, body, rounds, inner)
        t_p = measure(slow, body, rounds, inner)
        print(f"  {label}:")
        print(f"    msgspec : {t_m * 1e6:8.1f} us/batch  ({50 / t_m:,.0f} entries/s)")
        print(f"    pydantic: {t_p * 1e6:8.1f} us/batch  ({50 / t_p:,.0f} entries/s)")
        print(f"    ratio pydantic/msgspec = {t_p / t_m:.2f}x")


if __name__ == "__main__":
    main()
