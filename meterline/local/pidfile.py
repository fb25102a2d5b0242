"""Pid files of our service processes, so a start can stop the broker an earlier run left behind.

The second line of defence after ``processes.spawn`` (children die with their parent): should a
Kafka or Mosquitto still be running from an earlier ``meterline up`` (a kernel without
``PR_SET_PDEATHSIG``, a process started before that protection), its port blocks the next start.
Each service writes ``<data dir>/<name>.pid``; the next start stops the process it names, but only
after ``/proc/<pid>/cmdline`` shows it is our service on *this* data directory (a recycled pid
is left alone), and only if the process that started it is gone (a second ``meterline up`` on the
same home must not take the first one's broker).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from meterline.errors import ConfigError

__all__ = ["command_line", "remove", "stop_leftover", "write"]

log = logging.getLogger(__name__)


def write(path: Path, pid: int) -> None:
    """Record ``pid`` and its owner (this process): ``<pid> <owner pid>``."""
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid} {os.getpid()}\n")
    tmp.replace(path)


def remove(path: Path, pid: int) -> None:
    """Delete ``path`` if it still names ``pid`` (a newer start may have replaced it)."""
    if _read(path)[0] == pid:
        path.unlink(missing_ok=True)


def _read(path: Path) -> tuple[int | None, int | None]:
    """The pid and owner pid in ``path`` (None for what is missing)."""
    try:
        fields = path.read_text().split()
    except OSError:
        return None, None
    numbers = [int(f) for f in fields[:2] if f.isdigit()]
    return (numbers[0] if numbers else None), (numbers[1] if len(numbers) > 1 else None)


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def command_line(pid: int) -> list[str] | None:
    """The arguments of a live process, None if it is gone (or a zombie, which has none)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_leftover(path: Path, argument: str, what: str, timeout: float = 15.0) -> int | None:
    """Stop the process ``path`` names if its command line has ``argument``; return its pid.

    ``argument`` is something only our process on this data directory has on its command line
    (its configuration file). The process gets SIGTERM (a clean shutdown keeps the broker's data
    tidy), then SIGKILL after ``timeout`` seconds.
    """
    pid, owner = _read(path)
    if pid is None or pid == os.getpid():
        path.unlink(missing_ok=True)
        return None
    args = command_line(pid)
    if args is None:  # gone, or exiting (its memory, and so its arguments, go before its sockets)
        _wait_gone(pid, 5.0)
        path.unlink(missing_ok=True)
        return None
    if argument not in args:
        path.unlink(missing_ok=True)
        return None
    if owner is not None and _parent(pid) == owner:  # not a leftover: its owner still runs
        raise ConfigError(f"{what} on {path.parent} belongs to a running process (pid {owner}, "
                          f"another `meterline up`?); stop that one first or use another METERLINE_HOME")
    log.warning("stopping the %s an earlier run left running (pid %d, %s)", what, pid, path.parent)
    try:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)  # a frozen process handles its SIGTERM only once continued
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise ConfigError(f"{what} (pid {pid}) from an earlier run on {path.parent} belongs to another "
                          f"user and cannot be stopped by us") from exc
    if not _wait_gone(pid, timeout):
        log.warning("%s (pid %d) did not stop within %.0fs; killing it", what, pid, timeout)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_gone(pid, 5.0)
    path.unlink(missing_ok=True)
    return pid


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
