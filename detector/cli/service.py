"""``detector run``, ``check`` and ``validate``: the service and its one-off verdicts."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from datetime import UTC, datetime

import requests

from detector.cli.common import (
    EXIT_FIRING,
    EXIT_OK,
    Command,
    load,
    open_source,
    parse_time,
    source_name,
    startup_warnings,
)
from detector.config import Config, Route

__all__ = ["register"]

log = logging.getLogger("detector")


def cmd_validate(args: argparse.Namespace) -> int:
    config = load(args)
    source = None
    if args.db is not None:  # --db, with or without a URL: check against the database too
        source = open_source(config, strict=True, name=source_name(args), every_column=True)
    try:
        warnings = startup_warnings(config, source, datetime.now(UTC))
    finally:
        if source is not None:
            source.engine.dispose()
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)

    def count(route: Route) -> int:
        return 1 + sum(count(child) for child in route.routes)

    checked = " and the payments table" if source is not None else ""
    print(
        f"{args.config}: OK - {len(config.gateways)} gateway(s) configured, "
        f"{len(config.receivers)} receiver(s), {count(config.route)} route(s), "
        f"tick every {config.schedule.interval.total_seconds():g}s{checked}"
        + (f"; {len(warnings)} warning(s)" if warnings else "")
    )
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from detector.notify import Receiver, build_receivers
    from detector.service.daemon import Daemon
    from detector.service.lease import Lease
    from detector.service.partition_leases import PartitionLeases
    from detector.source import Source
    from detector.store import StateStore
    from detector.volume_source import open_volumes

    config = load(args)
    source = open_source(config, strict=False, bounded=True, name=source_name(args))
    for warning in startup_warnings(config, source, datetime.now(UTC)):
        log.warning("%s", warning)
    volumes = open_volumes(config, strict=False, query_timeout=config.source_query_timeout)
    store = StateStore.open(config.state.url, config.state.query_timeout)
    replica = (
        os.environ.get("DETECTOR_REPLICA_ID")
        or config.ha.replica_id
        or f"{socket.gethostname()}:{os.getpid()}"
    )
    partitions = (
        PartitionLeases(store.engine, replica, config.ha.lease_ttl, config.ha.partitions)
        if config.ha.partitions > 1
        else None
    )
    lease = None if partitions else Lease(store.engine, replica, config.ha.lease_ttl)
    with requests.Session() as session:

        def reload() -> tuple[Config, Source, dict[str, Receiver]]:
            nonlocal config, source
            new = load(args)
            receivers = build_receivers(new, session)
            if new.source != config.source:
                opened = open_source(new, strict=False, bounded=True, name=source_name(args))
                source.engine.dispose()
                source = opened
            config = new
            return config, source, receivers

        daemon = Daemon(
            config,
            source,
            store,
            build_receivers(config, session),
            lease=lease,
            reload=reload,
            volumes=volumes,
            partitions=partitions,
        )
        daemon.run()
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from detector.check import verdict_table
    from detector.volume_source import open_volumes

    config = load(args)
    source = open_source(config, strict=True, name=source_name(args))
    volumes = None
    try:
        volumes = open_volumes(config, strict=True)
        at = args.at or datetime.now(UTC)
        firing = verdict_table(config, source, at, sys.stdout, volumes)
    finally:
        source.engine.dispose()
        if volumes is not None:
            volumes.dispose()
    return EXIT_FIRING if firing else EXIT_OK


def register(command: Command) -> None:
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
    validate.add_argument(
        "--db",
        nargs="?",
        const="",
        help="also check the payments table (columns, types, status values, gateway names) "
        "in this database; --db alone: in source.url (or DETECTOR_DB_URL)",
    )
    validate.set_defaults(handler=cmd_validate)
