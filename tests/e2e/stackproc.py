"""`meterline up` as a user runs it, in a subprocess: its own home and free ports, output captured.

``StackHome`` owns a METERLINE_HOME and a set of ports, so a second ``launch()`` runs the stack
again on the same data. ``launch()`` returns a ``StackProcess`` once the banner ("Ctrl-C stops
everything") is printed; it reads the printed API key, knows the pids of the stack's Kafka and
Mosquitto (from their pid files) and waits for output lines without polling.
``IngestLoad`` is an HTTP client of the stack that resends a batch until it gets a 202, as the SDK
does, and records which entries were acknowledged.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from meterline.local.ports import free_port
from meterline.paths import cache_home

BANNER_END = "Ctrl-C stops everything."
OPERATOR_TOKEN = "e2e-operator-token"  # noqa: S105 - a test stack's operator token
AGENT = "demo-agent"
_KEY = re.compile(rf"API key for agent {AGENT} \(shown once, store it now\): (\S+)")


class StackHome:
    """A METERLINE_HOME with fixed ports, for one or more runs of `meterline up`.

    ``user_home=True`` runs the stack as a user's `make up` does: no METERLINE_HOME and no operator token
    in the environment, so the stack uses the default home under ``$HOME`` (a fresh directory, ``user``,
    whose Kafka download cache is the machine's) and makes its own operator token there.
    """

    def __init__(self, *, user_home: bool = False, **extra_env: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="meterline-e2e-life-"))
        self.user = self.root / "user"  # $HOME when user_home
        self.path = self.user / ".local" / "share" / "meterline" if user_home else self.root
        self.ports = {name: free_port() for name in ("kafka", "ctrl", "mqtt", "mqtts", "gateway", "web")}
        self.api_key: str | None = None
        self.env = dict(
            os.environ,
            METERLINE_HOME=str(self.path),
            METERLINE_KAFKA_PORT=str(self.ports["kafka"]),
            METERLINE_KAFKA_CONTROLLER_PORT=str(self.ports["ctrl"]),
            METERLINE_MQTT_PORT=str(self.ports["mqtt"]),
            METERLINE_MQTT_TLS_PORT=str(self.ports["mqtts"]),
            METERLINE_GATEWAY_PORT=str(self.ports["gateway"]),
            METERLINE_WORKER_WEB_PORT=str(self.ports["web"]),
            METERLINE_OPERATOR_TOKEN=OPERATOR_TOKEN,
            METERLINE_SINK_INTERVAL_S="0.5",
            PYTHONUNBUFFERED="1",
            **extra_env,
        )
        for name in ("KAFKA_BOOTSTRAP_SERVERS", "MQTT_URL", "CLICKHOUSE_URL", "METERLINE_TOPIC_PREFIX"):
            self.env.pop(name, None)
        if user_home:
            for name in ("METERLINE_HOME", "METERLINE_OPERATOR_TOKEN", "METERLINE_CACHE"):
                self.env.pop(name, None)
            self.env["HOME"] = str(self.user)
            (self.user / ".cache").mkdir(parents=True)
            (self.user / ".cache" / "meterline").symlink_to(cache_home(), target_is_directory=True)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def launch(self, timeout: float = 180) -> StackProcess:
        """Start `meterline up` here and wait for its banner (AssertionError with the output if none)."""
        proc = subprocess.Popen([sys.executable, "-m", "meterline_cli", "up"], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parents[2])
        stack = StackProcess(proc, self)
        try:
            stack.wait_for_line(BANNER_END, timeout)
        except AssertionError:
            stack.kill()
            raise
        match = _KEY.search(stack.output())
        if match:
            self.api_key = match.group(1)
        assert self.api_key, stack.output()[-3000:]
        return stack

    def child_pids(self) -> dict[str, int]:
        """Pids named by the pid files of the stack's Kafka and Mosquitto (those that exist)."""
        pids = {}
        for name, path in (("kafka", self.path / "kafka" / "kafka.pid"),
                           ("mosquitto", self.path / "mosquitto" / "mosquitto.pid")):
            if path.exists():
                pids[name] = int(path.read_text().split()[0])  # "<pid> <owner pid>"
        return pids

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class StackProcess:
    """One running `meterline up`; ``lines`` grows as it prints."""

    proc: subprocess.Popen[str]
    home: StackHome
    lines: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, name="stack-output", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # end of output
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float, start: int = 0) -> str:
        """The first line from index ``start`` on that contains ``text``."""
        def found() -> str | None:
            for line in self.lines[start:]:
                if text in line:
                    return line
            return "" if self.lines and self.lines[-1] == "" else None  # the process ended

        with self._changed:
            line = self._changed.wait_for(found, timeout)
        assert line, f"no line with {text!r} within {timeout}s; output:\n{self.output()[-4000:]}"
        return line

    def mark(self) -> int:
        """Index of the next line to be printed (for ``wait_for_line(..., start=mark)``)."""
        with self._changed:
            return len(self.lines)

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 30) -> tuple[int, float]:
        """Send ``sig`` and wait for the exit; return the exit code and the seconds it took."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        took = time.monotonic() - started
        with self._changed:  # all of its output read
            self._changed.wait_for(lambda: self.lines and self.lines[-1] == "", 10)
        return code, took

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def front_pid(self) -> int | None:
        """The pid of the stack's ingest front (``python -m gateway.front``, a child of the stack)."""
        children = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):  # spawned from the spawner thread
            try:
                children += (task / "children").read_text().split()
            except OSError:
                continue
        for child in children:
            try:
                if b"gateway.front" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
            except OSError:
                continue
        return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs; return those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in pids if pid_alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def kill_quietly(pid: int) -> None:
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return


class IngestLoad:
    """Batches of unique entries posted by ``clients`` threads; each batch is resent until 202."""

    def __init__(self, home: StackHome, prefix: str, clients: int = 3, batch: int = 20,
                 pause: float = 0.02) -> None:
        self.home = home
        self.prefix = prefix
        self.batch = batch
        self.pause = pause
        self.acknowledged: set[str] = set()
        self.statuses: list[int | str] = []  # HTTP status, or the name of a connection error
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]
        self.give_up_after = 240.0  # a batch still refused this long after stop() fails the test

    def start(self) -> IngestLoad:
        for thread in self._threads:
            thread.start()
        return self

    def _client(self, n: int) -> None:
        try:
            self._send_batches(n)
        except BaseException as exc:
            self.errors.append(exc)
            with self._changed:
                self._changed.notify_all()

    def _send_batches(self, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.home.api_key}"}
        number = 0
        with httpx.Client(base_url=self.home.gateway, headers=headers, timeout=15) as http:
            while not self._stop.is_set():
                ids = [f"{self.prefix}-c{n}-b{number}-e{i}" for i in range(self.batch)]
                body = {"entries": [{"request_id": i, "method": "GET", "path": "/load", "status_code": 200,
                                     "response_ms": 1.0, "customer_id": "load"} for i in ids]}
                self._send_until_accepted(http, body, ids)
                number += 1
                time.sleep(self.pause)  # paces the load

    def _send_until_accepted(self, http: httpx.Client, body: dict[str, Any], ids: list[str]) -> None:
        deadline: float | None = None
        while True:
            try:
                status: int | str = http.post("/v1/ingest", json=body).status_code
            except httpx.TransportError as exc:  # the stack is down or restarting
                status = type(exc).__name__
            with self._changed:
                self.statuses.append(status)
                if status == 202:
                    self.acknowledged.update(ids)
                self._changed.notify_all()
            if status == 202:
                return
            assert status == 503 or isinstance(status, str), f"unexpected answer {status}"
            if self._stop.is_set():
                deadline = deadline or time.monotonic() + self.give_up_after
                if time.monotonic() > deadline:
                    raise AssertionError(f"batch {ids[0]} still refused {self.give_up_after}s after the stop")
            time.sleep(0.2)  # the client's retry delay (Retry-After), not a wait for a condition

    def wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        """Wait until ``predicate(self)`` holds (checked on every response)."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.errors or predicate(self), timeout), \
                f"timed out waiting for {what}; statuses {self.statuses[-20:]}"
        assert not self.errors, self.errors

    def stop(self, timeout: float = 300) -> None:
        """Send no new batch; return once every batch sent was acknowledged."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a load client did not finish"
        assert not self.errors, self.errors


def sql(home: StackHome, query: str, **params: str) -> list[list[Any]]:
    """Run one read-only statement through the stack's operator endpoint."""
    resp = httpx.post(f"{home.gateway}/v1/sql", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                      json={"query": query, "params": params, "max_rows": 100_000}, timeout=60)
    assert resp.status_code == 200, resp.text
    rows: list[list[Any]] = resp.json()["rows"]
    return rows


def stored_ids(home: StackHome, prefix: str) -> list[str]:
    """Every stored request id of the load with ``prefix`` (duplicates included)."""
    rows = sql(home, "SELECT request_id FROM request_logs WHERE agent_id = {agent:String} "
                     "AND startsWith(request_id, {prefix:String})", agent=AGENT, prefix=f"{prefix}-")
    return [row[0] for row in rows]


def consumer_lag(home: StackHome) -> float:
    """The worker's total consumer lag, from the stack's /metrics."""
    text = httpx.get(f"{home.gateway}/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("meterline_worker_consumer_lag{"))


def wait_stored(home: StackHome, prefix: str, count: int, timeout: float) -> list[str]:
    """Poll until ``count`` rows of the load are stored and the worker has no lag; return the ids.

    Returns what is stored at the timeout otherwise (the caller's assertion shows the difference).
    """
    deadline = time.monotonic() + timeout
    while True:
        ids = stored_ids(home, prefix)
        if (len(ids) >= count and consumer_lag(home) == 0) or time.monotonic() > deadline:
            return stored_ids(home, prefix)
        time.sleep(0.5)
