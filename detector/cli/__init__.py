"""The ``detector`` command: run, check, validate, simulate, backtest, demo, silence, notify,
report.

Exit codes: 0 all good, 1 something is firing (``check``), 2 an error (bad config,
unreadable database, bad arguments). Each module here adds its subcommands with ``register``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from detector import __version__
from detector.cli import notify, replay, report, service, state
from detector.cli.common import EXIT_ERROR, setup_logging
from detector.config import ConfigError
from detector.errors import DetectorError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--version", action="version", version=f"detector {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, *, config: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if config:
            sub.add_argument(
                "--config",
                default="alerts.yaml",
                help="path of alerts.yaml (default: %(default)s)",
            )
        return sub

    for module in (service, replay, state, notify, report):
        module.register(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except (DetectorError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    return EXIT_ERROR
