"""``detector silence`` and ``outbox``: what the state database holds for people to read."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import ValidationError

from detector.cli.common import EXIT_OK, Command, duration_arg, load, parse_time
from detector.config import LabelMatcher, check_regex
from detector.config.lint import unknown_label_warnings
from detector.timeutil import short_utc

__all__ = ["register"]


def _matchers(pairs: Sequence[str], *, regex: bool) -> dict[str, str]:
    found = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            option = "--match-re" if regex else "--match"
            raise ValueError(f"{option} {pair!r}: write LABEL=VALUE, e.g. gateway=stripe")
        found[name.strip()] = check_regex(value) if regex else value
    return found


def _matcher(text: str) -> LabelMatcher:
    try:
        return LabelMatcher.model_validate(text)
    except ValidationError as exc:
        raise ValueError(
            f"--matcher {exc.errors()[0]['msg'].removeprefix('Value error, ')}"
        ) from None


def cmd_silence(args: argparse.Namespace) -> int:
    from detector.store import StateStore

    config = load(args)
    store = StateStore.open(config.state.url)
    try:
        now = datetime.now(UTC)
        if args.silence_command == "add":
            match = _matchers(args.match, regex=False)
            match_re = _matchers(args.match_re, regex=True)
            matchers = [_matcher(text) for text in args.matcher]
            if not match and not match_re and not matchers:
                raise ValueError(
                    "a silence without --match, --match-re or --matcher would mute every alert"
                )
            # Still added: the label may be one a configuration to come gives its alerts.
            found = [("--match", label) for label in match]
            found += [("--match-re", label) for label in match_re]
            found += [("--matcher", m.name) for m in matchers]
            for warning in unknown_label_warnings(config, found):
                print(f"warning: {warning}", file=sys.stderr)
            starts = args.start or now
            silence = store.add_silence(
                match,
                match_re,
                starts,
                starts + args.duration,
                args.author,
                args.comment,
                matchers,
            )
            print(
                f"silence {silence.id} added: {silence.describe()} from "
                f"{short_utc(silence.starts_at)} until {short_utc(silence.ends_at)} "
                f"({silence.comment})"
            )
            return EXIT_OK
        if args.silence_command == "expire":
            if not store.expire_silence(args.id, now):
                raise ValueError(f"no silence {args.id!r} that has not ended yet")
            print(f"silence {args.id} expired")
            return EXIT_OK
        silences = store.silences(not_ended_at=None if args.all else now)
        print(
            f"{'id':<12}  {'state':<9}  {'starts':<16}  {'ends':<16}  {'by':<10}  matchers  comment"
        )
        for silence in silences:
            state = (
                "active"
                if silence.is_active(now)
                else ("expired" if silence.ends_at <= now else "scheduled")
            )
            print(
                f"{silence.id:<12}  {state:<9}  {short_utc(silence.starts_at):<16}  "
                f"{short_utc(silence.ends_at):<16}  {silence.created_by:<10}  "
                f"{silence.describe()}  {silence.comment}"
            )
        return EXIT_OK
    finally:
        store.engine.dispose()


def cmd_outbox(args: argparse.Namespace) -> int:
    from detector.store import StateStore

    config = load(args)
    store = StateStore.open(config.state.url)
    try:
        entries = store.deliveries()
    finally:
        store.engine.dispose()
    print(f"{'id':>6}  {'receiver':<14} {'state':<9} {'tries':>5}  {'event':<8} alert / last error")
    for entry in entries:
        state = (
            "delivered"
            if entry.get("delivered_at")
            else ("failed" if entry.get("failed_at") else "pending")
        )
        if state == "delivered" and not args.all:
            continue
        alert = " ".join(f"{k}={v}" for k, v in sorted(entry["labels"].items()))
        print(
            f"{entry['id']:>6}  {entry['receiver']:<14} {state:<9} {entry['attempts']:>5}  "
            f"{entry['event']:<8} {alert}"
        )
        for at, outcome, error in entry["history"]:
            print(f"{'':>8}{short_utc(at)} {outcome}" + (f": {error}" if error else ""))
    return EXIT_OK


def register(command: Command) -> None:
    silence = command(
        "silence",
        "mute the notifications of matching alerts for a while (in the state database)",
        config=False,
    )
    silences = silence.add_subparsers(dest="silence_command", required=True)

    def silence_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = silences.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", default="alerts.yaml")
        sub.add_argument("--state", help="state database URL (overrides state.url)")
        sub.set_defaults(handler=cmd_silence)
        return sub

    add = silence_command("add", "add a silence")
    add.add_argument(
        "--match", action="append", default=[], metavar="LABEL=VALUE", help="e.g. gateway=stripe"
    )
    add.add_argument(
        "--match-re",
        action="append",
        default=[],
        metavar="LABEL=REGEX",
        help="e.g. 'gateway=stripe|adyen' (anchored at both ends)",
    )
    add.add_argument(
        "--matcher",
        action="append",
        default=[],
        metavar="MATCHER",
        help="Alertmanager style, can say 'not': 'gateway!=sandbox', 'rule!~volume_.*'",
    )
    add.add_argument(
        "--for", dest="duration", type=duration_arg, required=True, help="e.g. 2h or 30m"
    )
    add.add_argument("--start", type=parse_time, help="when it starts (default: now)")
    add.add_argument("--comment", required=True, help="why, for whoever reads the list")
    add.add_argument("--author", default=os.environ.get("USER", "unknown"))
    listing = silence_command("list", "list silences that have not ended")
    listing.add_argument("--all", action="store_true", help="include ended silences")
    expire = silence_command("expire", "end a silence now")
    expire.add_argument("id")

    outbox = command(
        "outbox", "list notifications not delivered yet (or given up), with every attempt"
    )
    outbox.add_argument("--state", help="state database URL (overrides state.url)")
    outbox.add_argument("--all", action="store_true", help="include delivered ones")
    outbox.set_defaults(handler=cmd_outbox)
