"""What the benchmarks share: the issue-13 TARGET lines, the machine's load, and CPU seconds of processes.

Every benchmark that checks a target prints ``TARGET <name>: <figure> vs <goal> — met|NOT MET`` (one
line a target, see ``target``); ``make bench`` collects those lines into its closing summary. A bench
is imported from its own directory (``python bench/bench_x.py`` puts ``bench/`` on ``sys.path``).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def target(name: str, figure: str, goal: str, met: bool, note: str = "") -> str:
    """Print and return one TARGET line; ``note`` (e.g. "quick: 1 M rows, not 10 M") follows the verdict."""
    line = f"TARGET {name}: {figure} vs {goal} — {'met' if met else 'NOT MET'}"
    if note:
        line += f" ({note})"
    print(line, flush=True)
    return line


@contextmanager
def holding(lock: Path | None, exclusive: bool) -> Iterator[None]:
    """``lock`` held (flock) shared or exclusively for the block; nothing without a lock file. On a machine
    where test runs hold a file shared and benchmarks exclusively, a bench sets up under the shared lock
    and times under the exclusive one, so it holds the machine only while it measures."""
    if lock is None:
        yield
        return
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a running process (all its threads) has used; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15 of stat)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's threads, summed by thread name (``comm``: e.g. the event loop's
    ``python``, ``clickhouse-sink_0``, the embedded engine's own pools)."""
    totals: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            head, tail = (task / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        name = head.split("(", 1)[1]
        fields = tail.split()
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK
    return totals


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]
