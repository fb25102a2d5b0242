"""Process plumbing for the transport: fork and exit hooks, and the worker loop's executor."""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import os
import weakref
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["InlineExecutor", "ProcessAware", "install_process_hooks"]


class ProcessAware(Protocol):
    def after_fork(self) -> None: ...

    def close_at_exit(self) -> None: ...


def install_process_hooks(target: ProcessAware) -> None:
    """Call ``target.after_fork()`` in forked children and ``target.close_at_exit()`` at exit.

    Only a weak reference is kept, so a discarded logger is not kept alive by the hooks.
    """
    ref = weakref.ref(target)

    def in_child() -> None:
        obj = ref()
        if obj is not None:
            obj.after_fork()

    os.register_at_fork(after_in_child=in_child)
    atexit.register(_at_exit, ref)


def _at_exit(ref: weakref.ref[ProcessAware]) -> None:
    obj = ref()
    if obj is not None:
        obj.close_at_exit()


class InlineExecutor(cf.ThreadPoolExecutor):
    """Runs blocking calls (DNS lookups) inline on the worker's own thread.

    The worker loop is private, so blocking it briefly is harmless, and unlike the default
    thread pool this keeps working while the interpreter shuts down (the at-exit flush). It is a
    ``ThreadPoolExecutor`` only because asyncio insists; it never starts a thread.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            future.set_exception(exc)
        return future
