"""Port helpers: pick a free loopback port, refuse an occupied one with a clear message."""

from __future__ import annotations

import socket
import time

from meterline.errors import ConfigError, InfrastructureError


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Raise ``ConfigError`` naming the service when ``host:port`` is already taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"{what} cannot listen on {host}:{port}: the port is already in use "
                f"(another instance running? choose another port)"
            ) from exc


def wait_for_port(host: str, port: int, timeout: float, what: str) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise InfrastructureError(f"{what} did not accept connections on {host}:{port} within {timeout:.0f}s")
