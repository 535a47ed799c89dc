"""``detector schema``: the machine-readable contracts, for editors and API clients."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from detector.cli.common import EXIT_OK, Command

__all__ = ["register"]


def cmd_schema(args: argparse.Namespace) -> int:
    if args.openapi:
        from detector.service.openapi import openapi_document

        text = json.dumps(openapi_document(), indent=2) + "\n"
    else:
        from detector.config.schema import config_schema_text

        text = config_schema_text()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def register(command: Command) -> None:
    schema = command(
        "schema",
        "print the JSON Schema of alerts.yaml (or, with --openapi, the HTTP API's OpenAPI "
        "document)",
        config=False,
    )
    schema.add_argument("--openapi", action="store_true", help="the OpenAPI 3.1 document instead")
    schema.add_argument("--output", metavar="FILE", help="write it to FILE instead of stdout")
    schema.set_defaults(handler=cmd_schema)
