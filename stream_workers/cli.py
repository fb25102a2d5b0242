"""``meterline worker`` / ``python -m stream_workers worker``: run stream worker processes."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "register", "run_worker"]

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("worker", help="run the stream workers (settings from the environment)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes to run (default METERLINE_WORKERS); more than one uses the sink topic "
                        "with this process as the only ClickHouse writer")
    p.set_defaults(func=cmd_worker)


def run_worker(loglevel: str = "info") -> int:
    """Run one worker in this process until SIGTERM/SIGINT; returns the exit code."""
    import faust

    from stream_workers.app import create_app

    app = create_app()
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from stream_workers.settings import WorkerSettings

    settings = WorkerSettings()
    count = args.workers or settings.workers
    children: list[subprocess.Popen[bytes]] = []
    if count > 1:
        # One owner of ClickHouse (this process) plus processors that publish to the sink topic.
        os.environ["METERLINE_SINK_MODE"] = "topic"
        env = dict(os.environ, METERLINE_SINK_OWNER="0", METERLINE_WORKER_WEB_PORT="0")
        for _ in range(count - 1):
            children.append(subprocess.Popen([sys.executable, "-m", "stream_workers", "worker"], env=env))  # noqa: S603
    try:
        return run_worker("debug" if getattr(args, "verbose", False) else "info")
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream_workers")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code: int = args.func(args)
    return code
