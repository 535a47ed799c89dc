"""The ``detector`` command: run, check, validate, simulate, backtest, demo, silence, notify.

Exit codes: 0 all good, 1 something is firing (``check``), 2 an error (bad config,
unreadable database, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from pydantic import ValidationError

from detector import __version__
from detector.config import (
    Config,
    ConfigError,
    LabelMatcher,
    Route,
    check_regex,
    load_config,
    parse_duration,
)
from detector.db import DatabaseUrlError, check_url, connect
from detector.errors import DetectorError
from detector.model import Notification
from detector.source import FrameSource, SchemaError, SourceError, SqlSource
from detector.timeutil import short_utc

__all__ = ["main"]

log = logging.getLogger("detector")

EXIT_OK, EXIT_FIRING, EXIT_ERROR = 0, 1, 2


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # Their records quote request URLs, whose path and query are the credentials of an
    # incoming webhook; every failure they could report reaches the log through the
    # receivers' own (redacted) errors.
    for library in ("urllib3", "requests"):
        logging.getLogger(library).setLevel(logging.CRITICAL + 1)


def parse_time(text: str) -> datetime:
    """ISO-8601 (naive means UTC) or ``now``."""
    if text == "now":
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time such as 2026-11-20T14:00"
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _url_override(args: argparse.Namespace, option: str, variable: str) -> tuple[str, str]:
    """The URL given by ``--option`` or else the environment variable, with the name of
    whichever gave it; ``("", "")`` for neither."""
    if url := getattr(args, option, None):
        return url, f"--{option}"
    if url := os.environ.get(variable):
        return url, variable
    return "", ""


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    updates: dict[str, object] = {}
    sections = {"source": ("db", "DETECTOR_DB_URL"), "state": ("state", "DETECTOR_STATE_URL")}
    for section, (option, variable) in sections.items():
        url, name = _url_override(args, option, variable)
        if not url:
            continue
        try:
            check_url(url)
        except DatabaseUrlError as exc:
            raise DatabaseUrlError(f"{name}: {exc}") from None
        updates[section] = getattr(config, section).model_copy(update={"url": url})
    return config.model_copy(update=updates) if updates else config


def _source_name(args: argparse.Namespace) -> str:
    """Where the payments URL came from: the option, the variable or alerts.yaml's key."""
    return _url_override(args, "db", "DETECTOR_DB_URL")[1] or "source.url"


def _open_source(
    config: Config, *, strict: bool, bounded: bool = False, name: str = "source.url"
) -> SqlSource:
    """The payments source; a missing table/column is always fatal, an outage only if strict.
    ``bounded``: every query ends within ``source.query_timeout`` (the daemon's ticks);
    ``name``: the key or option that gave the URL, for its errors."""
    timeout = config.source_query_timeout if bounded else None
    engine = connect(config.source.url, query_timeout=timeout, name=name)
    source = SqlSource(engine, config.source)
    try:
        source.check()
    except SchemaError:
        raise
    except SourceError as exc:
        if strict:
            raise
        log.warning("%s; will keep retrying every tick", exc)
    return source


# --- commands -----------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load(args)

    def count(route: Route) -> int:
        return 1 + sum(count(child) for child in route.routes)

    print(
        f"{args.config}: OK - {len(config.gateways)} gateway(s) configured, "
        f"{len(config.receivers)} receiver(s), {count(config.route)} route(s), "
        f"tick every {config.schedule.interval.total_seconds():g}s"
    )
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from detector.notify import Receiver, build_receivers
    from detector.service.daemon import Daemon
    from detector.service.lease import Lease
    from detector.source import Source
    from detector.store import StateStore

    config = _load(args)
    source = _open_source(config, strict=False, bounded=True, name=_source_name(args))
    store = StateStore.open(config.state.url, config.state.query_timeout)
    replica = (
        os.environ.get("DETECTOR_REPLICA_ID")
        or config.ha.replica_id
        or f"{socket.gethostname()}:{os.getpid()}"
    )
    lease = Lease(store.engine, replica, config.ha.lease_ttl)
    with requests.Session() as session:

        def reload() -> tuple[Config, Source, dict[str, Receiver]]:
            nonlocal config, source
            new = _load(args)
            receivers = build_receivers(new, session)
            if new.source != config.source:
                opened = _open_source(new, strict=False, bounded=True, name=_source_name(args))
                source.engine.dispose()
                source = opened
            config = new
            return config, source, receivers

        daemon = Daemon(
            config, source, store, build_receivers(config, session), lease=lease, reload=reload
        )
        daemon.run()
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from detector.check import verdict_table

    config = _load(args)
    source = _open_source(config, strict=True, name=_source_name(args))
    firing = verdict_table(config, source, args.at or datetime.now(UTC), sys.stdout)
    return EXIT_FIRING if firing else EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from detector.simulate import Incident, simulate

    end = args.end or datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(days=args.days)
    incidents = [Incident.parse(text, start) for text in args.incident]
    began = time.perf_counter()
    rows = simulate(
        args.db, start, args.days, incidents=incidents, seed=args.seed, table=args.table
    )
    print(
        f"wrote {rows} payments from {start.isoformat(timespec='minutes')} to "
        f"{end.isoformat(timespec='minutes')} into {args.table} "
        f"in {time.perf_counter() - began:.1f}s",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_backtest(args: argparse.Namespace) -> int:
    from detector.backtest import aggregate, replay, write_jsonl, write_table

    config = _load(args)
    source = _open_source(config, strict=True, name=_source_name(args))
    began = time.perf_counter()
    if args.format == "html":
        counts = aggregate(config, source, args.start, args.end)
        events = list(replay(config, counts, args.start, args.end))
        sys.stdout.write(_report(config, counts, events, args.start, args.end))
        count = len(events)
    else:
        writer = write_jsonl if args.format == "jsonl" else write_table
        count = writer(replay(config, source, args.start, args.end), sys.stdout)
    log.info("backtest: %d transition(s) in %.1fs", count, time.perf_counter() - began)
    return EXIT_OK


def _report(
    config: Config, counts: FrameSource, events: list[Notification], start: datetime, end: datetime
) -> str:
    from detector.report import render

    return render(config, counts.read(start, end), events, start, end)


def cmd_demo(args: argparse.Namespace) -> int:
    from detector.backtest import aggregate, replay, write_table
    from detector.simulate import Incident, simulate

    config = load_config(args.config) if Path(args.config).exists() else Config()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="detector-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'payments.db'}"
    (folder / "payments.db").unlink(missing_ok=True)
    # Last week, Monday to Sunday: the incidents fall on the same days of the week and times
    # of day, so the output is the same whenever the demo runs.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = today - timedelta(days=today.weekday())
    start = end - timedelta(days=7)
    day6 = start + timedelta(days=5)
    incidents = [
        Incident("adyen", day6 + timedelta(hours=14), timedelta(minutes=45), failure_rate=0.12),
        Incident(
            "stripe",
            day6 + timedelta(days=1, hours=9, minutes=30),
            timedelta(minutes=12),
            failure_rate=1.0,
        ),
        Incident(
            "paypal", day6 + timedelta(days=1, hours=16), timedelta(minutes=40), volume_factor=0.0
        ),
    ]
    print(f"1/2 simulating a week of payments for 5 gateways into {url}", file=sys.stderr)
    began = time.perf_counter()
    rows = simulate(url, start, 7, incidents=incidents, seed=args.seed)
    print(f"    {rows} payments in {time.perf_counter() - began:.1f}s", file=sys.stderr)
    config = config.model_copy(update={"source": config.source.model_copy(update={"url": url})})
    print("2/2 replaying the week through the detector (the daemon's own engine)", file=sys.stderr)
    source = _open_source(config, strict=True)
    began = time.perf_counter()
    replay_start = start + timedelta(hours=3)
    counts = aggregate(config, source, replay_start, end)
    events = list(replay(config, counts, replay_start, end))
    write_table(iter(events), sys.stdout)
    print(f"replayed 7 days in {time.perf_counter() - began:.1f}s", file=sys.stdout)
    report = folder / "report.html"
    report.write_text(_report(config, counts, events, replay_start, end), encoding="utf-8")
    print(f"charts of the week and its alerts: {report}\n", file=sys.stdout)
    print(
        "injected incident                                      first alert         delay",
        file=sys.stdout,
    )
    for incident in incidents:
        effect = (
            f"failure rate {incident.failure_rate:.0%}"
            if incident.failure_rate is not None
            else f"volume x{incident.volume_factor:g}"
        )
        begins = incident.start.replace(tzinfo=UTC)
        first = next(
            (
                e
                for e in events
                if e.event == "firing"
                and e.labels.get("gateway") == incident.gateway
                and parse_time(e.at) >= begins
            ),
            None,
        )
        found = (
            f"{first.rule:<18}  {(parse_time(first.at) - begins).total_seconds() / 60:.0f} min"
            if first
            else "missed"
        )
        minutes = incident.duration.total_seconds() / 60
        label = f"{incident.gateway} {effect} for {minutes:.0f} min at {begins:%a %H:%M}"
        print(f"{label:<54} {found}", file=sys.stdout)
    return EXIT_OK


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

    config = _load(args)
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

    config = _load(args)
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


def cmd_notify_test(args: argparse.Namespace) -> int:
    from detector.model import Notification
    from detector.notify import DeliveryError, build_receivers

    config = _load(args)
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


# --- parser -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--version", action="version", version=f"detector {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--config", default="alerts.yaml", help="path of alerts.yaml (default: %(default)s)"
        )
        return sub

    run = command("run", "run the detector as a long-running service")
    run.add_argument(
        "--db", help="payments database URL (overrides source.url and DETECTOR_DB_URL)"
    )
    run.add_argument(
        "--state", help="state database URL (overrides state.url and DETECTOR_STATE_URL)"
    )
    run.set_defaults(handler=cmd_run)

    check = command("check", "evaluate once and print a verdict per gateway (exit 1 if any fires)")
    check.add_argument("--db", help="payments database URL")
    check.add_argument("--at", type=parse_time, help="evaluate as of this time (ISO-8601, UTC)")
    check.set_defaults(handler=cmd_check)

    validate = command("validate", "check alerts.yaml and print every problem with its key path")
    validate.set_defaults(handler=cmd_validate)

    simulate = commands.add_parser(
        "simulate", help="write synthetic payments with injected incidents"
    )
    simulate.add_argument("--db", required=True, help="database URL to write to")
    simulate.add_argument("--days", type=float, default=7.0)
    simulate.add_argument(
        "--end", type=parse_time, help="end of the simulated period (default: now)"
    )
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--table", default="payments")
    simulate.add_argument(
        "--incident",
        action="append",
        default=[],
        help="GATEWAY:START:DURATION:EFFECT, e.g. adyen:+5d14h:45m:failure_rate=0.12 "
        "(repeatable; see README)",
    )
    simulate.set_defaults(handler=cmd_simulate)

    backtest = command(
        "backtest", "replay history through the detector and print what would have fired"
    )
    backtest.add_argument("--db", help="payments database URL")
    backtest.add_argument("--start", type=parse_time, required=True)
    backtest.add_argument("--end", type=parse_time, default=datetime.now(UTC))
    backtest.add_argument(
        "--format",
        choices=["jsonl", "table", "html"],
        default="jsonl",
        help="jsonl: one JSON object per transition; table: for people; html: a report with "
        "charts per gateway (write it to a file: > report.html)",
    )
    backtest.set_defaults(handler=cmd_backtest)

    demo = command("demo", "simulate a week with incidents and show what the detector raises")
    demo.add_argument(
        "--dir", help="folder for the demo database (default: a new temporary folder)"
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(handler=cmd_demo)

    silence = commands.add_parser(
        "silence",
        help="mute the notifications of matching alerts for a while (in the state database)",
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
        "--for", dest="duration", type=_duration_arg, required=True, help="e.g. 2h or 30m"
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

    notify = commands.add_parser("notify", help="check a receiver's credentials and formatting")
    notify_commands = notify.add_subparsers(dest="notify_command", required=True)
    test = notify_commands.add_parser(
        "test", help="send a test notification to RECEIVER (exit 2 with its error)"
    )
    test.add_argument("receiver")
    test.add_argument("--config", default="alerts.yaml")
    test.set_defaults(handler=cmd_notify_test)
    return parser


def _duration_arg(text: str) -> timedelta:
    try:
        span = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if span <= timedelta(0):
        raise argparse.ArgumentTypeError("the duration must be positive")
    return span


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level, args.log_format)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except (DetectorError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
