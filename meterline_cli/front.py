"""The ingest front of ``meterline up`` as a child process the stack starts, supervises and stops.

``gateway/front.py`` says what the front is and why it exists. Here: its process. It dies with the
stack (``processes.spawn``), prints to the stack's own output (warnings and errors only), restarts
under the stack's supervisor when it exits, and stops first on Ctrl-C, answering the ingest calls it
has in flight before Kafka goes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from meterline.errors import InfrastructureError
from meterline.local import processes
from meterline.local.ports import ensure_port_free, wait_for_port

__all__ = ["FrontProcess"]


class FrontProcess:
    """``python -m gateway.front`` on ``host:port``, forwarding what it does not serve to ``upstream``."""

    def __init__(self, data_dir: Path, host: str, port: int, upstream: str) -> None:
        self.data_dir = data_dir  # named by the supervisor when it gives up
        self.host = host
        self.port = port
        self.upstream = upstream
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def launch(self) -> FrontProcess:
        """Start the process and return at once (``wait_until_serving`` waits for it)."""
        ensure_port_free(self.host, self.port, "The gateway")
        env = dict(os.environ, METERLINE_FRONT_UPSTREAM=self.upstream, METERLINE_GATEWAY_PORT=str(self.port))
        self._proc = processes.spawn([sys.executable, "-m", "gateway.front"], None, env=env)
        return self

    def wait_until_serving(self, timeout: float = 60.0) -> None:
        """Return once the front accepts connections (it listens after loading the keys topic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.exit_code
            if code is not None:
                raise InfrastructureError(f"the ingest front exited with code {code} while starting")
            try:
                wait_for_port(self.host, self.port, 0.5, "The ingest front")
                return
            except InfrastructureError:
                continue
        raise InfrastructureError(f"the ingest front did not listen on {self.host}:{self.port} within {timeout:.0f}s")

    def start(self) -> FrontProcess:
        """Start and wait until serving (the supervisor's restart)."""
        self.launch()
        try:
            self.wait_until_serving()
        except BaseException:
            self.kill()
            raise
        return self

    def request_stop(self) -> None:
        """SIGTERM without waiting: the front stops taking ingest and answers what is in flight."""
        if self.running and self._proc is not None:
            self._proc.terminate()

    def stop(self, timeout: float = 10.0) -> None:
        processes.terminate(self._proc, timeout)

    def kill(self) -> None:
        processes.kill(self._proc)
