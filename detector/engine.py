"""One tick: source -> window -> rules -> alert lifecycle. Shared by the daemon and the backtest.

The engine keeps its state in memory and is told the time; persisting that state and
delivering notifications is the caller's business (the daemon does both, a backtest neither).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from detector.alerts import Alert, AlertBook, Transition
from detector.arrival import Arrival
from detector.chunked_source import ChunkedSource
from detector.config import Config, trace_link
from detector.invalid_rows import InvalidRows
from detector.lateness import FIRST_START_HOLD, PROBE_EVERY, Lateness
from detector.model import Counts
from detector.rules import (
    VOLUME_RULES,
    Calibration,
    LatencyWatch,
    Nowcast,
    QuarterHourTable,
    Replay,
    RuleResult,
    VolumeHistory,
    evaluate,
    minutes_needed,
    source_down_finding,
)
from detector.rules.quarter_hours import HISTORY_SLOTS, QuarterHourRead, reread_slots
from detector.rules.unmapped import UnmappedStatuses
from detector.series import DimensionSeries, series_dimensions, series_key
from detector.settlement import Settlement
from detector.source import Source, SourceError
from detector.stats.attribution import Attribution, attribute
from detector.stats.revenue import Loss, above_sla, short_of_volume
from detector.stats.seasonal import SLOT_MINUTES, SLOTS_PER_HOUR
from detector.timeutil import ceil_minute, epoch_minute, iso_z, minute_start
from detector.volume_source import VolumeSource, volume_config
from detector.window import CountWindow

__all__ = ["LEARNT_NAMES", "Engine", "TickResult"]

log = logging.getLogger(__name__)

# Rules whose message gains the top error codes, sample payment ids and the dimension values
# holding the excess failures when they fire.
_EXPLAINED_RULES = {"sla_breach", "outage"}
# Rules whose message says the money at risk when they fire (source.columns.amount).
_VALUED_RULES = {"sla_breach", "outage", "volume_drop"}
# Rules whose alert a segment's incident may explain: those judging the failure rate.
_SEGMENT_EXPLAINED_RULES = {"sla_breach", "outage"}
# The traffic whose average payment values the payments a volume drop misses.
_USUAL_TRAFFIC = timedelta(days=1)
# The quarter hours of the volume history one query reads: a UTC day.
HISTORY_CHUNK_SLOTS = 24 * SLOTS_PER_HOUR
# The estimates :meth:`Engine.learnt` saves, by name.
LEARNT_NAMES = ("lateness", "settlement", "arrival")
# The source settings that decide what the quarter hours of the volume history count.
_HISTORY_SOURCE_KEYS = {"url", "table", "columns", "statuses", "declines"}


def _series_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels naming an alert's series within its gateway; none for the gateway's own."""
    return {k: v for k, v in labels.items() if k not in ("rule", "gateway")}


@dataclass(frozen=True)
class TickResult:
    at: datetime
    transitions: list[Transition] = field(default_factory=list)
    rows: int = 0  # payment rows covered by the buckets read
    # Rows skipped for a null gateway or unknown status that no earlier tick counted.
    invalid_rows: int = 0
    skipped: tuple[tuple[str, int], ...] = ()  # why the rows read were skipped (all of them)
    read_seconds: float = 0.0
    seconds: float = 0.0
    error: str | None = None  # why the source could not be read


class Engine:
    """Evaluates every rule for every gateway at the times it is given.

    A replay, knowing every tick's counts in advance, passes its :class:`Replay` so that
    the rules compute an hour of ticks at once; the daemon passes none.
    """

    def __init__(
        self,
        config: Config,
        source: Source,
        replay: Replay | None = None,
        volumes: VolumeSource | None = None,
        volume_reads: ChunkedSource | None = None,
        hold_first_start: bool = False,
    ):
        self.config = config
        # Only a daemon holds its volume verdicts at a first start: it will tick again, while
        # ``detector check`` reads once and must say what the table shows now.
        self.hold_first_start = hold_first_start
        self.source = source
        self.replay = replay
        self.window = CountWindow(minutes_needed(config), gateways=config.gateways)
        self.series = (
            DimensionSeries(config, self.window.minutes, replay)
            if series_dimensions(config)
            else None
        )
        self.alerts = AlertBook(config)
        self.calibration = Calibration()
        # latency_breach's window of timed and slow payments, where latency is watched.
        self.latency = (
            LatencyWatch(config, self.window.minutes, replay) if config.latency_watched else None
        )
        self.volume_history: VolumeHistory | None = None
        # The weeks of quarter hours the volume history is made of (restored from the state
        # store, or read), and the first epoch hour of it read since it was last saved.
        self.quarter_hours: QuarterHourTable | None = None
        self.history_changed: int | None = None
        self.watermark: datetime | None = None  # time up to which payments have been read
        self.last_results: list[RuleResult] = []
        # The dimension series' sla_breach verdicts of the last tick (rows of series.window).
        self.last_series: RuleResult | None = None
        self.failed_ticks = 0
        self._failing_since: datetime | None = None
        # How late each gateway's rows arrive, where the read may reach further back than
        # source.late_arrival (source.max_late_arrival): None when it may not.
        self.lateness = _lateness_of(config)
        # How fast each gateway's pending rows settle, learnt where the re-read may reach
        # back far enough to see them settle (as lateness).
        self.settlement = None if self.lateness is None else Settlement(self.lateness.cap)
        # On a first start (nothing learnt of the lateness, none restored): the epoch minute
        # until which the volume rules hold their verdict on the newest minutes.
        self.held_until: int | None = None
        # How much of each gateway's newest minutes is visible by their age, and whether
        # its rows trickle in, for the volume rules (as lateness).
        self.arrival = None if self.lateness is None else Arrival(self.lateness.cap)
        self.invalid = InvalidRows()
        self.unmapped = UnmappedStatuses(list(config.gateways))
        # The business volumes (``volumes:``): an engine of their own for their reads, window
        # and history, whose volume verdicts join this one's alerts. A replay passes the
        # reads of the volumes streamed as its payments are (``volume_reads``), which their
        # rules then compute an hour of ticks at once from, as the gateways' do.
        self.volumes = (
            None
            if volumes is None
            else Engine(
                volume_config(config),
                volumes if volume_reads is None else volume_reads,
                replay=None if volume_reads is None else Replay(volume_reads),
            )
        )
        self.volume_source = volumes
        self.volume_results: dict[str, RuleResult] = {}

    def reconfigured(
        self, config: Config, source: Source, volumes: VolumeSource | None = None
    ) -> Engine:
        """A new engine for a reloaded config that carries on this one's alerts and outage count.

        Its window starts empty and is refilled by the next tick's warm-up read, since the
        new rules may need a longer look-back.
        """
        engine = Engine(config, source, volumes=volumes, hold_first_start=self.hold_first_start)
        engine.alerts.restore(self.alerts.alerts, self.alerts.resolved)
        engine.failed_ticks, engine._failing_since = self.failed_ticks, self._failing_since
        engine.invalid = self.invalid  # the warm-up read re-reads rows already counted
        if engine.history_key == self.history_key:  # the same payments, the same weeks
            engine.quarter_hours, engine.history_changed = self.quarter_hours, self.history_changed
        # What was learnt of late rows holds as long as the cap does.
        if self.lateness and engine.lateness and engine.lateness.cap == self.lateness.cap:
            engine.lateness, engine.settlement = self.lateness, self.settlement
            engine.held_until = self.held_until
            engine.arrival = self.arrival
        return engine

    def _read_range(self, now: datetime) -> tuple[datetime, datetime]:
        window_start = minute_start(ceil_minute(now) - self.window.minutes)
        if self.watermark is None:
            start = now - max(self.config.source.warmup, timedelta(minutes=self.window.minutes))
        else:
            start = min(self.watermark, now) - self._look_back(ceil_minute(now))
        # Whole minutes only: a re-read replaces entire buckets.
        return max(minute_start(epoch_minute(start)), window_start), now

    def _look_back(self, end_minute: int) -> timedelta:
        """How far before the last read this tick re-reads: ``source.late_arrival``, or
        as late as rows were seen to arrive (up to ``source.max_late_arrival``), and up to
        that cap on the ticks that look for rows later than that."""
        floor = self.config.source.late_arrival
        if self.lateness is None:
            return floor
        if self.lateness.probes(end_minute):
            return timedelta(minutes=self.lateness.cap)
        late = self.lateness.minutes(self.window.gateways)
        if self.settlement is not None:
            # Minutes are re-read until they settle, so that they are judged as they end up.
            late = np.maximum(late, self.settlement.settle_ages(self.window.gateways))
        return max(floor, timedelta(minutes=int(late.max(initial=0))))

    def _replace(self, first_minute: int, end_minute: int, counts: Counts) -> None:
        """Put the counts read into the window, and learn from how much the minutes read
        before have grown since (rows that arrived late) and how many of their rows are
        still pending (how fast they settle)."""
        window = self.window
        if self.lateness is None or self.settlement is None:
            window.replace(first_minute, end_minute, counts)
            return
        columns = slice(first_minute - end_minute + window.minutes, window.minutes)
        before = [c[:, columns].copy() for c in (window.payments, window.failures, window.volume)]
        window.replace(first_minute, end_minute, counts)  # may add gateways: new arrays
        after = [c[:, columns] for c in (window.payments, window.failures, window.volume)]
        grown = len(window.gateways) - len(before[0])
        before = [np.vstack([b, np.zeros((grown, b.shape[1]), np.int64)]) for b in before]
        # The minute a tick ended inside was not read whole: its later rows are on time.
        read_before = None if self.watermark is None else epoch_minute(self.watermark)
        gateways = window.gateways
        self.settlement.observe(
            gateways,
            end_minute,
            first_minute,
            read_before,
            (before[0], after[0]),
            (before[1], after[1]),
            (before[2], after[2]),
            # A first read sees each age once, for the ticks that did not watch them.
            weight=PROBE_EVERY if read_before is None else 1.0,
        )
        if read_before is not None:
            self.lateness.observe(
                gateways, end_minute, first_minute, read_before, before[2], after[2]
            )
            if self.arrival is not None:  # a first read has no counts before it
                self.arrival.observe(gateways, end_minute, first_minute, before[2], after[2])

    def late_minutes(self, gateways: list[str] | None = None) -> npt.NDArray[np.int64] | None:
        """Per gateway of the window (or of ``gateways``, a name per row): how many minutes
        late its rows arrive; None when none were seen late (or the read may not reach
        further back than late_arrival)."""
        if self.lateness is None:
            return None
        late = self.lateness.minutes(self.window.gateways if gateways is None else gateways)
        return late if late.any() else None

    def volume_late_minutes(self, end_minute: int) -> npt.NDArray[np.int64] | None:
        """Per gateway: how many of the newest minutes the volume rules leave out at the tick
        ending at ``end_minute``: as many as its rows arrive late, and on a first start at
        least what is left of :data:`~detector.lateness.FIRST_START_HOLD`."""
        late = self.late_minutes()
        held = 0 if self.held_until is None else self.held_until - end_minute
        if held <= 0:
            self.held_until = None
            return late
        floor = np.full(len(self.window.gateways), held, dtype=np.int64)
        return floor if late is None else np.maximum(late, floor)

    def nowcast(self, lateness: npt.NDArray[np.int64] | None) -> Nowcast | None:
        """Per gateway of the window: how much of its newest minutes is visible by their
        age, and whether the volume rules judge them on it; None where no gateway's rows
        arrive late (``lateness``, of :meth:`late_minutes`)."""
        if lateness is None or self.arrival is None:
            return None
        return self.arrival.nowcast(self.window.gateways, lateness)

    def learnt(self, gateways: Collection[str] | None = None) -> dict[str, str]:
        """What was learnt of the rows' lateness, settlement and arrival (of ``gateways``
        alone, if given: a partition's share), as texts for the state store, so that a
        restarted daemon does not start from nothing (see :meth:`restore_learnt`); empty
        where nothing is learnt."""
        if self.lateness is None or self.settlement is None:
            return {}
        lateness, settlement, arrival = self.lateness, self.settlement, self.arrival
        if gateways is not None:
            lateness, settlement = lateness.only(gateways), settlement.only(gateways)
            arrival = None if arrival is None else arrival.only(gateways)
        texts = {"lateness": lateness.to_text(), "settlement": settlement.to_text()}
        if arrival is not None:
            texts["arrival"] = arrival.to_text()
        return texts

    def restore_learnt(self, *saved: dict[str, str]) -> None:
        """Take what :meth:`learnt` saved (once, or once per partition held), where it was
        learnt with the same cap."""
        if self.lateness is None or self.settlement is None:
            return
        cap = self.lateness.cap
        lateness, settlement, arrival = [], [], []
        for texts in saved:
            late = Lateness.from_text(texts.get("lateness", ""), cap)
            settle = Settlement.from_text(texts.get("settlement", ""), cap)
            if late is not None and settle is not None:
                lateness.append(late)
                settlement.append(settle)
            arrived = Arrival.from_text(texts.get("arrival", ""), cap)
            if arrived is not None:
                arrival.append(arrived)
        if lateness:
            self.lateness = Lateness.joined(lateness)
            self.settlement = Settlement.joined(settlement)
        # Without a saved one the volume rules judge complete minutes until it is relearnt.
        self.arrival = Arrival.joined(arrival) if arrival else Arrival(cap)

    def judged_window(self) -> CountWindow:
        """The window the failure-rate rules judge: the minutes not settled yet with their
        pending rows counted (see :class:`~detector.settlement.Settlement`)."""
        return self.judged(self.window)

    def judged(self, window: CountWindow, gateways: list[str] | None = None) -> CountWindow:
        """What the failure-rate rules judge of ``window``, whose rows are its gateways or,
        with ``gateways`` (a gateway per row), dimension series of them: each row's minutes
        not settled yet with their pending rows counted, as its gateway's settle."""
        if self.settlement is None:
            return window
        return self.settlement.judged(window, gateways)

    def read(self, now: datetime) -> tuple[Counts, datetime, int]:
        """Read what is new into the window (and the volume history, hourly): the counts
        read, from when, and how many of their skipped rows are new. Raises SourceError."""
        start, end = self._read_range(now)
        counts = self.source.read(start, end, self.dimensions)
        end_minute = ceil_minute(now)
        if self._first_start():
            self.held_until = end_minute + FIRST_START_HOLD
        self.window.advance(end_minute)
        self._replace(epoch_minute(start), end_minute, counts)
        new_invalid = self.invalid.observe(
            epoch_minute(start), end_minute, counts.invalid_minutes, counts.invalid_per_minute
        )
        self.invalid.forget_before(end_minute - self.window.minutes)
        self.watermark = now
        self._refresh_history(end_minute)
        return counts, start, new_invalid

    def _first_start(self) -> bool:
        """Whether this is a live first read with nothing learnt of the rows' lateness (a
        replay of the final table has no late rows)."""
        return (
            self.hold_first_start
            and self.watermark is None
            and self.replay is None
            and self.lateness is not None
            and not self.lateness.gateways
        )

    def tick(self, now: datetime) -> TickResult:
        """Read what is new, update the window, evaluate the rules, advance the alerts."""
        began = time.perf_counter()
        try:
            counts, start, new_invalid = self.read(now)
        except SourceError as exc:
            return self._source_failed(now, str(exc), began)
        read_seconds = time.perf_counter() - began
        self.failed_ticks, self._failing_since = 0, None
        end_minute = ceil_minute(now)

        transitions = self.alerts.observe_findings("source_down", [], now)
        self.unmapped.update(epoch_minute(start), end_minute, counts)
        transitions += self.alerts.observe_findings(
            UnmappedStatuses.rule, self.unmapped.findings(now), now
        )
        self.alerts.forget_resolved_before(minute_start(end_minute - self.window.minutes))
        self._tick_volumes(now)
        shares = None
        if self.series is not None:
            # A replay's reads are its final counts: the series' are cut from its own.
            read_end = epoch_minute(now) if self.replay is not None else None
            self.series.update(epoch_minute(start), end_minute, counts, read_end)
            shares = self.series.shares
        if self.latency is not None:
            self.latency.update(epoch_minute(start), end_minute, counts)
        judged = self.judged_window()
        # Health and metrics read these: they stay per gateway.
        late = self.late_minutes()
        self.last_results = evaluate(
            judged,
            self.config,
            self.calibration,
            self.volume_history,
            shares,
            self.replay,
            self._restarts(self.window, series=False),
            late,
            volume_lateness=self.volume_late_minutes(end_minute),
            nowcast=self.nowcast(late),
        )
        if self.latency is not None:
            restarts = self._restarts(self.latency.window, False, LatencyWatch.rule.name)
            self.last_results.append(self.latency.evaluate(restarts))
        series = {} if self.series is None else self._series_verdicts(self.series)
        for result in self.last_results:
            if self.series is not None and result.rule in series:
                # The series' verdicts are more rows of the same rule, so that the alert
                # book resolves exactly the alerts no row holds any more. Held back as the
                # book stands after the rules before (a series outage tells an incident).
                rows = self.series.hold_back(series[result.rule], judged, self.alerts)
                if result.rule == "sla_breach":
                    self.last_series = rows
                result = result.concat(rows)
            if result.rule in self.volume_results:
                result = result.concat(self.volume_results[result.rule])
            transitions += self.alerts.observe(result, now)
        return TickResult(
            now,
            [self._explained(self._with_declines(t)) for t in transitions],
            rows=int(counts.volume.sum()),
            invalid_rows=new_invalid,
            skipped=counts.skipped,
            read_seconds=read_seconds,
            seconds=time.perf_counter() - began,
        )

    def _series_verdicts(self, series: DimensionSeries) -> dict[str, RuleResult]:
        """The dimension series' verdicts, each series judged as its gateway is: its minutes
        not settled yet with their pending rows counted, and its complete minutes only."""
        gateways = series.rows.gateways
        return series.verdicts(
            self._restarts(series.window, True),
            self.judged(series.window, gateways),
            self.late_minutes(gateways),
        )

    def explains(self, source: Alert, target: Alert) -> bool:
        """Whether ``source``'s incident explains ``target``, so that an inhibit rule
        pairing them may mute it. A segment's alert (a dimension series') explains an alert
        of its gateway, or of another of its segments, only when the target's payments
        outside the segment would not breach on their own
        (:meth:`~detector.series.DimensionSeries.explains`); the failure rate of those
        payments is all the windows know, so it explains no other rule's alert. What the
        rule's matchers pair otherwise (the gateway's outage and its breach) is explained."""
        segment = _series_labels(source.labels)
        gateway = source.labels.get("gateway")
        if not segment or gateway is None or target.labels.get("gateway") != gateway:
            return True
        if self.series is None or target.rule not in _SEGMENT_EXPLAINED_RULES:
            return False
        rate = target.evidence.baseline
        return self.series.explains(
            gateway,
            segment,
            _series_labels(target.labels),
            target.since,
            self.config.sla_for(gateway) if rate is None else rate,
            self.window,
        )

    def _tick_volumes(self, now: datetime) -> None:
        """The business volumes' verdicts, labelled by volume. When their database cannot
        be read the last ones stand: nothing can be concluded about them without data."""
        volumes, source = self.volumes, self.volume_source
        if volumes is None or source is None:
            return
        try:
            volumes.read(now)
        except SourceError as exc:
            volumes.failed_ticks += 1  # its verdicts are stale: no tick is quiet meanwhile
            log.warning("volumes: %s; their alerts keep their state", exc)
            return
        volumes.failed_ticks = 0
        labels = [source.labels[name] for name in volumes.window.gateways]
        late = volumes.late_minutes()
        volumes.last_results = evaluate(
            volumes.window,
            volumes.config,
            volumes.calibration,
            volumes.volume_history,
            replay=volumes.replay,
            lateness=late,
            volume_lateness=volumes.volume_late_minutes(ceil_minute(now)),
            noun="events",
            rules=VOLUME_RULES,
            nowcast=volumes.nowcast(late),
        )
        self.volume_results = {r.rule: r.as_volumes(labels) for r in volumes.last_results}

    def quiet(self, now: datetime) -> bool:
        """Whether a tick at ``now`` is known to change nothing, so that a replay may leave it
        out: no alert is open and the replay's hours of windows say that no rule is active
        for any gateway, dimension series or business volume then.
        The next tick's read reaches back to the watermark and covers the minutes left out,
        as after a tick the daemon missed."""
        end_minute = ceil_minute(now)
        return (
            not self.alerts.alerts  # the volumes' alerts are this book's too
            and self._rules_quiet(end_minute)
            and (self.latency is None or self.latency.quiet(end_minute))
            and (self.series is None or self.series.quiet(end_minute))
            and (self.volumes is None or self.volumes._rules_quiet(end_minute))
            # Last: they look at every gateway, the checks before at a flag each.
            and self.late_minutes() is None
            and self.judged_window() is self.window
            and (self.volumes is None or self.volumes.late_minutes() is None)
        )

    def _rules_quiet(self, end_minute: int) -> bool:
        """Whether the replay's hour of windows says that none of the rules of the last
        tick (bar latency_breach, whose window is :attr:`latency`'s) is active for any
        row of :attr:`window` at the tick ending before ``end_minute``."""
        return (
            self.replay is not None
            and self.failed_ticks == 0
            and bool(self.last_results)
            and self.replay.quiet(
                end_minute,
                [r.rule for r in self.last_results if r.rule != LatencyWatch.rule.name],
            )
        )

    def _restarts(
        self, window: CountWindow, series: bool, rule_name: str = "sla_breach"
    ) -> npt.NDArray[np.int64] | None:
        """Per row of ``window`` (gateways, or dimension series): the epoch minute after the
        tick its ``rule_name`` alert (sla_breach or latency_breach) last resolved at, from
        which its evidence counts; None when no row's alert resolved within the window."""
        restarts = None
        rows: dict[str, int] | None = None
        for resolution in self.alerts.resolved.values():
            labels = dict(resolution.labels)
            rule, gateway = labels.pop("rule"), labels.pop("gateway", None)
            if rule != rule_name or gateway is None or bool(labels) != series:
                continue
            if rows is None:
                rows = {key: i for i, key in enumerate(window.gateways)}
            row = rows.get(series_key(gateway, labels) if series else gateway)
            if row is None:
                continue
            if restarts is None:
                # Minute 0 for the rows without one: the same every tick, so that a replay
                # recomputes its hour's bank only when a restart changes.
                restarts = np.zeros(len(window.gateways), dtype=np.int64)
            restarts[row] = max(int(restarts[row]), ceil_minute(resolution.at))
        return restarts

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The dimension columns each read groups by (those of the dimension series)."""
        return self.series.dimensions if self.series is not None else ()

    @property
    def history_key(self) -> str:
        """What the quarter hours were read from: a persisted table of another source (its
        database, table, columns or statuses) is not this one's."""
        source = self.config.source
        read_as = source.model_dump(mode="json", include=_HISTORY_SOURCE_KEYS)
        return hashlib.sha256(json.dumps(read_as, sort_keys=True).encode()).hexdigest()

    def _refresh_history(self, end_minute: int) -> None:
        """Once an hour, bring the volume per quarter hour of the last weeks up to date: a
        GROUP BY of the quarter hours since the last read, from as far back as rows may
        arrive late (``source.max_late_arrival``), which replace what was read of them.

        The read is one query per UTC day (:data:`HISTORY_CHUNK_SLOTS`), oldest first,
        each kept as it comes: the weeks of a first read fit the query timeout a day at a
        time where a four-week GROUP BY on a large table or a loaded database may not, and
        when one day fails the next tick reads on from it. The rules and the status page's
        expected band use the history once it reaches the hour."""
        hour = (end_minute - 1) // 60
        if self.volume_history is not None and self.volume_history.end_hour == hour:
            return
        end_slot = hour * SLOTS_PER_HOUR
        first_slot = end_slot - HISTORY_SLOTS
        table = self.quarter_hours
        if table is not None:
            late = int(self.config.source.max_late_arrival.total_seconds() // 60)
            first_slot = max(first_slot, min(table.end_slot, end_slot) - reread_slots(late))
        # One table for the whole read, however many days it takes.
        read = QuarterHourRead(table, first_slot, end_slot)
        chunk = first_slot
        while chunk < end_slot:
            chunk_end = min(end_slot, (chunk // HISTORY_CHUNK_SLOTS + 1) * HISTORY_CHUNK_SLOTS)
            try:
                counts = self.source.quarter_hourly(
                    minute_start(chunk * SLOT_MINUTES), minute_start(chunk_end * SLOT_MINUTES)
                )
            except SourceError as exc:
                log.warning(
                    "could not read the volume history from %s on: %s",
                    iso_z(minute_start(chunk * SLOT_MINUTES)),
                    exc,
                )
                if chunk > first_slot:  # keep the days read: the next tick reads on from them
                    self.quarter_hours = read.table()
                return  # the previous hour's history (or the simple rules) serve meanwhile
            read.add(chunk_end, counts)
            changed = chunk // SLOTS_PER_HOUR
            if self.history_changed is not None:
                changed = min(changed, self.history_changed)
            self.history_changed = changed
            chunk = chunk_end
        if first_slot < end_slot:
            table = self.quarter_hours = read.table()
        if table is None:
            return
        if table.end_slot != end_slot:  # nothing to re-read of a table from a later hour
            table = self.quarter_hours = table.updated(end_slot, end_slot, Counts.empty())
        self.volume_history = VolumeHistory(
            hour, table, self.config.calendar, previous=self.volume_history
        )

    def _source_failed(self, now: datetime, error: str, began: float) -> TickResult:
        # Other alerts keep their state: nothing can be concluded about them without data.
        self.failed_ticks += 1
        self._failing_since = self._failing_since or now
        findings = []
        if self.failed_ticks >= self.config.schedule.source_down_after:
            findings.append(source_down_finding(self.failed_ticks, self._failing_since, error))
        transitions = self.alerts.observe_findings("source_down", findings, now)
        return TickResult(now, transitions, seconds=time.perf_counter() - began, error=error)

    def _with_declines(self, transition: Transition) -> Transition:
        """Add the declined payments of the evidence's minutes to a failure rate's evidence."""
        alert, evidence = transition.alert, transition.alert.evidence
        gateway = alert.labels.get("gateway")
        if evidence.value is None or not evidence.window_minutes or gateway is None:
            return transition
        if alert.rule == LatencyWatch.rule.name:  # its payments are the timed ones
            return transition
        series = _series_labels(alert.labels)
        window = self.window
        key = gateway
        if series and self.series is not None:
            window, key = self.series.window, series_key(gateway, series)
        row = window.row(key)
        if row is None:
            return transition
        declines = int(window.declines[row, window.recent(evidence.window_minutes)].sum())
        evidence = replace(evidence, declines=declines)
        return replace(transition, alert=replace(alert, evidence=evidence))

    def _explained(self, transition: Transition) -> Transition:
        """Add top error codes, sample payment ids (and their log searches) and the money at
        risk to a new firing alert's evidence."""
        alert = transition.alert
        gateway = alert.labels.get("gateway")
        if transition.event != "firing" or transition.repeat or gateway is None:
            return transition
        # A dimension series' alert is explained by its own payments (method=card only).
        series = _series_labels(alert.labels)
        evidence = alert.evidence
        if alert.rule in _VALUED_RULES:
            at_risk = self._revenue_at_risk(alert.rule, gateway, series, alert, transition.at)
            evidence = replace(evidence, revenue_at_risk=at_risk)
        if alert.rule in _EXPLAINED_RULES:
            codes, ids = self.source.evidence(gateway, alert.since, transition.at, series=series)
            held = self.alerts.alerts.get(alert.fingerprint)
            if held is not None:
                held.sample_payment_ids = ids
            template = self.config.source.trace_url
            evidence = replace(
                evidence,
                top_error_codes=codes,
                sample_payment_ids=ids,
                sample_payment_urls=tuple(
                    url for i in ids if (url := trace_link(template, i)) is not None
                ),
                attribution=self._attribution(gateway, series, alert.since, transition.at),
            )
        return replace(transition, alert=replace(alert, evidence=evidence))

    def _revenue_at_risk(
        self, rule: str, gateway: str, series: dict[str, str], alert: Alert, end: datetime
    ) -> tuple[Loss, ...]:
        """The money failed above the SLA since the alert's start, or for a volume drop the
        missing payments valued at the day before's average payment; per currency."""
        e = alert.evidence
        if rule != "volume_drop":
            amounts = self.source.amounts(gateway, alert.since, end, series)
            if amounts is None:
                return ()
            sla = e.baseline if e.baseline is not None else self.config.sla_for(gateway)
            return above_sla(
                amounts.currency,
                amounts.failures,
                amounts.failed_amount,
                amounts.payments,
                amounts.amount,
                sla,
            )
        if e.expected_payments is None:
            return ()
        usual = self.source.amounts(gateway, alert.since - _USUAL_TRAFFIC, alert.since, series)
        if usual is None:
            return ()
        missing = e.expected_payments - e.payments
        return short_of_volume(usual.currency, usual.payments, usual.amount, missing)

    def _attribution(
        self, gateway: str, series: dict[str, str], start: datetime, end: datetime
    ) -> Attribution | None:
        """Which dimension values hold the series' failures above its SLA since ``start``."""
        breakdown = self.source.breakdown(gateway, start, end)
        if breakdown is None:
            return None
        breakdown = breakdown.within(series)
        return attribute(
            breakdown.dimensions,
            breakdown.values,
            breakdown.payments,
            breakdown.failures,
            self.config.sla_for(gateway),
        )


def _lateness_of(config: Config) -> Lateness | None:
    """The lateness tracker, where ``source.max_late_arrival`` lets the read reach further
    back than ``source.late_arrival``."""
    source = config.source
    if source.max_late_arrival <= source.late_arrival:
        return None
    return Lateness(cap=max(1, round(source.max_late_arrival.total_seconds() / 60)))
