"""Keep the local stack's Kafka and Mosquitto running: restart a crashed one, or give up clearly.

``meterline up`` runs its broker processes as children. Without a supervisor a crashed Kafka left
the stack down for good while the gateway answered 503 and its clients logged connection errors
several times a second. The supervisor thread watches each child; when one exits on its own it
says so in one line, waits (1 s, 2 s, 4 s ... up to ``max_backoff``) and starts it again on the same
data directory. After ``max_attempts`` restarts without ``healthy_after`` seconds of uptime between
them it gives up: ``on_give_up`` is called with a message (the stack then stops, with a non-zero
exit status).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["Service", "Supervisor"]

log = logging.getLogger(__name__)


class Service(Protocol):
    """What the supervisor needs of a child service (``LocalKafka``, ``LocalMosquitto``)."""

    data_dir: Path

    @property
    def running(self) -> bool: ...

    @property
    def exit_code(self) -> int | None: ...

    def start(self) -> object: ...

    def kill(self) -> None: ...


def _say(line: str) -> None:
    print(f"meterline: {line}", file=sys.stderr, flush=True)


@dataclass
class _Watch:
    service: Service
    attempts: int = 0
    up_since: float = 0.0
    down: bool = False  # gave up on it


class Supervisor:
    """A thread that restarts the given services when they exit; ``stop()`` before stopping them."""

    def __init__(self, services: Mapping[str, Service], *, max_attempts: int = 5, backoff: float = 1.0,
                 max_backoff: float = 30.0, healthy_after: float = 60.0, poll_interval: float = 0.25,
                 say: Callable[[str], None] = _say,
                 on_give_up: Callable[[str], None] | None = None) -> None:
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.poll_interval = poll_interval
        self.say = say
        self.on_give_up = on_give_up
        self.gave_up: str | None = None
        self._watches = {name: _Watch(service, up_since=time.monotonic()) for name, service in services.items()}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meterline-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def add(self, name: str, service: Service) -> None:
        """Watch ``service`` too, from now on (one started after the supervisor, e.g. the ingest front)."""
        self._watches = {**self._watches, name: _Watch(service, up_since=time.monotonic())}

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching (the services are stopped by their owner afterwards, not restarted)."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_interval):
            for name, watch in list(self._watches.items()):  # ``add`` replaces the dict, never mutates it
                if watch.down or self._stopping.is_set():
                    continue
                code = watch.service.exit_code
                if code is None:
                    if watch.attempts and time.monotonic() - watch.up_since >= self.healthy_after:
                        watch.attempts = 0
                    continue
                self._restart(name, watch, f"exited (code {code})")

    def _restart(self, name: str, watch: _Watch, why: str) -> None:
        """Restart ``watch`` until it runs, the supervisor stops, or the attempts run out."""
        while not self._stopping.is_set():
            if watch.attempts >= self.max_attempts:
                self._give_up(name, watch, why)
                return
            watch.attempts += 1
            delay = min(self.max_backoff, self.backoff * 2 ** (watch.attempts - 1))
            self.say(f"{name} {why}; restarting in {delay:g}s (attempt {watch.attempts} of {self.max_attempts})")
            if self._stopping.wait(delay):
                return
            watch.service.kill()  # reap the dead process, clear its pid file
            try:
                watch.service.start()
            except Exception as exc:  # noqa: BLE001 - any failed start is a failed attempt
                detail = str(exc).splitlines()[0][:200] if str(exc) else repr(exc)
                why = f"did not start again ({detail})"
                continue
            if self._stopping.is_set():
                return
            watch.up_since = time.monotonic()
            self.say(f"{name} is running again")
            return

    def _give_up(self, name: str, watch: _Watch, why: str) -> None:
        watch.down = True
        message = (f"{name} {why}; giving up after {self.max_attempts} restarts. "
                   f"The stack stops; its logs are in {watch.service.data_dir}")
        self.gave_up = message
        self.say(message)
        log.debug("supervisor gave up on %s", name)
        if self.on_give_up is not None:
            self.on_give_up(message)
