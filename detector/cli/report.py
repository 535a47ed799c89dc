"""``detector report sla``: the monthly SLA compliance report, for vendor credit claims."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from detector.cli.common import EXIT_OK, Command, load, open_source, source_name

__all__ = ["register"]


def cmd_report_sla(args: argparse.Namespace) -> int:
    from detector.sla_report import render, sla_report
    from detector.store import StateStore

    config = load(args)
    source = open_source(config, strict=True, name=source_name(args))
    store = StateStore.open(config.state.url)
    try:
        report = sla_report(config, source, store, args.month, datetime.now(UTC))
    finally:
        source.engine.dispose()
        store.engine.dispose()
    sys.stdout.write(render(report, args.format))
    return EXIT_OK


def register(command: Command) -> None:
    from detector.sla_report import FORMATS

    report = command(
        "report", "reports from the payments and the stored alert history", config=False
    )
    reports = report.add_subparsers(dest="report_command", required=True)
    sla = reports.add_parser(
        "sla",
        help="per gateway: failure rate against its SLA, minutes in breach, worst day",
        description="The SLA compliance of one calendar month (UTC) per gateway.",
    )
    sla.add_argument("--config", default="alerts.yaml", help="path of alerts.yaml")
    sla.add_argument("--month", required=True, help="the month, YYYY-MM (e.g. 2026-11)")
    sla.add_argument(
        "--format",
        default="table",
        choices=FORMATS,
        help="table for people, json, csv, or html (printable: > sla-2026-11.html)",
    )
    sla.add_argument(
        "--db", help="payments database URL (overrides source.url and DETECTOR_DB_URL)"
    )
    sla.add_argument(
        "--state", help="state database URL (overrides state.url and DETECTOR_STATE_URL)"
    )
    sla.set_defaults(handler=cmd_report_sla)
