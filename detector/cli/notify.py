"""``detector notify test``: one test notification, to check a receiver's credentials."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import requests

from detector.cli.common import EXIT_ERROR, EXIT_OK, Command, load

__all__ = ["register"]


def cmd_notify_test(args: argparse.Namespace) -> int:
    from detector.model import Notification
    from detector.notify import DeliveryError, build_receivers

    config = load(args)
    if args.receiver not in config.receivers:
        known = ", ".join(sorted(config.receivers)) or "none"
        raise ValueError(f"no receiver {args.receiver!r} in {args.config} (defined: {known})")
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    notification = Notification(
        event="firing",
        fingerprint="test",
        idempotency_key=f"test:{now}",
        rule="test",
        severity="warning",
        labels={"rule": "test", "severity": "warning", "gateway": "example"},
        summary=f"Test notification for receiver {args.receiver}: if you read this, it works.",
        at=now,
        since=now,
        episode=now,
    )
    with requests.Session() as session:
        receiver = build_receivers(config, session)[args.receiver]
        try:
            receiver.send_group([notification])
        except DeliveryError as exc:
            print(f"error: receiver {args.receiver}: {exc}", file=sys.stderr)
            return EXIT_ERROR
    print(f"sent a test notification to {args.receiver}")
    return EXIT_OK


def register(command: Command) -> None:
    notify = command("notify", "check a receiver's credentials and formatting", config=False)
    notify_commands = notify.add_subparsers(dest="notify_command", required=True)
    test = notify_commands.add_parser(
        "test", help="send a test notification to RECEIVER (exit 2 with its error)"
    )
    test.add_argument("receiver")
    test.add_argument("--config", default="alerts.yaml")
    test.set_defaults(handler=cmd_notify_test)
