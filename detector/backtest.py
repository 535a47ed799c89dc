"""Replays history through the daemon's own engine in simulated time; never notifies.

The history is aggregated by the database a day at a time (one ``GROUP BY gateway, minute``
per day, :class:`~detector.chunked_source.ChunkedSource`), and the weeks before the range
that the seasonal volume history needs once per quarter hour; each simulated tick is then
served from those counts, so a replay costs about what those queries cost, and holds a day
and the rules' look-back whatever the range; the business volumes (``volumes:``) are read
the same way. Knowing every tick's counts in advance, the rules compute an hour of ticks at
once, and a tick they show to change nothing (no rule active for any gateway, dimension
series or business volume, no alert open) is left out: the next tick's read
covers its minutes, as the daemon's does after a missed tick, and the transitions are
exactly those of ticking every interval.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, TextIO

from detector.alerts import notification_for
from detector.chunked_source import ChunkedSource
from detector.config import Config
from detector.engine import Engine
from detector.model import Notification
from detector.notify import messages
from detector.rules import Replay, VolumeHistory, minutes_needed
from detector.rules.quarter_hours import HISTORY_SLOTS
from detector.series import series_dimensions
from detector.source import FrameSource, Source, SqlSource
from detector.stats.seasonal import SLOT_MINUTES
from detector.timeutil import epoch_minute, floor_minute
from detector.volume_source import VolumeSource, volume_config

__all__ = [
    "BacktestEvent",
    "Reads",
    "aggregate",
    "replay",
    "replay_as_visible",
    "streamed",
    "subject",
    "to_record",
    "write_jsonl",
    "write_table",
]

log = logging.getLogger(__name__)

BacktestEvent = Notification


def _history_start(config: Config, start: datetime) -> datetime:
    """The first minute a replay from ``start`` reads: the rules' look-back before it."""
    history = max(
        config.source.warmup,
        timedelta(minutes=minutes_needed(config)),
        timedelta(hours=VolumeHistory.hours_needed() + 1),  # the seasonal volume rules' weeks
    )
    return floor_minute(start) - history


@dataclass(frozen=True)
class Reads:
    """The counts a replay from ``start`` reads: per quarter hour from ``quarters_from``
    (the seasonal volume history's weeks), per minute from ``minutes_from`` (the rules'
    look-back, on a whole hour) to the end; epoch minutes."""

    quarters_from: int
    minutes_from: int
    # How far before the newest minute read a tick's reads reach back.
    look_back: int

    @classmethod
    def of(cls, config: Config, start: datetime) -> Reads:
        first_tick = epoch_minute(start)
        history = max(int(config.source.warmup.total_seconds() // 60) + 1, minutes_needed(config))
        # The first tick's hour is the one its last complete minute falls in.
        first_hour = (first_tick - 1) // 60 * 60
        minutes_from = (first_hour - history) // 60 * 60
        late = int(config.source.max_late_arrival.total_seconds() // 60)
        # A window, the hour a replay computes ahead, and the quarter hours late rows change.
        look_back = max(history, late + SLOT_MINUTES) + 2 * 60
        return cls(first_hour - HISTORY_SLOTS * SLOT_MINUTES, minutes_from, look_back)


def streamed(config: Config, source: Source, start: datetime, end: datetime) -> ChunkedSource:
    """The source a replay from ``start`` to ``end`` reads through: ``source`` a day at a
    time (see :class:`Reads`)."""
    reads = Reads.of(config, start)
    return ChunkedSource(
        source,
        series_dimensions(config),
        reads.quarters_from,
        reads.minutes_from,
        end,
        reads.look_back,
    )


def aggregate(config: Config, source: Source, start: datetime, end: datetime) -> FrameSource:
    """Every count a replay from ``start`` to ``end`` needs, history included, in one read.

    Given a :class:`FrameSource` (already aggregated) this only takes a slice of it.
    """
    first = _history_start(config, start)
    log.info("aggregating payments from %s to %s", first, end)
    counts = source.read(first, end, series_dimensions(config))
    return FrameSource(counts, evidence_from=source)


def replay(
    config: Config,
    source: Source,
    start: datetime,
    end: datetime,
    volumes: VolumeSource | None = None,
) -> Iterator[Notification]:
    """Tick from ``start`` to ``end`` at the configured interval; yield every alert transition.

    Ticks fall on whole minutes so each one sees exactly the complete minutes before it.
    Repeat reminders are not transitions and are left out. ``source`` is usually a
    :class:`SqlSource`; a :class:`FrameSource` of counts made in memory replays without SQL.
    With ``volumes`` (``volumes:``) the business volumes are counted once too and judged
    every tick as the daemon judges them, read a day at a time as the payments are.
    """
    interval = config.schedule.interval
    first_tick = floor_minute(start)
    frames = streamed(config, source, start, end)
    # The volumes are read as the payments are, with the settings they are judged with.
    volume_frames = (
        None if volumes is None else streamed(volume_config(config), volumes, start, end)
    )
    # Every tick's counts are known in advance: the rules are computed an hour at a time.
    engine = Engine(
        config, frames, replay=Replay(frames), volumes=volumes, volume_reads=volume_frames
    )
    now, ticks, quiet = first_tick, 0, 0
    while now <= end:
        ticks += 1
        if engine.quiet(now):
            quiet += 1  # nothing active, no alert open: the tick would change nothing
        else:
            for transition in engine.tick(now).transitions:
                if not transition.repeat:
                    yield notification_for(transition, config)
        now += interval
    log.info(
        "replayed %d ticks (%d known quiet and left out) from %d reads of payments, "
        "holding at most %d rows of counts",
        ticks,
        quiet,
        frames.chunks_read,
        frames.peak_rows,
    )
    if volume_frames is not None:
        log.info(
            "read the volumes in %d reads, holding at most %d rows of counts",
            volume_frames.chunks_read,
            volume_frames.peak_rows,
        )


def replay_as_visible(
    config: Config,
    source: SqlSource,
    start: datetime,
    end: datetime,
    volumes: VolumeSource | None = None,
) -> Iterator[Notification]:
    """Tick as the daemon would have, each tick reading the table as it stood then.

    ``source`` is opened ``as_visible``: each tick's reads count the rows inserted by the
    tick and the statuses they had then (:mod:`detector.visibility`). Nothing is known in
    advance, so every tick reads its look-back from the database, as the daemon does, and
    the engine runs without a :class:`Replay`: this costs what the daemon's ticks cost.
    Business volumes (``volumes``) are read as their tables stand.
    """
    interval = config.schedule.interval
    engine = Engine(config, source, volumes=volumes, hold_first_start=True)  # as a daemon starts
    now, ticks = floor_minute(start), 0
    while now <= end:
        source.as_of = now
        ticks += 1
        for transition in engine.tick(now).transitions:
            if not transition.repeat:
                yield notification_for(transition, config)
        now += interval
    log.info("replayed %d ticks as the table stood at each", ticks)


def to_record(event: Notification) -> dict[str, Any]:
    """The documented JSON object of one backtest event (a stable public contract)."""
    evidence = event.evidence
    return {
        "event": event.event,
        "at": event.at,
        "rule": event.rule,
        "severity": event.severity,
        "labels": event.labels,
        "value": evidence.value,
        "baseline": evidence.baseline,
        "payments": evidence.payments,
        "failures": evidence.failures,
        "declines": evidence.declines,
        "usual_decline_rate": evidence.usual_decline_rate,
        "interval": (
            [evidence.interval_low, evidence.interval_high]
            if evidence.interval_low is not None
            else None
        ),
        "p_value": evidence.p_value,
        "expected_payments": evidence.expected_payments,
        "window_minutes": evidence.window_minutes,
        "since": event.since,
        "summary": event.summary,
        "fingerprint": event.fingerprint,
        "top_error_codes": [{"code": c, "count": n} for c, n in evidence.top_error_codes],
        "statistic": evidence.statistic,
        "threshold": evidence.threshold,
        "magnitude": evidence.magnitude,
        "dispersion": evidence.dispersion,
        "attribution": messages.attribution_document(evidence.attribution),
        "revenue_at_risk": [asdict(loss) for loss in evidence.revenue_at_risk],
    }


def write_jsonl(events: Iterator[Notification], out: TextIO) -> int:
    count = 0
    for event in events:
        out.write(json.dumps(to_record(event), sort_keys=True) + "\n")
        out.flush()
        count += 1
    return count


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def subject(labels: dict[str, str]) -> str:
    """The gateway an alert is about, or the business volume."""
    return labels.get("gateway") or labels.get("volume") or "-"


def write_table(events: Iterator[Notification], out: TextIO) -> int:
    header = (
        f"{'at':<21} {'event':<9} {'severity':<9} {'rule':<11} {'gateway':<12} "
        f"{'rate':>7} {'SLA':>6} {'failed/payments':>16}"
    )
    out.write(header + "\n")
    count = 0
    for event in events:
        evidence = event.evidence
        counts = (
            f"{evidence.failures}/{evidence.payments}"
            if evidence.value is not None
            else f"{evidence.payments} payments"
        )
        out.write(
            f"{event.at:<21} {event.event:<9} {event.severity:<9} {event.rule:<11} "
            f"{subject(event.labels):<12} {_rate(evidence.value):>7} "
            f"{_rate(evidence.baseline):>6} {counts:>16}\n"
            f"{'':<21} {event.summary}\n"
        )
        count += 1
    out.write(f"{count} alert transition(s)\n")
    return count
