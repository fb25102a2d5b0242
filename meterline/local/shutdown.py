"""A stop that always ends: once asked to stop, the process is gone within a deadline.

A graceful stop of the local stack flushes and commits the worker, closes the gateway and stops
Kafka cleanly, which takes a few seconds. But every one of those steps waits on something that
may never answer: a frozen or vanished Kafka (aiokafka retries its requests for ~40 s), a broker
that ignores SIGTERM while SIGSTOPped, a ClickHouse call that does not return. Ctrl-C and then
SIGTERM once did not stop ``meterline up`` within 70 s.

``BoundedStop.request()`` starts a clock; the graceful stop proceeds as usual. If the process is
still alive ``deadline - 3`` seconds later, a watchdog thread SIGKILLs the child processes
(``processes.kill_all``) and exits hard. Should the interpreter itself be stuck (a C call holding
the GIL, or interpreter shutdown), ``faulthandler``'s own C thread dumps the stacks and exits half
a second before the deadline. A second Ctrl-C or SIGTERM forces the exit at once.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from meterline.local import processes

__all__ = ["BoundedStop"]

#: Exit status of a stop that had to be forced.
FORCED_EXIT = 1


def _say(line: str) -> None:
    # os.write, not print: this runs in signal handlers, where a buffered write may be re-entered
    try:
        os.write(sys.stderr.fileno(), f"meterline: {line}\n".encode())
    except (OSError, ValueError):
        pass


class BoundedStop:
    """Bounds the time from the first stop request to the exit of the process."""

    def __init__(self, deadline: float = 15.0, *, say: Callable[[str], None] = _say) -> None:
        self.deadline = deadline
        self.say = say
        #: Called (from whichever thread asked) when the stop begins, e.g. to stop a supervisor.
        self.on_request: list[Callable[[], None]] = []
        self._requested_at: float | None = None

    @property
    def requested(self) -> bool:
        return self._requested_at is not None

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM request the stop (and raise ``KeyboardInterrupt`` in the main thread).

        Call again after an event loop that had its own handlers closed (it restores the defaults).
        """
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request(signal.Signals(signum).name)
        raise KeyboardInterrupt

    def request(self, why: str) -> None:
        """Start the clock. A repeated request (a second Ctrl-C) exits at once; it never returns.

        Main thread only, like signal handlers (no lock: a handler may interrupt this very call).
        """
        if self._requested_at is not None:
            self.force(f"{why} again")
        self._requested_at = time.monotonic()
        self.say(f"stopping ({why}); press Ctrl-C again to stop at once")
        self._start_watchdog()
        for callback in self.on_request:
            callback()

    def arm(self) -> None:
        """Start the clock unless it runs already (the final stop of the process is bounded too)."""
        if self._requested_at is not None:
            return
        self._requested_at = time.monotonic()
        self._start_watchdog()

    def _start_watchdog(self) -> None:
        faulthandler.dump_traceback_later(max(0.5, self.deadline - 0.5), exit=True)
        threading.Thread(target=self._watch, name="meterline-stop-watchdog", daemon=True).start()

    def _watch(self) -> None:
        time.sleep(max(0.0, self.deadline - 3.0))
        self.force(f"the stop took longer than {self.deadline - 3.0:g}s")

    def force(self, why: str) -> None:
        """Kill the child processes and exit now, without cleaning up (never returns)."""
        killed = processes.kill_all()
        detail = f"killed {', '.join(f'pid {pid}' for pid in killed)}" if killed else "no child was running"
        self.say(f"{why}; {detail}; exiting")
        # no flush of sys.stdout: the thread it may be stuck in holds its lock
        os._exit(FORCED_EXIT)
