"""``@require_api_key`` for gRPC-style handlers: the key comes from ``stream.metadata``.

``stream.metadata`` may be a list of ``(key, value)`` pairs (grpclib's wire order, the seed's
``MockStream``), a mapping (grpclib's ``MultiDict``, a dict), or the stream may be a ``grpc.aio``
context with ``invocation_metadata()``. The seed's handlers then call ``stream.metadata.get("api-key", "")``
on that same object, which a plain list cannot answer: the decorator replaces a list/tuple
``stream.metadata`` by ``StreamMetadata``, a list of the same pairs that also has ``get``. Lookups of
``api-key`` and ``apikey`` answer for each other, since clients send either spelling.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, SupportsIndex, TypeVar, cast, overload

from ._client import get_billing_client
from ._errors import InvalidApiKeyError, MissingApiKeyError, NotConnectedError
from ._models import key_sha256

__all__ = ["StreamMetadata", "require_api_key"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_KEY_NAMES = ("api-key", "apikey")
MAX_API_KEY = 256


def _names(key: str) -> tuple[str, ...]:
    key = key.lower()
    return _KEY_NAMES if key in _KEY_NAMES else (key,)


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)


class StreamMetadata(list[tuple[str, str]]):
    """gRPC metadata pairs that also answer ``get``/``getall``/``[name]`` like a case-insensitive mapping."""

    def get(self, key: str, default: Any = None) -> Any:
        names = _names(key)
        for name, value in self:
            if name.lower() in names:
                return value
        return default

    def getall(self, key: str) -> list[str]:
        names = _names(key)
        return [value for name, value in self if name.lower() in names]

    def keys(self) -> list[str]:
        return [name for name, _ in self]

    def items(self) -> list[tuple[str, str]]:
        return list(self)

    # A str index is a name lookup; ints and slices stay list indexing.
    @overload
    def __getitem__(self, key: str) -> str: ...
    @overload
    def __getitem__(self, key: SupportsIndex) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, key: slice) -> list[tuple[str, str]]: ...
    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            found = self.get(key, _MISSING)
            if found is _MISSING:
                raise KeyError(key)
            return found
        return super().__getitem__(key)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return self.get(item, _MISSING) is not _MISSING
        return super().__contains__(item)


_MISSING = object()


def _pairs(metadata: Any) -> Iterable[tuple[Any, Any]]:
    if metadata is None:
        return ()
    if isinstance(metadata, Mapping):
        return cast(Iterable[tuple[Any, Any]], metadata.items())
    return ((pair[0], pair[1]) for pair in metadata if isinstance(pair, tuple | list) and len(pair) == 2)


def api_key_from(stream: Any) -> str:
    """Read ``api-key``/``apikey`` from ``stream.metadata`` (normalising a list into ``StreamMetadata``)."""
    if stream is None:
        return ""
    if hasattr(stream, "metadata"):
        metadata = stream.metadata
        if isinstance(metadata, list | tuple) and not isinstance(metadata, StreamMetadata):
            metadata = StreamMetadata((_text(k), _text(v)) for k, v in _pairs(metadata))
            try:
                stream.metadata = metadata
            except (AttributeError, TypeError):  # read-only attribute: the handler keeps the original
                logger.debug("stream.metadata is read-only; not wrapped")
    elif callable(getattr(stream, "invocation_metadata", None)):  # grpc.aio ServicerContext
        metadata = stream.invocation_metadata()
    else:
        return ""
    for name, value in _pairs(metadata):
        if _text(name).lower() in _KEY_NAMES:
            key = _text(value).strip()
            if key:
                return key
    return ""


def _stream_position(func: Callable[..., Any]) -> int:
    params = list(inspect.signature(func).parameters)
    return 1 if params and params[0] in ("self", "cls") else 0


async def _check(func: Callable[..., Any], stream: Any) -> None:
    api_key = api_key_from(stream)
    name = getattr(func, "__qualname__", repr(func))
    if not api_key:
        logger.warning("API key check failed for %s: no api-key/apikey metadata", name)
        raise MissingApiKeyError(f"{name}: API key is required (gRPC metadata 'api-key' or 'apikey')")
    if len(api_key) > MAX_API_KEY:
        raise InvalidApiKeyError(f"{name}: API key longer than {MAX_API_KEY} characters")
    client = get_billing_client()
    if client is None:
        raise NotConnectedError(f"{name}: no BillingClient to check API keys against; construct one first")
    try:
        await client.validate_api_key(api_key)
    except InvalidApiKeyError:
        logger.warning("API key check failed for %s: key %s… refused", name, key_sha256(api_key)[:12])
        raise


def require_api_key(func: F) -> F:
    """Refuse the call unless ``stream.metadata`` carries a key the billing server has not refused.

    Raises ``MissingApiKeyError`` (no key), ``InvalidApiKeyError`` (blocked, or absent from the server's full
    key list) or ``NotConnectedError`` (no ``BillingClient`` exists). Works on ``async def`` methods and
    async generator methods; the stream is the first argument after ``self`` (or ``stream=``).
    """
    position = _stream_position(func)

    def stream_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if "stream" in kwargs:
            return kwargs["stream"]
        return args[position] if len(args) > position else None

    if inspect.isasyncgenfunction(func):
        @functools.wraps(func)
        async def generator_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            await _check(func, stream_of(args, kwargs))
            async for item in func(*args, **kwargs):
                yield item

        return cast(F, generator_wrapper)
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"@require_api_key needs an async function, got {func!r}")

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        await _check(func, stream_of(args, kwargs))
        return await cast(Callable[..., Awaitable[Any]], func)(*args, **kwargs)

    return cast(F, wrapper)
