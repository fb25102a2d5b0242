"""What ``LocalKafka`` and ``LocalMosquitto`` share: one child process, its pid file, stop and kill.

Each of them knows how to prepare and start its own program; once started, both are a process that
``processes.spawn`` made (it dies with us) and that a pid file in the data directory names (so the next
start can stop one an earlier run left behind, ``pidfile.stop_leftover``). Stopping, killing, the
questions the supervisor asks (``running``, ``exit_code``) and the use as a context manager are the
same for both, so they live here once.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Self

from meterline.local import pidfile, processes

__all__ = ["ChildService"]


class ChildService:
    """Base of a local service run as one child process; subclasses implement ``start`` and ``_pid_file``."""

    #: seconds ``stop()`` waits after SIGTERM before it SIGKILLs
    stop_timeout: float = 30.0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def _pid_file(self) -> Path:
        raise NotImplementedError

    def start(self) -> Self:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def exit_code(self) -> int | None:
        """The exit status once the process ended on its own (None while it runs or when stopped)."""
        return self._proc.poll() if self._proc is not None else None

    def stop(self, timeout: float | None = None) -> None:
        """Controlled shutdown (SIGTERM), escalating to SIGKILL after ``timeout`` (``stop_timeout``) seconds."""
        proc, self._proc = self._proc, None
        processes.terminate(proc, self.stop_timeout if timeout is None else timeout)
        if proc is not None:
            pidfile.remove(self._pid_file, proc.pid)

    def kill(self) -> None:
        """Crash the process (SIGKILL), as a fault-injection tool."""
        proc, self._proc = self._proc, None
        processes.kill(proc)
        if proc is not None:
            pidfile.remove(self._pid_file, proc.pid)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
