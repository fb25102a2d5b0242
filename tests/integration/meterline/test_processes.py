"""Our Kafka and Mosquitto do not outlive the process that started them, and a leftover is stopped.

``service_host`` plays ``meterline up``: it starts one service and is then SIGKILLed, as the
out-of-memory killer would. First line of defence: the service dies with it (parent-death
signal). Second: with that protection off (``processes.die_with_parent = False``, the orphan of an
older version), the next start finds the leftover through its pid file and stops it.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from meterline.errors import ConfigError
from meterline.local import pidfile
from meterline.local.kafka import LocalKafka
from meterline.local.mosquitto import LocalMosquitto
from meterline.local.ports import free_port

ROOT = Path(__file__).resolve().parents[3]


def _host(kind: str, data_dir: Path, ports: tuple[int, int], *, die_with_parent: bool,
          cluster_id: str = "") -> tuple[subprocess.Popen[str], int]:
    """Start ``service_host``; return it and the pid of the service it started."""
    host = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.meterline.service_host", kind, str(data_dir),
         str(ports[0]), str(ports[1]), "1" if die_with_parent else "0", *([cluster_id] if cluster_id else [])],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert host.stdout is not None
    output = []
    for line in host.stdout:  # ends when the host printed the pid (or exited)
        output.append(line)
        if line.startswith("pid "):
            return host, int(line.split()[1])
    raise AssertionError(f"service_host did not start {kind}: {''.join(output)[-2000:]}")


def _alive(pid: int) -> bool:
    return pidfile.command_line(pid) is not None


def _gone_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("die_with_parent", [True, False], ids=["protected", "negative-control"])
def test_a_service_dies_with_the_process_that_started_it(tmp_dir: Path, die_with_parent: bool) -> None:
    ports = (free_port(), free_port())
    host, pid = _host("mosquitto", tmp_dir / "m", ports, die_with_parent=die_with_parent)
    host.kill()
    host.wait()
    try:
        if die_with_parent:
            assert _gone_within(pid, 10), "Mosquitto outlived the process that started it"
        else:  # what blocked the next `meterline up`: the orphan keeps its port
            assert _alive(pid) and _listening(ports[0])
    finally:
        _kill(pid)


def test_a_service_started_from_a_short_lived_thread_keeps_running(tmp_dir: Path) -> None:
    """The parent-death signal follows the forking *thread*: spawning from one that ends must not kill."""
    service = LocalMosquitto(tmp_dir / "m", port=free_port(), tls_port=free_port())
    tids: list[int] = []

    def start() -> None:
        tids.append(threading.get_native_id())
        service.start()

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    try:
        task = Path(f"/proc/self/task/{tids[0]}")
        deadline = time.monotonic() + 5
        while task.exists() and time.monotonic() < deadline:  # the OS thread is gone, not only joined
            time.sleep(0.01)
        assert not task.exists()
        assert service.pid is not None
        assert not _gone_within(service.pid, 0.5), "the service died with the thread that started it"
        assert service.running and _listening(service.port)
    finally:
        service.stop()


def _dash_cluster_id() -> str:
    """A valid cluster id that starts with "-" (kafka-storage read "-t -..." as an option)."""
    return base64.urlsafe_b64encode(b"\xf8" + os.urandom(15)).decode().rstrip("=")


@pytest.mark.parametrize("kind", ["mosquitto", "kafka"])
def test_the_next_start_stops_the_service_an_earlier_run_left(kind: str, tmp_dir: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    ports = (free_port(), free_port())
    data_dir = tmp_dir / kind
    # the Kafka orphan is also formatted with an id starting with "-": ``--cluster-id=<id>`` takes it
    host, orphan = _host(kind, data_dir, ports, die_with_parent=False,
                         cluster_id=_dash_cluster_id() if kind == "kafka" else "")
    host.kill()
    host.wait()
    service: LocalKafka | LocalMosquitto = (
        LocalKafka(data_dir, port=ports[0], controller_port=ports[1], heap="256m") if kind == "kafka"
        else LocalMosquitto(data_dir, port=ports[0], tls_port=ports[1]))
    try:
        assert _alive(orphan) and _listening(ports[0])
        with caplog.at_level(logging.WARNING, logger="meterline.local.pidfile"):
            service.start()
        try:
            assert f"left running (pid {orphan}" in caplog.text
            assert not _alive(orphan)
            assert service.pid != orphan and service.running and _listening(ports[0])
            assert (data_dir / f"{kind}.pid").read_text().split() == [str(service.pid), str(os.getpid())]
        finally:
            service.stop()
        assert not (data_dir / f"{kind}.pid").exists()
    finally:
        _kill(orphan)


def test_without_its_pid_file_the_leftover_blocks_the_port(tmp_dir: Path) -> None:
    """Negative control of the test above: the pid file is what lets the next start proceed."""
    ports = (free_port(), free_port())
    host, orphan = _host("mosquitto", tmp_dir / "m", ports, die_with_parent=False)
    host.kill()
    host.wait()
    try:
        (tmp_dir / "m" / "mosquitto.pid").unlink()
        with pytest.raises(ConfigError, match="already in use"):
            LocalMosquitto(tmp_dir / "m", port=ports[0], tls_port=ports[1]).start()
        assert _alive(orphan)
    finally:
        _kill(orphan)


def test_a_pid_file_naming_another_process_is_left_alone(tmp_dir: Path) -> None:
    """A recycled pid: the process it names now is not our broker on this directory."""
    other = subprocess.Popen(["sleep", "120"])  # noqa: S607
    data_dir = tmp_dir / "m"
    data_dir.mkdir()
    (data_dir / "mosquitto.pid").write_text(f"{other.pid}\n")
    service = LocalMosquitto(data_dir, port=free_port(), tls_port=free_port())
    try:
        service.start()
        assert other.poll() is None
        assert (data_dir / "mosquitto.pid").read_text().split()[0] == str(service.pid)
    finally:
        service.stop()
        other.kill()
        other.wait()


def test_the_service_of_a_running_owner_is_not_taken_over(tmp_dir: Path) -> None:
    """A second `meterline up` on the same home must not stop the first one's broker."""
    ports = (free_port(), free_port())
    host, pid = _host("mosquitto", tmp_dir / "m", ports, die_with_parent=True)
    try:
        with pytest.raises(ConfigError, match=f"belongs to a running process \\(pid {host.pid}"):
            LocalMosquitto(tmp_dir / "m", port=ports[0], tls_port=ports[1]).start()
        assert _alive(pid) and _listening(ports[0])
    finally:
        host.kill()
        host.wait()
        _kill(pid)
