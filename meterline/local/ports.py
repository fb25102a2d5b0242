"""Port helpers: pick a free loopback port, refuse an occupied one with a clear message."""

from __future__ import annotations

import random
import socket
import time

from meterline.errors import ConfigError, InfrastructureError

#: Where ``free_port`` looks: below Linux's ephemeral range (``ip_local_port_range``, 32768-60999 by
#: default), from which the kernel gives every outgoing connection its local port. A port picked from
#: the ephemeral range could be taken by some connection before its service bound it (seen: a test
#: stack's Mosquitto refused to start, "the port is already in use").
_PICK_RANGE = (20_000, 32_767)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that was free on ``host`` a moment ago, outside the ephemeral range when one is."""
    for _ in range(200):
        port = random.randint(*_PICK_RANGE)  # noqa: S311 - a port number, not a secret
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # all taken: any port the kernel gives
        sock.bind((host, 0))
        fallback: int = sock.getsockname()[1]
        return fallback


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
