"""Named fault-injection points, so fault tests crash a process exactly inside the window they prove.

A test that SIGKILLs a worker "at some moment" passes whether or not the kill landed between, say,
the ClickHouse insert and the offset commit. Code on a crash-sensitive path instead marks the window
with a named point, and a test arms that point to kill or fail the process right there::

    faults.point("processor.after_write", token=batch.token, rows=batch.rows)

Arming, from outside the process (read once, when this module is first imported)::

    METERLINE_FAULTS="processor.after_write=kill@3,sink.random_token=on"

``name=action[@n]`` entries, comma-separated. ``@n`` fires on the n-th hit only (counting from 1);
without it every hit fires. Actions:

* ``kill``  — log one ``fault point <name> fired: kill (...)`` line on stderr, then SIGKILL the own
  process (no cleanup, no commit, no LeaveGroup: a crash);
* ``raise`` — raise ``FaultInjected`` from the point;
* ``hang``  — block the calling thread forever (a stuck call);
* ``log``   — only write the line (a probe: which batches were written, in which order);
* ``on``    — for ``switch(name)``: a test-only switch that turns a protection off, for the negative
  controls of the fault tests (e.g. ``sink.random_token``: a fresh deduplication token per write).

Every action run from the variable first writes ``fault point <name> fired: <action> (hit <n> ...)``
with the point's context to stderr, so the test can prove from the process's log that it crashed
inside the window.

In-process tests arm points without the environment: ``with faults.arm("name", hook): ...`` where
``hook`` is an action name or a callable run at the point with its context (it may raise, record,
or block on an event).

Unset, every point is one dictionary truth test; nothing here runs in production unless the
variable is set. Points and switches in use:

* ``processor.after_record`` / ``processor.after_write`` — a worker batch's range is recorded /
  its rows are written, the offset not yet committed (``stream_workers.processor``);
* ``processor.no_pending_record``, ``sink.random_token``, ``processor.no_dedupe``,
  ``sink.drop_on_error`` — switches that remove a part of the exactly-once protocol, for negative
  controls;
* ``producer.accept_before_ack`` — a switch: the gateway answers 202 once records are queued, before
  Kafka acknowledged them (the negative control of the Kafka outage test);
* ``bridge.after_produce`` — the MQTT bridge has Kafka's ack for a report, the PUBACK is not sent
  (``gateway.bridge.mqtt``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from meterline.errors import MeterlineError

__all__ = ["ENV_VAR", "FaultInjected", "arm", "hits", "parse", "point", "switch"]

log = logging.getLogger(__name__)

ENV_VAR: Final = "METERLINE_FAULTS"
_ACTIONS: Final = ("kill", "raise", "hang", "log", "on")

Hook = Callable[..., None]


class FaultInjected(MeterlineError):
    """Raised by a point armed with ``raise``."""


@dataclass
class _Armed:
    action: str | Hook
    at: int | None = None  # fire on this hit only; None: on every hit
    hits: int = field(default=0)


_armed: dict[str, _Armed] = {}
_lock = threading.Lock()


def parse(spec: str) -> dict[str, tuple[str, int | None]]:
    """``"a=kill@3,b=on"`` → ``{"a": ("kill", 3), "b": ("on", None)}``; ValueError if malformed."""
    out: dict[str, tuple[str, int | None]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, rest = item.partition("=")
        action, _, at = rest.partition("@")
        if not sep or not name or action not in _ACTIONS or (at and not at.isdigit()) or at == "0":
            raise ValueError(f"{ENV_VAR}: cannot read {item!r}; expected name=kill|raise|hang|log|on[@n]")
        out[name.strip()] = (action, int(at) if at else None)
    return out


def _load_env() -> None:
    spec = os.environ.get(ENV_VAR, "")
    if spec:
        for name, (action, at) in parse(spec).items():
            _armed[name] = _Armed(action, at)
        log.warning("fault injection armed: %s", spec)


def point(name: str, **context: Any) -> None:
    """Mark a fault window; does what the armed action says (nothing when not armed)."""
    if not _armed:
        return
    armed = _armed.get(name)
    if armed is None:
        return
    with _lock:
        armed.hits += 1
        due = armed.at is None or armed.hits == armed.at
    if not due:
        return
    action = armed.action
    if callable(action):
        action(**context)
        return
    detail = "".join(f" {k}={v}" for k, v in context.items())
    line = f"fault point {name} fired: {action} (hit {armed.hits}{detail})"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        threading.Event().wait()  # SIGKILL is asynchronous only in theory; never run past the point
    if action == "raise":
        raise FaultInjected(line)
    if action == "hang":
        threading.Event().wait()


def switch(name: str) -> bool:
    """Whether the test-only switch ``name`` is on (``name=on``); False in production."""
    return bool(_armed) and name in _armed and _armed[name].action == "on"


def hits(name: str) -> int:
    """How often the armed point ``name`` was reached (0 when not armed)."""
    armed = _armed.get(name)
    return armed.hits if armed is not None else 0


@contextlib.contextmanager
def arm(name: str, action: str | Hook, at: int | None = None) -> Iterator[None]:
    """Arm ``name`` in this process for the duration of the block (the hook object of in-process tests)."""
    if isinstance(action, str) and action not in _ACTIONS:
        raise ValueError(f"unknown fault action {action!r}")
    previous = _armed.get(name)
    _armed[name] = _Armed(action, at)
    try:
        yield
    finally:
        if previous is None:
            _armed.pop(name, None)
        else:
            _armed[name] = previous


_load_env()
