"""``detector init``: a commented example alerts.yaml to start from."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from detector.cli.common import EXIT_ERROR, EXIT_OK, Command

__all__ = ["example_config", "register"]


def example_config() -> str:
    """The shipped example alerts.yaml (package data, the same as the repository's)."""
    return resources.files("detector").joinpath("example_alerts.yaml").read_text("utf-8")


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.is_dir():
        path = path / "alerts.yaml"
    if path.exists() and not args.force:
        print(f"error: {path} exists; pass --force to overwrite it", file=sys.stderr)
        return EXIT_ERROR
    try:
        path.write_text(example_config(), encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {path}; edit source: to point at your table, then: detector validate --db")
    return EXIT_OK


def register(command: Command) -> None:
    init = command("init", "write a commented example alerts.yaml to start from", config=False)
    init.add_argument(
        "path", nargs="?", default="alerts.yaml", help="where to write it (default: %(default)s)"
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=cmd_init)
