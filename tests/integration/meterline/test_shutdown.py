"""A stop request ends the process within its deadline, children included, whatever hangs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from meterline.local import pidfile

ROOT = Path(__file__).resolve().parents[3]
DEADLINE_S = 4.0  # as in stop_host


def _start(scenario: str, tmp_dir: Path) -> tuple[subprocess.Popen[str], int, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.meterline.stop_host", scenario,
                             str(tmp_dir / "child.log")], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("child "), first + proc.stdout.read()
    return proc, int(first.split()[1]), [first]


def _finish(proc: subprocess.Popen[str], lines: list[str], started: float) -> tuple[int, float, str]:
    assert proc.stdout is not None
    code = proc.wait(DEADLINE_S + 5)
    took = time.monotonic() - started
    lines.extend(proc.stdout.read().splitlines(keepends=True))
    return code, took, "".join(lines)


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while pidfile.command_line(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_hanging_stop_is_ended_by_the_watchdog(tmp_dir: Path) -> None:
    started = time.monotonic()
    proc, child, lines = _start("hang", tmp_dir)
    code, took, output = _finish(proc, lines, started)
    assert code == 1 and took < DEADLINE_S, output
    assert f"meterline: the stop took longer than 1s; killed pid {child}; exiting" in output
    assert _gone(child)


def test_a_stop_stuck_in_c_code_is_ended_by_faulthandler(tmp_dir: Path) -> None:
    """The GIL is held, so the watchdog thread cannot run; faulthandler's own thread exits."""
    started = time.monotonic()
    proc, child, lines = _start("gil", tmp_dir)
    code, took, output = _finish(proc, lines, started)
    assert code == 1 and took < DEADLINE_S + 1, output
    assert "the stop took longer" not in output  # the Python watchdog never got to run
    assert "Timeout (0:00:03.500000)!" in output and "stop_host.py" in output  # where it was stuck
    assert _gone(child)  # the child died with its parent


def test_a_second_signal_stops_at_once(tmp_dir: Path) -> None:
    proc, child, lines = _start("signals", tmp_dir)
    assert proc.stdout is not None
    lines.append(proc.stdout.readline())
    assert lines[-1] == "ready\n"
    proc.send_signal(signal.SIGINT)
    for line in proc.stdout:  # "meterline: stopping (SIGINT); ..." then our "stopping"
        lines.append(line)
        if line == "stopping\n":
            break
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code, took, output = _finish(proc, lines, started)
    assert "meterline: stopping (SIGINT); press Ctrl-C again to stop at once" in output
    assert f"meterline: SIGINT again; killed pid {child}; exiting" in output
    assert code == 1 and took < 1.0, output
    assert _gone(child)
