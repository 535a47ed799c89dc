"""``detector simulate``, ``backtest`` and ``demo``: synthetic payments and replays of history."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from detector.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    Command,
    load,
    open_source,
    parse_time,
    source_name,
)
from detector.config import Config, load_config
from detector.model import Notification
from detector.source import FrameSource

__all__ = ["register"]

log = logging.getLogger("detector")


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
    from detector.backtest import aggregate, replay, replay_as_visible, write_jsonl, write_table
    from detector.volume_source import open_volumes

    config = load(args, delivery=False)
    columns = config.source.columns
    if args.as_visible and columns.inserted_at is None and columns.updated_at is None:
        print(
            "error: --as-visible: set source.columns.inserted_at (when each row was written) "
            "and/or source.columns.updated_at (when a pending row settled) in alerts.yaml",
            file=sys.stderr,
        )
        return EXIT_ERROR
    source = open_source(config, strict=True, name=source_name(args), as_visible=args.as_visible)
    volumes = open_volumes(config, strict=True)
    began = time.perf_counter()
    try:
        if args.format == "html":
            # The charts show the table as it stands at the end; the alerts, with
            # --as-visible, what each tick saw.
            counts = aggregate(config, source, args.start, args.end)
            events = list(
                replay_as_visible(config, source, args.start, args.end, volumes)
                if args.as_visible
                else replay(config, counts, args.start, args.end, volumes)
            )
            sys.stdout.write(_report(config, counts, events, args.start, args.end))
            count = len(events)
        else:
            writer = write_jsonl if args.format == "jsonl" else write_table
            replayed = (
                replay_as_visible(config, source, args.start, args.end, volumes)
                if args.as_visible
                else replay(config, source, args.start, args.end, volumes)
            )
            count = writer(replayed, sys.stdout)
    finally:
        if volumes is not None:
            volumes.dispose()
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

    # The shipped defaults, whatever alerts.yaml lies in the current folder: the demo's
    # output is the same everywhere unless a config is asked for.
    config = load_config(args.config, delivery=False) if args.config else Config()
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
    source = open_source(config, strict=True)
    began = time.perf_counter()
    replay_start = start + timedelta(hours=3)
    try:
        counts = aggregate(config, source, replay_start, end)
        events = list(replay(config, counts, replay_start, end))
    finally:
        source.engine.dispose()
    if not args.dir:  # a week of payments is ~140 MB: not left behind in the temp folder
        (folder / "payments.db").unlink(missing_ok=True)
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


def register(command: Command) -> None:
    simulate = command("simulate", "write synthetic payments with injected incidents", config=False)
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
    backtest.add_argument(
        "--as-visible",
        action="store_true",
        help="replay what the daemon would have seen at each tick: rows by their insert time "
        "(source.columns.inserted_at), statuses pending until their update time "
        "(source.columns.updated_at); reads the database every tick, as the daemon does",
    )
    backtest.set_defaults(handler=cmd_backtest)

    demo = command(
        "demo", "simulate a week with incidents and show what the detector raises", config=False
    )
    demo.add_argument("--config", help="alerts.yaml to replay with (default: the shipped defaults)")
    demo.add_argument(
        "--dir",
        help="folder for the demo database, kept after the run (default: a new temporary "
        "folder, of which only report.html is kept)",
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(handler=cmd_demo)
