"""A lean blocking HTTP/1.1 client for ``POST /v1/ingest``, run on the transport's own thread.

Why not httpx here: the worker shares the GIL with the host. ``httpx.AsyncClient`` spends about
0.7 ms of Python CPU per batch (httpcore, anyio, the event loop), and the host's requests that
arrive meanwhile wait for the GIL (+0.7..2 ms at p99). This client does one keep-alive socket,
one ``sendall`` and a small response parser: about 30 µs of GIL time per batch; socket I/O and
zlib release the GIL. httpx is still used when the caller passes ``http_transport`` or when a
proxy environment variable applies to the ingest URL (this client does not speak to proxies).

Scope, deliberately small: HTTP/1.1 over TCP or TLS (system trust store, SNI, hostname check),
``Content-Length``, chunked or read-until-close responses, keep-alive with a stale-connection
check, one overall deadline per request (connect, send and receive together). Anything odd
raises ``WireError`` (or ``OSError`` from the socket) and the connection is dropped.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

__all__ = ["Reply", "WireClient", "WireError", "proxy_for"]

MAX_HEAD = 64 * 1024          # response status line + headers
MAX_BODY = 1024 * 1024        # response body (the gateway answers with a few hundred bytes)
RECV = 65536
STALE_AFTER = 1.0             # idle seconds after which a kept-alive socket is checked before use
# Deadlines as kernel socket timeouts (SO_SNDTIMEO/SO_RCVTIMEO) on a blocking socket: with
# ``settimeout`` CPython polls before every send and recv, doubling the syscalls, and each one
# hands the GIL to the host and back. Elsewhere (Windows takes milliseconds) ``settimeout``.
KERNEL_TIMEOUTS = sys.platform.startswith("linux") or sys.platform == "darwin"
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class WireError(Exception):
    """The server's answer was not HTTP/1.x we understand, or it closed the connection early."""


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]   # lower-case names
    content: bytes


def proxy_for(url: str) -> str | None:
    """The proxy the environment sets for ``url`` (``HTTP(S)_PROXY``/``ALL_PROXY``, ``NO_PROXY``)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


class WireClient:
    """One keep-alive connection to the ingest URL; not thread-safe (the worker owns it)."""

    def __init__(self, url: str, timeout: float, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported ingest URL {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.timeout = timeout
        self._ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        self._start = f"POST {target} HTTP/1.1\r\nHost: {host}\r\n"
        self._sock: socket.socket | None = None
        self._buf = b""
        self._used_at = 0.0

    def close(self) -> None:
        sock, self._sock, self._buf = self._sock, None, b""
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def post(self, body: bytes, headers: dict[str, str]) -> Reply:
        """Send one request and read the whole answer within ``timeout`` seconds (blocking)."""
        now = time.monotonic()
        deadline = now + self.timeout
        head = (self._start + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        payload = head + body if len(body) < 65536 else None
        if self._sock is not None and now - self._used_at > STALE_AFTER and self._stale(self._sock):
            self.close()
        reused = self._sock is not None
        try:
            return self._exchange(head, body, payload, deadline)
        except _DEAD_SOCKET:
            self.close()
            if not reused:
                raise
        except BaseException:
            self.close()
            raise
        # The kept-alive connection died between our check and our request (the server's idle
        # timeout): once more on a fresh one. Safe to repeat: the batch id makes it idempotent.
        try:
            return self._exchange(head, body, payload, deadline)
        except BaseException:
            self.close()
            raise

    def _exchange(self, head: bytes, body: bytes, payload: bytes | None, deadline: float) -> Reply:
        try:
            reply = self._exchange_once(head, body, payload, deadline)
        except _WOULD_BLOCK:  # a kernel socket timeout expired
            raise TimeoutError("timed out") from None
        self._used_at = time.monotonic()
        return reply

    # -- internals ------------------------------------------------------------------------------
    @staticmethod
    def _stale(sock: socket.socket) -> bool:
        """An idle keep-alive socket that is readable was closed (or spoke out of turn)."""
        try:
            if hasattr(select, "poll"):  # no FD_SETSIZE limit (a busy host may hold >1024 fds)
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                return bool(poller.poll(0))
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _connect(self, deadline: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=_left(deadline))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
            if KERNEL_TIMEOUTS:
                sock.settimeout(None)  # blocking; ``_arm`` sets the kernel timeouts
        except BaseException:
            sock.close()
            raise
        return sock

    def _exchange_once(self, head: bytes, body: bytes, payload: bytes | None, deadline: float) -> Reply:
        sock = self._sock
        if sock is None:
            sock = self._sock = self._connect(deadline)
            self._buf = b""
        _arm(sock, deadline, socket.SO_SNDTIMEO)
        if payload is not None:
            sock.sendall(payload)
        else:  # large body: no copy of it just to prepend the head
            sock.sendall(head)
            _arm(sock, deadline, socket.SO_SNDTIMEO)
            sock.sendall(body)
        while True:
            status, headers, keep = self._read_head(sock, deadline)
            if status >= 200:
                break  # 1xx interim answers (100 Continue) carry no body: read the real one
        content = self._read_body(sock, status, headers, deadline)
        if not keep or headers.get("connection", "").lower() == "close":
            self.close()
        return Reply(status, headers, content)

    def _recv(self, sock: socket.socket, deadline: float, got_any: bool) -> bytes:
        _arm(sock, deadline, socket.SO_RCVTIMEO)
        data = sock.recv(RECV)
        if not data:
            if got_any:
                raise WireError("connection closed in the middle of the response")
            raise _Closed("connection closed before the response")
        return data

    def _read_head(self, sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bool]:
        buf = self._buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_HEAD:
                raise WireError("response head too large")
            buf += self._recv(sock, deadline, bool(buf))
        raw, self._buf = buf[:end], buf[end + 4:]
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise WireError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise WireError("malformed response header")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        keep = version == "HTTP/1.1" or headers.get("connection", "").lower() == "keep-alive"
        return int(code), headers, keep

    def _read_body(self, sock: socket.socket, status: int, headers: dict[str, str], deadline: float) -> bytes:
        if status in (204, 304):
            return b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked(sock, deadline)
        length = headers.get("content-length")
        if length is None:  # delimited by the end of the connection
            data = self._buf
            try:
                while len(data) <= MAX_BODY:
                    data += self._recv(sock, deadline, True)
            except WireError:
                self.close()
                return data
            raise WireError("response body too large")
        if not length.isdigit() or int(length) > MAX_BODY:
            raise WireError(f"bad or too large Content-Length {length[:20]!r}")
        return self._take(sock, int(length), deadline)

    def _take(self, sock: socket.socket, n: int, deadline: float) -> bytes:
        buf = self._buf
        while len(buf) < n:
            buf += self._recv(sock, deadline, True)
        self._buf = buf[n:]
        return buf[:n]

    def _line(self, sock: socket.socket, deadline: float) -> bytes:
        buf = self._buf
        while (end := buf.find(b"\r\n")) < 0:
            if len(buf) > MAX_HEAD:
                raise WireError("chunk header too large")
            buf += self._recv(sock, deadline, True)
        self._buf = buf[end + 2:]
        return buf[:end]

    def _read_chunked(self, sock: socket.socket, deadline: float) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self._line(sock, deadline).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise WireError("malformed chunk size") from None
            if size == 0:
                while self._line(sock, deadline):  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise WireError("response body too large")
            parts.append(self._take(sock, size, deadline))
            if self._take(sock, 2, deadline) != b"\r\n":
                raise WireError("malformed chunk")


class _Closed(WireError):
    """The peer closed before sending a byte of the response (maybe a stale keep-alive socket)."""


# What a kept-alive connection that the server already closed looks like when reused.
_DEAD_SOCKET = (ConnectionError, _Closed, ssl.SSLEOFError, ssl.SSLZeroReturnError)


def _arm(sock: socket.socket, deadline: float, option: int) -> None:
    """Limit the next send or recv to what is left of the deadline."""
    left = _left(deadline)
    if KERNEL_TIMEOUTS:  # a zero timeval would mean "no timeout": at least 1 µs
        sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", int(left), max(1, int(left % 1 * 1e6))))
    else:
        sock.settimeout(left)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left
