"""Stopping the service processes we start: politely, or as a crash."""

from __future__ import annotations

import signal
import subprocess


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM ``proc`` and wait; SIGKILL it if it is still running after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL ``proc`` (fault injection, or clean-up after a failed start) and reap it."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
