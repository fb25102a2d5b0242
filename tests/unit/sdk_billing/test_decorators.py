"""``@require_api_key`` and ``StreamMetadata``: gRPC-style metadata in every shape the seed and servers use."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from billing_sdk import (
    BillingClient,
    InvalidApiKeyError,
    MissingApiKeyError,
    NotConnectedError,
    StreamMetadata,
    require_api_key,
)


class Stream:
    def __init__(self, metadata: Any) -> None:
        self.metadata = metadata


class Context:  # grpc.aio ServicerContext shape
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self._pairs


class Service:
    @require_api_key
    async def call(self, stream: Any, data: str) -> str:
        return f"{data}:{stream.metadata.get('api-key', '')}" if hasattr(stream, "metadata") else data

    @require_api_key
    async def stream_out(self, stream: Any) -> AsyncIterator[int]:
        for i in range(3):
            yield i


@pytest.fixture
def client() -> BillingClient:
    """Built outside the event loop, so it does not start connecting (no network in unit tests)."""
    return BillingClient("localhost", 8883, "u", "p")


def _announce(client: BillingClient, keys: dict[str, str], *, full: bool = False) -> None:
    updates = [{"app_id": "app", "api_key_sha256": hashlib.sha256(k.encode()).hexdigest(), "status": s}
               for k, s in keys.items()]
    client._on_message("billing/keys/update", orjson.dumps({"updates": updates, "timestamp": 1, "full": full}))


def test_stream_metadata_is_a_list_with_mapping_lookups() -> None:
    md = StreamMetadata([("api-key", "k1"), ("x-trace", "t"), ("x-trace", "u")])
    assert md.get("api-key", "") == "k1" and md.get("APIKEY") == "k1" and md.get("nope", "d") == "d"
    assert md["x-trace"] == "t" and md.getall("x-trace") == ["t", "u"]
    assert md[0] == ("api-key", "k1") and md[1:2] == [("x-trace", "t")]
    assert list(md) == [("api-key", "k1"), ("x-trace", "t"), ("x-trace", "u")]
    assert dict(md)["api-key"] == "k1"
    assert "apikey" in md and ("x-trace", "u") in md and "nope" not in md
    assert md.keys() == ["api-key", "x-trace", "x-trace"]
    with pytest.raises(KeyError):
        md["nope"]


@pytest.mark.parametrize("metadata", [
    [("api-key", "k1")], (("apikey", "k1"),), {"api-key": "k1"}, {"apikey": "k1"}, [("API-KEY", b"k1")],
])
async def test_key_read_from_each_metadata_shape(metadata: Any, client: BillingClient) -> None:
    assert (await Service().call(Stream(metadata), "x")).startswith("x:")


async def test_list_metadata_answers_get_inside_the_handler(client: BillingClient) -> None:
    stream = Stream([("apikey", "k1")])  # the other spelling: .get("api-key") still finds it
    assert await Service().call(stream, "x") == "x:k1"
    assert isinstance(stream.metadata, StreamMetadata)


async def test_grpc_aio_context_and_keyword_stream(client: BillingClient) -> None:
    assert await Service().call(Context([("api-key", "k1")]), "x") == "x"
    assert await Service().call(stream=Stream([("api-key", "k1")]), data="y") == "y:k1"


@pytest.mark.parametrize("metadata", [[], [("api-key", "")], [("api-key", "   ")], {"other": "v"}, None])
async def test_missing_key(metadata: Any, client: BillingClient) -> None:
    with pytest.raises(MissingApiKeyError, match="API key is required"):
        await Service().call(Stream(metadata), "x")


async def test_blocked_and_unknown_keys(client: BillingClient) -> None:
    _announce(client, {"good": "ok", "bad": "blocked"})
    with pytest.raises(InvalidApiKeyError, match="blocked"):
        await Service().call(Stream([("api-key", "bad")]), "x")
    assert await Service().call(Stream([("api-key", "new")]), "x") == "x:new"  # unknown yet: let through
    _announce(client, {"good": "ok"}, full=True)
    with pytest.raises(InvalidApiKeyError, match="unknown"):
        await Service().call(Stream([("api-key", "new")]), "x")
    assert not client.is_key_valid("new") and client.is_key_valid("good") and not client.is_key_valid("")


async def test_async_generator_handlers_are_checked(client: BillingClient) -> None:
    assert [i async for i in Service().stream_out(Stream([("api-key", "k")]))] == [0, 1, 2]
    with pytest.raises(MissingApiKeyError):
        [i async for i in Service().stream_out(Stream([]))]


async def test_no_client_fails_closed() -> None:
    with pytest.raises(NotConnectedError, match="no BillingClient"):
        await Service().call(Stream([("api-key", "k")]), "x")


def test_sync_functions_are_refused() -> None:
    with pytest.raises(TypeError, match="async"):
        require_api_key(lambda stream: None)
