"""The lean HTTP/1.1 client of the transport against a scripted socket server on a free port."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from gt8004 import GT8004Logger
from gt8004._config import TransportConfig
from gt8004._transport import Transport
from gt8004._wire import WireClient, WireError, proxy_for

from meterline.local.mosquitto import make_certificates
from tests.waiting import wait_until

OK = b'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"entries": 3 }\n'


class Scripted:
    """Answers request i with ``script[i]``: raw bytes, then ``close`` (drop the connection after
    answering), ``hang`` (never answer) or ``reset`` (close without answering)."""

    def __init__(self, script: list[bytes | str], tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed = 0  # connections this server has closed
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{self.port}/v1/ingest?x=1"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError:  # the client refused our certificate
                    conn.close()
                    continue
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        finally:
            self.closed += 1

    def _answer(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(buf) < length:
                    buf += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buf[:length])
                buf = buf[length:]
                step = self.script[min(len(self.requests) - 1, len(self.script) - 1)]
                if step == "hang":
                    self.stop.wait(10)
                    return
                if step == "reset":
                    return
                if isinstance(step, bytes):
                    conn.sendall(step)
                if len(self.script) > len(self.requests) and self.script[len(self.requests)] == "close":
                    self.script.pop(len(self.requests))
                    return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def server() -> Scripted:
    return Scripted([OK])


def test_keep_alive_sends_the_request_as_given(server: Scripted) -> None:
    client = WireClient(server.url, timeout=2.0)
    for i in range(3):
        reply = client.post(b'{"n":%d}' % i, {"Authorization": "Bearer k", "Content-Encoding": "gzip"})
        assert reply.status == 202 and reply.content == b'{"entries": 3 }\n'
        assert reply.headers["content-type"] == "application/json"
    client.close()
    server.close()
    assert server.connections == 1  # one kept-alive connection for all three
    head, _, body = server.requests[2].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/ingest?x=1 HTTP/1.1" and f"Host: 127.0.0.1:{server.port}" in lines
    assert "Authorization: Bearer k" in lines and "Content-Length: 7" in lines and body == b'{"n":2}'


def test_chunked_and_close_delimited_answers() -> None:
    chunked = (b"HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
    until_close = b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy"
    server = Scripted([chunked, until_close, "close", OK])
    client = WireClient(server.url, timeout=2.0)
    reply = client.post(b"{}", {})
    assert (reply.status, reply.content, reply.headers["retry-after"]) == (429, b"hello world", "3")
    reply = client.post(b"{}", {})
    assert (reply.status, reply.content) == (503, b"busy")
    assert client.post(b"{}", {}).status == 202  # a new connection after the close-delimited body
    server.close()
    assert server.connections == 2


@pytest.mark.parametrize("stale_after", [0.0, 1.0])  # checked before use, or found out by the send
def test_a_connection_closed_by_the_server_is_replaced(stale_after: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gt8004._wire.STALE_AFTER", stale_after)
    server = Scripted([OK, "close", OK])  # the server drops the kept-alive connection while idle
    client = WireClient(server.url, timeout=2.0)
    assert client.post(b"{}", {}).status == 202
    wait_until(lambda: server.closed == 1, 5, "the server to close the kept-alive connection")
    assert client.post(b"{}", {}).status == 202
    server.close()
    assert server.connections == 2 and len(server.requests) == 2
    # ... or just as the request goes out: sent once more on a fresh connection, once
    server = Scripted([OK, "reset", OK])
    client = WireClient(server.url, timeout=2.0)
    assert client.post(b"{}", {}).status == 202
    assert client.post(b"{}", {}).status == 202
    server.close()
    assert server.connections == 2 and len(server.requests) == 3
    server = Scripted(["reset"])
    client = WireClient(server.url, timeout=2.0)
    with pytest.raises(WireError):  # a fresh connection that fails is not retried here
        client.post(b"{}", {})
    server.close()
    assert len(server.requests) == 1


def test_the_request_timeout_covers_the_whole_exchange() -> None:
    server = Scripted(["hang"])
    client = WireClient(server.url, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.post(b"{}", {})
    assert 0.25 <= time.monotonic() - started < 1.0
    server.close()


def test_refused_reset_and_garbage_raise() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        WireClient(f"http://127.0.0.1:{port}/v1/ingest", timeout=1.0).post(b"{}", {})
    server = Scripted(["reset"])
    with pytest.raises(WireError):
        WireClient(server.url, timeout=1.0).post(b"{}", {})
    server.close()
    server = Scripted([b"SSH-2.0-OpenSSH\r\n\r\n"])
    with pytest.raises(WireError, match="not an HTTP"):
        WireClient(server.url, timeout=1.0).post(b"{}", {})
    server.close()
    with pytest.raises(ValueError):
        WireClient("ftp://host/x", timeout=1.0)


def test_httpx_is_used_behind_a_proxy_or_with_a_custom_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "http://ingest.example:9092/v1/ingest"
    config = TransportConfig()
    plain = Transport(agent_id="a", api_key="k", ingest_url=url, config=config)
    assert isinstance(plain.new_client(), WireClient)
    custom = Transport(agent_id="a", api_key="k", ingest_url=url, config=config,
                       http_transport=httpx.MockTransport(lambda r: httpx.Response(202)))
    assert isinstance(custom.new_client(), httpx.AsyncClient)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.local:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    assert proxy_for(url) == "http://proxy.local:3128"
    assert proxy_for("http://localhost:9092/v1/ingest") is None
    assert isinstance(plain.new_client(), httpx.AsyncClient)


def test_https_verifies_the_server_certificate(tmp_path: Path) -> None:
    make_certificates(tmp_path, ("localhost",))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    server = Scripted([OK], tls=server_ctx)
    trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    client = WireClient(server.url, timeout=5.0, ssl_context=trusted)
    assert client.post(b"{}", {}).status == 202 and client.post(b"{}", {}).status == 202
    with pytest.raises(ssl.SSLCertVerificationError):  # the system trust store does not know our CA
        WireClient(server.url, timeout=5.0).post(b"{}", {})
    server.close()
    assert server.connections == 2 and len(server.requests) == 2


def idle_in_its_wait(logger: GT8004Logger) -> bool:
    """Is the transport's worker thread parked in its event loop's selector, its client made?

    Nothing else puts it there: after ``_client_ready`` the worker only awaits its wake-up event
    (one entry logged sends no wake-up) or sends, and a send blocks in a socket, not in the selector.
    The SDK exposes no such state, so the test looks at the thread's current frame.
    """
    transport = logger.transport
    thread, ready = transport._worker.thread, transport._worker._client_ready
    if thread is None or thread.ident is None or ready is None or not ready.is_set():
        return False
    frame = sys._current_frames().get(thread.ident)
    return frame is not None and frame.f_code.co_filename.endswith("selectors.py")


async def test_ping_and_close_reach_a_worker_blocked_in_its_idle_wait() -> None:
    """The worker blocks on a threading.Event between batches; verify_connection (run on the
    worker's loop) and close must still get through promptly, over the real wire client."""
    server = Scripted([OK])
    logger = GT8004Logger("a", "k", server.url, flush_interval=60.0)
    assert await logger.log({"request_id": "r1", "method": "GET", "path": "/", "status_code": 200,
                             "response_ms": 1.0})
    wait_until(lambda: idle_in_its_wait(logger), 5, "the worker to wait out the 60 s age limit")
    started = time.monotonic()
    assert await logger.verify_connection(timeout=5.0)
    assert await logger.verify_connection(timeout=5.0)
    await logger.close(timeout=5.0)
    assert time.monotonic() - started < 1.0
    server.close()
    assert [b'"sdk_ping"' in r for r in server.requests] == [True, True, False]  # then the entry at close
    assert logger.stats().delivered == 1 and not logger.stats().dropped  # pings are not entries
