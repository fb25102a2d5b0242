"""What the alert tests share: a clock they move, traffic written into the raw tables (the rollups fill
from them through their materialized views), and real HTTP receivers on this machine.

A receiver is a ``ThreadingHTTPServer`` on a port of its own: it records every request (headers, raw body)
and answers with the status the test sets. ``Receiver.reserve()`` gives a URL where nothing listens yet (a
refused connection) and ``listen()`` starts answering there later: a receiver that was down for a while.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clickhouse_connect.driver.client import Client

from meterline.clickhouse import INSERT_SETTINGS

#: 10:00 on the 5th of this month: the delivery log keeps 90 days (its TTL would drop rows of a fixed old
#: date), and 27 days later is always next month.
T0 = datetime.now(UTC).replace(day=5, hour=10, minute=0, second=0, microsecond=0)
_IDS = itertools.count()


class Clock:
    """The evaluator's clock: the tests set and move it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, minutes: float) -> datetime:
        """Set the clock to ``T0`` + ``minutes`` and return it."""
        self.now = T0 + timedelta(minutes=minutes)
        return self.now


def requests(client: Client, agent: str, minutes: float | range, count: int, *, errors: int = 0,
             ms: float = 100.0, customer: str = "") -> None:
    """``count`` requests of ``agent`` in each minute ``T0 + m`` of ``minutes`` (one insert), ``errors`` of
    them 500s."""
    rows = []
    for minute in minutes if isinstance(minutes, range) else [minutes]:
        start = T0 + timedelta(minutes=minute)
        for i in range(count):
            status = 500 if i < errors else 200
            rows.append([agent, f"req-{next(_IDS)}", start + timedelta(seconds=i * 50 / max(count, 1)), status,
                         ms, int(status >= 400), customer, "sdk"])
    client.insert("request_logs", rows, column_names=["agent_id", "request_id", "event_time", "status_code",
                                                      "response_ms", "is_error", "customer_id", "source"],
                  settings=INSERT_SETTINGS)


def usage(client: Client, app: str, when: datetime, units: int, *, module: str = "llm", model: str = "gpt-4o",
          customer: str = "") -> None:
    """One usage report of ``units`` at ``when``."""
    metadata = json.dumps({"customer_id": customer}) if customer else "{}"
    client.insert("usage_events", [[app, f"rep-{next(_IDS)}", module, model, units, when, metadata]],
                  column_names=["app_id", "report_id", "module", "model", "usage", "event_time", "metadata"],
                  settings=INSERT_SETTINGS)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1; ``status`` is what it answers."""

    port: int
    status: int = 200
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @classmethod
    def reserve(cls) -> Receiver:
        """A receiver whose port nobody listens on yet: connections are refused until ``listen()``."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return cls(port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/meterline"

    def listen(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append(Received(dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature http.server uses
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
