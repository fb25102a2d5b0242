"""``GT8004Middleware``: logs every HTTP request of a FastAPI/Starlette (any ASGI) app.

Pure ASGI, modelled on Starlette's ``GZipMiddleware``: the instance is stateless, non-HTTP scopes
(websocket, lifespan) pass straight through, and ``receive``/``send`` are wrapped, never buffered,
so streaming responses keep streaming. The entry is built after the response is complete and
queued with ``GT8004Logger.log_fields``: nothing waits on the network, and an SDK error is logged,
never raised into the app. Exceptions of the app itself are recorded (status 500) and re-raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from .._entry import BODY_LIMIT, MAX_HEADER_VALUE, MAX_HEADERS, STR_LIMITS, clamp_headers, new_request_id, truncate_utf8
from .._logger import GT8004Logger
from ._extract import client_ip, customer_from_headers, detect_rpc, x402_fields

__all__ = ["DEFAULT_EXCLUDE_PATHS", "SENSITIVE_HEADERS", "GT8004Middleware"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_EXCLUDE_PATHS: tuple[str, ...] = (
    "/health", "/healthz", "/health/", "/readyz", "/livez", "/ready", "/metrics", "/favicon.ico",
)
# Never copied into the entry's ``headers`` (credentials and payment signatures).
SENSITIVE_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "apikey",
    "x-auth-token", "x-payment", "x-csrf-token",
})
_COUNTRY_HEADERS = ("cf-ipcountry", "x-vercel-ip-country", "cloudfront-viewer-country", "x-country")
_CITY_HEADERS = ("x-vercel-ip-city", "cf-ipcity", "x-city")
_X402_EXPLICIT = ("x-402-amount", "x-402-tx-hash", "x-402-token", "x-402-payer")
# Set lookups (``isdisjoint``) decide in one C call whether the rarer fields need any work.
_GEO_HEADERS = frozenset(_COUNTRY_HEADERS + _CITY_HEADERS)
_X402_REQUEST = frozenset(("x-payment", *_X402_EXPLICIT))
_COPIED = tuple((header, field, STR_LIMITS[field]) for header, field in (
    ("user-agent", "user_agent"), ("referer", "referer"), ("accept-language", "accept_language")))
_L_PATH, _L_METHOD, _L_TOOL, _L_ERROR = (STR_LIMITS[f] for f in ("path", "method", "tool_name", "error_type"))
_L_CTYPE, _L_COUNTRY, _L_CITY = STR_LIMITS["content_type"], STR_LIMITS["country"], STR_LIMITS["city"]


class _Capture:
    """What one request/response exchange showed; bodies kept up to the cap, sizes counted in full."""

    __slots__ = ("cap", "done_at", "req_chunks", "req_kept", "req_size", "resp_chunks", "resp_headers",
                 "resp_kept", "resp_size", "status")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.status = 0
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self.req_chunks: list[bytes] = []
        self.resp_chunks: list[bytes] = []
        self.req_kept = self.req_size = self.resp_kept = self.resp_size = 0
        self.done_at = 0.0


class GT8004Middleware:
    """ASGI middleware: ``app.add_middleware(GT8004Middleware, logger=logger, sanitize_fn=mask)``.

    ``sanitize_fn(body) -> body`` runs on request and response bodies before they are kept (an
    exception there drops the body, never the request). ``exclude_paths``: exact paths, or
    prefixes ending in ``*``, that are not logged (health and metrics paths by default).
    """

    def __init__(self, app: ASGIApp, logger: GT8004Logger | None = None,
                 sanitize_fn: Callable[[str], str] | None = None,
                 exclude_paths: Iterable[str] = DEFAULT_EXCLUDE_PATHS, *,
                 capture_bodies: bool = True, capture_headers: bool = True,
                 trust_forwarded_headers: bool = True, max_body_bytes: int = BODY_LIMIT) -> None:
        self.app = app
        self.logger = logger
        self.sanitize_fn = sanitize_fn
        paths = list(exclude_paths)
        self.exclude_exact = frozenset(p for p in paths if not p.endswith("*"))
        self.exclude_prefixes = tuple(p[:-1] for p in paths if p.endswith("*"))
        self.capture_bodies = capture_bodies
        self.capture_headers = capture_headers
        self.trust_forwarded_headers = trust_forwarded_headers
        self.max_body_bytes = min(max_body_bytes, BODY_LIMIT)

    def _skipped(self, path: str) -> bool:
        return path in self.exclude_exact or (bool(self.exclude_prefixes)
                                               and path.startswith(self.exclude_prefixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        logger = self.logger
        if (scope["type"] != "http" or logger is None or not logger.enabled
                or self._skipped(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        cap = _Capture(self.max_body_bytes if self.capture_bodies else 0)

        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                if body:
                    cap.req_size += len(body)
                    if cap.req_kept < cap.cap:
                        cap.req_chunks.append(body)
                        cap.req_kept += len(body)
            return message

        async def send_wrapper(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                cap.status = message["status"]
                cap.resp_headers = message.get("headers", [])
            elif kind == "http.response.body":
                body = message.get("body", b"")
                if body:
                    cap.resp_size += len(body)
                    if cap.resp_kept < cap.cap:
                        cap.resp_chunks.append(body)
                        cap.resp_kept += len(body)
                if not message.get("more_body", False):
                    cap.done_at = time.perf_counter()
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                logger.log_fields(self._entry(scope, cap, started, error), clamped=True)
            except Exception:  # noqa: BLE001 - the SDK must never break the host
                log.exception("gt8004: could not record a request")

    def _body(self, raw: bytes) -> str | None:
        text = raw[: self.max_body_bytes].decode("utf-8", "replace")
        if self.sanitize_fn is not None:
            try:
                text = self.sanitize_fn(text)
            except Exception:  # noqa: BLE001 - a failing sanitizer drops the body, not the request
                log.warning("gt8004: sanitize_fn raised; body not recorded", exc_info=True)
                return None
            if not isinstance(text, str):
                return None
        return truncate_utf8(text, self.max_body_bytes)

    def _entry(self, scope: Scope, cap: _Capture, started: float,
               error: BaseException | None) -> dict[str, Any]:
        """The entry's fields (the ingest API's) as a dict without None values, every string already cut
        to the gateway's limits (``encode_clamped``; a unit test holds it to ``encode_fields``).

        Runs for every request on the host's event loop: plain dict work, set lookups for the
        optional fields, no generators (about 5 µs; see bench/bench_sdk_middleware.py).
        """
        ended = cap.done_at or time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        get = headers.get
        method: str = scope.get("method", "GET")
        out: dict[str, Any] = {
            "request_id": (get("x-request-id") or "")[:128] or new_request_id(),
            "method": method[:_L_METHOD],
            "path": scope.get("path", "")[:_L_PATH],
            "status_code": cap.status or 500,
            "response_ms": round((ended - started) * 1000.0, 3),
            "request_body_size": cap.req_size,
            "response_body_size": cap.resp_size,
            "protocol": "http",
            "source": "sdk",
        }
        tool = get("x-tool-name")
        content_type = get("content-type", "")[:_L_CTYPE]
        if cap.req_chunks:
            raw = cap.req_chunks[0] if len(cap.req_chunks) == 1 else b"".join(cap.req_chunks)
            if method == "POST":
                rpc = detect_rpc(raw, content_type)
                if rpc is not None:
                    out["protocol"], out["method"], rpc_tool = rpc
                    tool = tool or rpc_tool
            if (body := self._body(raw)) is not None:
                out["request_body"] = body
        if cap.resp_chunks:
            raw = cap.resp_chunks[0] if len(cap.resp_chunks) == 1 else b"".join(cap.resp_chunks)
            if (body := self._body(raw)) is not None:
                out["response_body"] = body
        if tool is None:
            tool = (getattr(scope.get("route"), "name", None)
                    or getattr(scope.get("endpoint"), "__name__", None))
        if tool:
            out["tool_name"] = tool[:_L_TOOL]
        if error is not None:
            out["error_type"] = type(error).__name__[:_L_ERROR]
        if "x-customer-id" in headers or "authorization" in headers:
            if (customer := customer_from_headers(headers)) is not None:
                out["customer_id"] = customer
        if (ip := client_ip(headers, scope.get("client"), self.trust_forwarded_headers)) is not None:
            out["ip_address"] = ip
        for key, field, limit in _COPIED:
            if (value := get(key)) is not None:
                out[field] = value[:limit]
        resp_headers: dict[str, str] | None = None
        if content_type:
            out["content_type"] = content_type
        else:
            resp_headers = self._decode(cap.resp_headers)
            if ct := resp_headers.get("content-type"):
                out["content_type"] = ct[:_L_CTYPE]
        if not _GEO_HEADERS.isdisjoint(headers):
            for names, field, limit in ((_COUNTRY_HEADERS, "country", _L_COUNTRY), (_CITY_HEADERS, "city", _L_CITY)):
                for name in names:
                    if name in headers:
                        out[field] = headers[name][:limit]
                        break
        if self.capture_headers:
            kept = (headers if SENSITIVE_HEADERS.isdisjoint(headers)
                    else {k: v for k, v in headers.items() if k not in SENSITIVE_HEADERS})
            if len(kept) > MAX_HEADERS or max(map(len, kept.values()), default=0) > MAX_HEADER_VALUE:
                kept = clamp_headers(kept)
            out["headers"] = kept
        x402 = not _X402_REQUEST.isdisjoint(headers)
        if not x402:
            for raw_name, _ in cap.resp_headers:
                if raw_name[:2] == b"x-" and (raw_name == b"x-payment-response" or raw_name.startswith(b"x-402-")):
                    x402 = True
                    break
        if x402:
            out.update(x402_fields(headers, resp_headers or self._decode(cap.resp_headers)))
        return out

    @staticmethod
    def _decode(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
