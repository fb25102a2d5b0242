"""The ``meterline`` entry point: one parser, each area adding its own subcommands.

The areas are imported here by name, so that the layers stay visible: this package sits on top and
is the only one that knows them all (``tests/unit/test_layers.py`` keeps it so).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import dashboards.alerts_cli
import dashboards.cli
import dashboards.limits_cli
import gateway.cli
import stream_workers.cli
from meterline.errors import MeterlineError
from meterline_cli import demo, infra, stack

#: ``register(subparsers)`` of each area, in the order ``meterline --help`` lists their commands.
REGISTER: tuple[Callable[[Any], None], ...] = (
    infra.register,
    stack.register,
    demo.register,
    gateway.cli.register,
    dashboards.cli.register,
    dashboards.limits_cli.register,
    dashboards.alerts_cli.register,
    stream_workers.cli.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterline",
                                     description="Meterline: usage analytics and billing for AI agents")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTER:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # chatty clients: their INFO lines drown what the command says
        for name in ("aiokafka", "httpx", "gmqtt", "faust", "mode", "meterline.mqtt_admin"):  # the last: gmqtt's
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
    except MeterlineError as exc:
        print(f"meterline: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
