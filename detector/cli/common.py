"""What every ``detector`` command shares: exit codes, logging, loading alerts.yaml with the
URL overrides, opening the payments source, and the time and duration arguments."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Protocol

from detector.config import Config, load_config, parse_duration
from detector.config.lint import label_warnings
from detector.db import DatabaseUrlError, check_url, connect
from detector.source import SourceError, SqlSource, check_at_start
from detector.table_check import data_warnings

__all__ = [
    "EXIT_ERROR",
    "EXIT_FIRING",
    "EXIT_OK",
    "Command",
    "duration_arg",
    "load",
    "open_source",
    "parse_time",
    "setup_logging",
    "source_name",
    "startup_warnings",
]


EXIT_OK, EXIT_FIRING, EXIT_ERROR = 0, 1, 2


class Command(Protocol):
    """Adds a subcommand to ``detector``; ``config``: it takes ``--config PATH``."""

    def __call__(
        self, name: str, help_text: str, *, config: bool = True
    ) -> argparse.ArgumentParser: ...


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


def setup_logging(level: str, fmt: str) -> None:
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


def load(args: argparse.Namespace, *, delivery: bool = True) -> Config:
    """alerts.yaml with the URL overrides; ``delivery=False``: without the receivers and
    routes (and so without their secrets), for commands that send nothing."""
    config = load_config(args.config, delivery=delivery)
    updates: dict[str, object] = {}
    sections = {"source": ("db", "DETECTOR_DB_URL"), "state": ("state", "DETECTOR_STATE_URL")}
    for section, (option, variable) in sections.items():
        url, name = _url_override(args, option, variable)
        if not url:
            continue
        try:
            check_url(url, state=section == "state")
        except DatabaseUrlError as exc:
            raise DatabaseUrlError(f"{name}: {exc}") from None
        updates[section] = getattr(config, section).model_copy(update={"url": url})
    return config.model_copy(update=updates) if updates else config


def source_name(args: argparse.Namespace) -> str:
    """Where the payments URL came from: the option, the variable or alerts.yaml's key."""
    return _url_override(args, "db", "DETECTOR_DB_URL")[1] or "source.url"


def open_source(
    config: Config,
    *,
    strict: bool,
    bounded: bool = False,
    name: str = "source.url",
    as_visible: bool = False,
    every_column: bool = False,
) -> SqlSource:
    """The payments source; a missing table/column is always fatal, an outage only if strict.
    ``bounded``: every query ends within ``source.query_timeout`` (the daemon's ticks);
    ``name``: the key or option that gave the URL, for its errors; ``as_visible``: reads the
    table as it stood at the source's ``as_of`` (``backtest --as-visible``);
    ``every_column``: the start-up check also covers the columns only other commands read
    (``validate --db``)."""
    timeout = config.source_query_timeout if bounded else None
    engine = connect(config.source.url, query_timeout=timeout, name=name)
    source = SqlSource(engine, config.source, config.latency_threshold, as_visible=as_visible)
    check_at_start(lambda: source.check(every_column=every_column), engine.dispose, strict=strict)
    return source


# How far back the status values and gateway names of the data are compared with alerts.yaml.
CHECKED_SPAN = timedelta(days=7)


def startup_warnings(config: Config, source: SqlSource | None, now: datetime) -> list[str]:
    """What in alerts.yaml can never take effect: labels no alert carries and, with a
    ``source``, status values and gateway names the last 7 days of payments do not show."""
    warnings = label_warnings(config)
    if source is None:
        return warnings
    start = now - CHECKED_SPAN
    try:
        statuses = source.values("status", start, now)
        gateways = source.values("gateway", start, now)
    except SourceError as exc:
        return [*warnings, f"source.url: {exc}; status values and gateway names not checked"]
    return warnings + data_warnings(config, statuses, gateways, "the last 7 days")


def duration_arg(text: str) -> timedelta:
    try:
        span = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if span <= timedelta(0):
        raise argparse.ArgumentTypeError("the duration must be positive")
    return span
