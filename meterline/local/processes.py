"""Starting and stopping the service processes we run (Kafka, Mosquitto): they die with us.

A child started with plain ``Popen`` outlives its parent: after ``meterline up`` was SIGKILLed (or
taken by the out-of-memory killer) its Kafka and Mosquitto kept their ports and the next start
failed. ``spawn`` asks the kernel to SIGKILL the child when its parent goes
(``prctl(PR_SET_PDEATHSIG)``, set in the child before ``exec``; it survives ``exec`` and is cleared
only by a change of user id, which our services do not make).

The parent-death signal fires when the *thread* that forked the child exits, not the process. A
broker started from a short-lived thread (``asyncio.to_thread``, a supervisor thread, a pool) would
be killed when that thread ends, so every ``spawn`` forks from one thread that lives as long as the
process.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

__all__ = ["die_with_parent", "kill", "kill_all", "spawn", "terminate"]

_PR_SET_PDEATHSIG = 1

#: Whether ``spawn`` asks for the parent-death signal. Only tests turn it off, to make the orphan
#: that the pid files (``pidfile.stop_leftover``) must then deal with.
die_with_parent = True


def _prctl() -> Callable[..., int]:
    """``prctl`` from the C library, resolved in the parent (the child must not load libraries)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn: Callable[..., int] = libc.prctl
    return fn


def _die_with(parent: int, prctl: Callable[..., int]) -> Callable[[], None]:
    """The ``preexec_fn`` of a child that must not outlive ``parent``."""

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the parent died before prctl: no signal would come
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class _Spawner:
    """Forks every service process from one daemon thread that lives as long as the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._owner_pid: int | None = None
        self._prctl: Callable[..., int] | None = None
        self.children: list[subprocess.Popen[bytes]] = []  # for ``kill_all``; exited ones pruned

    def run(self, fn: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._owner_pid != os.getpid():  # first use, or a forked copy of this process
                self._requests = queue.SimpleQueue()
                threading.Thread(target=self._serve, args=(self._requests,), name="meterline-spawner",
                                 daemon=True).start()
                self._owner_pid = os.getpid()
            requests = self._requests
        done: Future[subprocess.Popen[bytes]] = Future()
        requests.put((self._tracked(fn), done))
        return done.result()

    def _tracked(self, fn: Callable[[], subprocess.Popen[bytes]]) -> Callable[[], subprocess.Popen[bytes]]:
        """``fn`` recording its child at once (the caller may be interrupted while it waits)."""

        def run() -> subprocess.Popen[bytes]:
            proc = fn()
            with self._lock:
                self.children = [p for p in self.children if p.returncode is None] + [proc]
            return proc

        return run

    def preexec(self) -> Callable[[], None]:
        if self._prctl is None:
            self._prctl = _prctl()
        return _die_with(os.getpid(), self._prctl)

    @staticmethod
    def _serve(requests: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]) -> None:
        while True:
            fn, done = requests.get()
            try:
                done.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                done.set_exception(exc)


_spawner = _Spawner()


def spawn(argv: Sequence[str], log: Path | None, *, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log`` (None: ours); it is SIGKILLed if we die.

    The child gets a session of its own, so a Ctrl-C in the terminal reaches only ``meterline``,
    which then stops its services in order. ``env``: the child's environment (default: ours).
    """
    preexec = _spawner.preexec() if die_with_parent else None

    def start() -> subprocess.Popen[bytes]:
        out: IO[bytes] | None = log.open("ab") if log is not None else None
        try:
            return subprocess.Popen(  # noqa: S603 - argv built by our own service classes
                list(argv), stdout=out, stderr=subprocess.STDOUT if out is not None else None,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec, env=env,
            )
        finally:
            if out is not None:
                out.close()

    return _spawner.run(start)


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


def kill_all() -> list[int]:
    """SIGKILL every running process ``spawn`` started, without waiting; return their pids.

    The last resort of a stop that ran out of time: a frozen (SIGSTOPped) broker ignores SIGTERM.
    """
    killed = []
    for proc in list(_spawner.children):  # a copy: no lock here, this may run in a signal handler
        try:
            if proc.poll() is None:
                proc.kill()
                killed.append(proc.pid)
        except OSError:
            continue
    return killed
