"""A ClickHouse HTTP endpoint for tests: the embedded engine (chDB) behind a thin protocol adapter.

This machine has no ClickHouse server (no Docker; Debian's is 18.16), and chDB lets one process open
a data directory. Tests where several worker processes insert into one database concurrently (the
``direct`` sink mode of a production deployment) run this process instead: it owns the chDB
directory and answers the part of ClickHouse's HTTP interface that ``clickhouse-connect`` uses, so the
workers are real processes with the ordinary ``http://`` DSN and the real engine does the work.

What it serves (``python -m tests.chdb_http --path DIR --port PORT``):

* ``GET /ping`` → ``Ok.``;
* ``GET|POST /`` with the SQL in the ``query`` URL parameter and/or the body, ``database`` and every
  other non-transport URL parameter applied as a session setting (``SET``) for that request only —
  so ``insert_deduplication_token`` reaches the engine as it does on a server — and ``param_*`` as
  bound query parameters;
* inserts with data (``INSERT ... FORMAT <fmt>`` followed by the data in the body, or the statement
  in ``query`` and the data as the body, plain, chunked and/or compressed) via ``FROM INFILE``;
* results in the requested ``FORMAT`` (``Native``, ``TabSeparated``, ``JSON``...), errors as status
  500 with ``X-ClickHouse-Exception-Code`` and the engine's message, as ClickHouse answers.

Requests run one at a time (one lock); each gets a fresh chDB connection handle, so session state
never leaks between requests. Not for production: no authentication, no streaming of results.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb

log = logging.getLogger("chdb_http")

_TRANSPORT = {"query", "database", "query_id", "session_id", "session_timeout", "session_check",
              "wait_end_of_query", "compress", "decompress", "enable_http_compression", "buffer_size",
              "send_progress_in_http_headers", "http_headers_progress_interval_ms", "client_protocol_version",
              "default_format", "quota_key", "role", "user", "password"}
_INSERT_DATA = re.compile(rb"^(\s*INSERT\b.*?\bFORMAT\s+(\w+))[ \t]*\r?\n", re.IGNORECASE | re.DOTALL)
_INSERT_FORMAT = re.compile(r"^(\s*INSERT\b.*?)\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_CODE = re.compile(r"Code: (\d+)")
_SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _decompress(data: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return data
    if encoding == "lz4":
        import lz4.frame

        return bytes(lz4.frame.decompress(data))
    if encoding == "zstd":
        from backports import zstd

        return bytes(zstd.decompress(data))
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "br":
        import brotli

        return bytes(brotli.decompress(data))
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class EngineError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        match = _CODE.search(message)
        self.code = match.group(1) if match else "1001"


class Engine:
    """The chDB engine of one directory; ``run`` executes one HTTP request's statement."""

    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)
        os.makedirs(self.path, exist_ok=True)
        self._anchor = chdb.connect(self.path)  # keeps the engine open between requests
        self._lock = threading.Lock()
        self.timezone = self._anchor.query("SELECT timezone()", "TabSeparated").bytes().decode().strip()
        self._spool = tempfile.mkdtemp(prefix="chdb-http-")

    def run(self, params: dict[str, str], body: bytes) -> tuple[bytes, str]:
        """(result bytes, format) of the request; raises ``EngineError`` with the engine's message."""
        settings = {k: v for k, v in params.items() if k not in _TRANSPORT and not k.startswith("param_")}
        binds = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        query = params.get("query", "")
        data: bytes | None = None
        if query and body:
            if _INSERT_FORMAT.match(query):
                data = body
            else:
                query = f"{query}\n{body.decode()}"
        elif body:
            match = _INSERT_DATA.match(body)
            if match:
                query, data = match.group(1).decode(), body[match.end():]
            else:
                query = body.decode()
        fmt = params.get("default_format", "TabSeparated")
        infile = None
        if data is not None:
            head, fmt = _INSERT_FORMAT.match(query).groups()  # type: ignore[union-attr]
            infile = os.path.join(self._spool, f"{uuid.uuid4().hex}.data")
            with open(infile, "wb") as f:
                f.write(data)
            query = f"{head} FROM INFILE {_quote(infile)} FORMAT {fmt}"
        elif (trailing := _TRAILING_FORMAT.search(query)) and not _INSERT_FORMAT.match(query):
            fmt = trailing.group(1)
            query = query[:trailing.start()]
        try:
            with self._lock:
                conn = chdb.connect(self.path)
                try:
                    if params.get("database"):
                        conn.query(f"USE `{params['database']}`")
                    for key, value in settings.items():
                        if not _SETTING.match(key):
                            raise EngineError(f"Code: 115. DB::Exception: Unknown setting {key!r}. (UNKNOWN_SETTING)")
                        conn.query(f"SET {key} = {_quote(value)}")
                    result = conn.query(query, fmt, params=binds or None) if binds else conn.query(query, fmt)
                    return (result.bytes() if result is not None else b""), fmt
                finally:
                    conn.close()
        except EngineError:
            raise
        except Exception as exc:  # chdb raises its own error type with ClickHouse's message
            raise EngineError(str(exc)) from exc
        finally:
            if infile is not None:
                os.unlink(infile)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug(format, *args)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            raw = b"".join(chunks)
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return _decompress(raw, self.headers.get("Content-Encoding", "").strip().lower())

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        url = urlsplit(self.path)
        if url.path.rstrip("/") == "/ping":
            return self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        base = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": self.server.engine.timezone}
        try:
            result, fmt = self.server.engine.run(params, self._body())
        except EngineError as exc:
            message = f"{exc}\n".encode()
            return self._reply(500, message, base | {"X-ClickHouse-Exception-Code": exc.code,
                                                     "Content-Type": "text/plain; charset=UTF-8"})
        except Exception as exc:  # noqa: BLE001 - a malformed request: answer like the server would
            return self._reply(400, f"Code: 27. DB::Exception: {exc}\n".encode(),
                               base | {"X-ClickHouse-Exception-Code": "27"})
        self._reply(200, result, base | {"X-ClickHouse-Format": fmt, "Content-Type": "application/octet-stream"})

    do_GET = do_POST = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: Engine) -> None:
        super().__init__(address, _Handler)
        self.engine = engine


class ChdbHttpProcess:
    """This adapter as a child process of a test (``start()`` waits for ``/ping``)."""

    def __init__(self, path: str, port: int, log_path: str) -> None:
        self.path, self.port, self.log_path = path, port, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def dsn(self, database: str) -> str:
        return f"http://127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> ChdbHttpProcess:
        import urllib.request

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.chdb_http", "--path", self.path,
                                          "--port", str(self.port)], cwd=root, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=1) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chdb_http did not start; see {self.log_path}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chdb_http")
    parser.add_argument("--path", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = _Server(("127.0.0.1", args.port), Engine(args.path))
    log.info("serving chDB %s on http://127.0.0.1:%d", args.path, args.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
