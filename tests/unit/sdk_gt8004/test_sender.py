"""Retry schedule and status handling of one batch, with httpx.MockTransport and a recorded sleep."""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest
from gt8004._sender import Batch, OutcomeKind, Sender, parse_retry_after


def _sender(**kw: object) -> Sender:
    return Sender(agent_id="agent-1", api_key="secret", ingest_url="http://sink/v1/ingest",
                  rand=lambda: 0.5, **kw)  # type: ignore[arg-type]


class Recorder:
    def __init__(self, statuses: list[int | Exception], headers: dict[str, str] | None = None) -> None:
        self.statuses = statuses
        self.headers = headers or {}
        self.bodies: list[dict[str, object]] = []
        self.sleeps: list[float] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        raw = request.content
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        body = orjson.loads(raw)
        self.bodies.append(body)
        step = self.statuses[min(len(self.bodies) - 1, len(self.statuses) - 1)]
        if isinstance(step, Exception):
            raise step
        payload = {"status": "accepted", "entries": len(body["entries"]), "rejected": []}
        return httpx.Response(step, json=payload, headers=self.headers)

    async def sleep(self, delay: float) -> bool:
        self.sleeps.append(delay)
        return True

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


def _batch(n: int = 3, size: int = 10) -> Batch:
    return Batch([orjson.dumps({"request_id": f"r{i}", "pad": "x" * size}) for i in range(n)])


async def test_retries_1_2_4_seconds_with_jitter_and_a_stable_batch_id() -> None:
    rec = Recorder([503, 503, 503, 503])
    batch = _batch()
    async with rec.client() as client:
        outcome = await _sender().send(client, batch, rec.sleep)
    assert outcome.kind is OutcomeKind.FAILED and outcome.status == 503
    assert rec.sleeps == pytest.approx([1.1, 2.2, 4.4])  # +20 % jitter * 0.5
    assert len(rec.bodies) == 4
    assert {b["batch_id"] for b in rec.bodies} == {batch.batch_id}


async def test_recovers_on_a_later_attempt_and_honours_retry_after() -> None:
    rec = Recorder([429, httpx.ConnectError("refused"), 202],
                   headers={"Retry-After": "3"})
    async with rec.client() as client:
        outcome = await _sender().send(client, _batch(), rec.sleep)
    assert outcome.kind is OutcomeKind.DELIVERED and outcome.accepted == 3
    assert rec.sleeps == pytest.approx([3.0, 2.2])  # Retry-After, then backoff after a network error


@pytest.mark.parametrize(("status", "kind"), [
    (400, OutcomeKind.DROPPED), (404, OutcomeKind.DROPPED), (422, OutcomeKind.DROPPED),
    (401, OutcomeKind.AUTH), (403, OutcomeKind.AUTH), (413, OutcomeKind.SPLIT)])
async def test_client_errors_are_not_retried(status: int, kind: OutcomeKind) -> None:
    rec = Recorder([status])
    async with rec.client() as client:
        outcome = await _sender().send(client, _batch(), rec.sleep)
    assert outcome.kind is kind and len(rec.bodies) == 1 and rec.sleeps == []


async def test_408_is_retried() -> None:
    rec = Recorder([408, 202])
    async with rec.client() as client:
        outcome = await _sender().send(client, _batch(), rec.sleep)
    assert outcome.kind is OutcomeKind.DELIVERED and len(rec.bodies) == 2


async def test_interrupted_wait_aborts_the_batch() -> None:
    rec = Recorder([503])

    async def stop(_delay: float) -> bool:
        return False

    async with rec.client() as client:
        outcome = await _sender().send(client, _batch(), stop)
    assert outcome.kind is OutcomeKind.ABORTED and len(rec.bodies) == 1


async def test_wire_format_is_snake_case_gzip_and_bearer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"status": "accepted", "entries": 3,
                                         "rejected": [{"index": 1, "error": "bad"}]})

    batch = _batch(3, size=1000)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        outcome = await _sender().send(client, batch, Recorder([]).sleep)
    request = seen[0]
    assert request.headers["authorization"] == "Bearer secret"
    assert request.headers["content-encoding"] == "gzip"
    body = orjson.loads(gzip.decompress(request.content))
    assert list(body) == ["agent_id", "sdk_version", "batch_id", "entries"]
    assert body["agent_id"] == "agent-1" and body["batch_id"] == batch.batch_id
    assert [e["request_id"] for e in body["entries"]] == ["r0", "r1", "r2"]
    assert outcome.rejected == [{"index": 1, "error": "bad"}]
    small = _sender().request_parts(_batch(1))
    assert "Content-Encoding" not in small[1]


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
