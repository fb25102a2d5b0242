"""The ``meterline`` command. Each area registers its subcommands from its own module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from meterline.errors import MeterlineError

#: Modules with a ``register(subparsers)`` function; each adds its subcommands.
COMMAND_MODULES: tuple[str, ...] = (
    "meterline.commands.infra",
    "meterline.commands.stack",
    "meterline.commands.demo",
    "gateway.cli",
    "dashboards.cli",
    "stream_workers.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterline",
                                     description="Meterline: usage analytics and billing for AI agents")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # chatty clients: their INFO lines drown what the command says
        for name in ("aiokafka", "httpx", "gmqtt", "faust", "mode"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
    except MeterlineError as exc:
        print(f"meterline: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
