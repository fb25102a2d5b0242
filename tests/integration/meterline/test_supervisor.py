"""The supervisor restarts a crashed service with backoff, says so, and gives up clearly (real Mosquitto)."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterline.local.mosquitto import LocalMosquitto
from meterline.local.ports import free_port, wait_for_port
from meterline.local.supervisor import Supervisor


class Lines:
    """The supervisor's ``say`` lines, and an event per awaited phrase (no polling in the test)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._seen = threading.Condition(self._lock)

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)
            self._seen.notify_all()

    def wait_for(self, phrase: str, timeout: float) -> str:
        with self._lock:
            found = self._seen.wait_for(lambda: [x for x in self.lines if phrase in x], timeout)
        assert found, f"no line with {phrase!r} within {timeout}s: {self.lines}"
        return found[0]


@pytest.fixture
def mosquitto(tmp_dir: Path) -> Iterator[LocalMosquitto]:
    broker = LocalMosquitto(tmp_dir / "m", port=free_port(), tls_port=free_port()).start()
    try:
        yield broker
    finally:
        broker.stop()


def _crash(service: LocalMosquitto) -> int:
    """SIGKILL the service process and wait until it is dead (not reaped: that is the supervisor's)."""
    pid = service.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    return pid


def test_a_crashed_service_is_restarted_with_one_clear_line(mosquitto: LocalMosquitto) -> None:
    say = Lines()
    supervisor = Supervisor({"Mosquitto": mosquitto}, backoff=0.05, say=say).start()
    try:
        old = _crash(mosquitto)
        say.wait_for("is running again", 15)
    finally:
        supervisor.stop()
    assert say.lines == ["Mosquitto exited (code -9); restarting in 0.05s (attempt 1 of 5)",
                         "Mosquitto is running again"]
    assert mosquitto.running and mosquitto.pid != old
    wait_for_port("127.0.0.1", mosquitto.port, 5, "Mosquitto")
    assert supervisor.gave_up is None


def test_a_stopped_supervisor_leaves_a_stopped_service_alone(mosquitto: LocalMosquitto) -> None:
    """The order of a clean stop: supervisor first, then the services, which must stay stopped."""
    say = Lines()
    supervisor = Supervisor({"Mosquitto": mosquitto}, backoff=0.05, say=say).start()
    supervisor.stop()
    mosquitto.stop()
    assert not mosquitto.running and say.lines == []


def test_it_gives_up_after_the_last_attempt(mosquitto: LocalMosquitto) -> None:
    say = Lines()
    gave_up = threading.Event()
    _crash(mosquitto)
    with socket.socket() as squatter:  # every restart now fails: the port is taken
        # SO_REUSEADDR, as every server sets it: the killed broker can leave a TIME-WAIT connection on
        # its own port (when it closed the admin session first, about 1 start in 3), which refuses a
        # plain bind; a listening socket still refuses the broker's bind either way
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", mosquitto.port))
        squatter.listen()
        supervisor = Supervisor({"Mosquitto": mosquitto}, max_attempts=2, backoff=0.05, say=say,
                                on_give_up=lambda _: gave_up.set()).start()
        try:
            assert gave_up.wait(20), say.lines
        finally:
            supervisor.stop()
    assert say.lines[0] == "Mosquitto exited (code -9); restarting in 0.05s (attempt 1 of 2)"
    assert say.lines[1].startswith("Mosquitto did not start again (Mosquitto cannot listen on")
    assert say.lines[1].endswith("restarting in 0.1s (attempt 2 of 2)")
    assert "giving up after 2 restarts" in say.lines[2] and str(mosquitto.data_dir) in say.lines[2]
    assert supervisor.gave_up == say.lines[2] and len(say.lines) == 3
    assert not mosquitto.running
