"""The long-running service: a tick job and a delivery job on APScheduler, clean shutdown.

Each tick's alert changes and the notifications they cause are committed to the state
store together; the delivery job drains the outbox independently, so a slow receiver
never delays detection.

Around that: the HTTP endpoint (:mod:`detector.service.web`), Prometheus metrics, SIGHUP config
reload, and the leader lease (:mod:`detector.service.lease`) that lets exactly one of several
replicas evaluate-and-notify while the others follow, ready to take over; or, with
``ha.partitions``, the partition leases (:mod:`detector.service.partition_leases`) with which
each replica ticks the gateways of its partitions.
"""

from __future__ import annotations

import functools
import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from detector.alerting.routing import Router
from detector.config import Config
from detector.engine import LEARNT_NAMES, Engine, TickResult
from detector.errors import DetectorError
from detector.notify.base import Receiver
from detector.notify.dispatch import Dispatcher
from detector.partitions import GLOBAL_PARTITION, Scope, partitioned
from detector.rules.quarter_hours import QuarterHourTable
from detector.service.health import (
    HealthTable,
    gateway_health,
    liveness,
    series_health,
    stale_since,
)
from detector.service.heartbeat import Heartbeat
from detector.service.history import History
from detector.service.leadership import Leadership
from detector.service.lease import Lease
from detector.service.metrics import Metrics
from detector.service.partition_leases import PartitionLeases
from detector.service.snapshot import Snapshot
from detector.service.volume_charts import VolumeCharts, firing_volumes, read_volume_charts
from detector.service.web import WebServer
from detector.source import Source, SourceError
from detector.store import FencedOut, StateStore, StoreError
from detector.store_history import HistoryUpdate
from detector.timeutil import ceil_minute, epoch_minute, iso_z
from detector.volume_source import VolumeSource

__all__ = ["Daemon", "utc_now"]

log = logging.getLogger(__name__)

DELIVERY_INTERVAL = timedelta(seconds=1)
HISTORY = timedelta(hours=24)
# Minutes between saves of the lateness and settlement estimates: a few hundred bytes per
# gateway, so not every tick.
LEARNT_EVERY = 10

# Builds what a SIGHUP reload swaps in: the new config, its source and its receivers.
Reloader = Callable[[], tuple[Config, Source, Mapping[str, Receiver]]]


def _saves_learnt(now: datetime) -> bool:
    """Whether the tick at ``now`` saves what the engine learnt of lateness and settlement:
    every ``LEARNT_EVERY`` minutes (a restart loses at most those minutes of it)."""
    return ceil_minute(now) % LEARNT_EVERY == 0


def _partition_key(name: str, partition: int) -> str:
    """The name a partition's share of a saved state goes by: ``lateness-p3``."""
    return f"{name}-p{partition}"


def _partition_history_key(engine: Engine, scope: Scope) -> str:
    """What a partition's weeks were read from: the source, and the partition count (with
    another count, a partition holds other gateways)."""
    return f"{engine.history_key}/{scope.count}"


def utc_now() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """Ticks the engine, persists its state, and delivers notifications."""

    def __init__(
        self,
        config: Config,
        source: Source,
        store: StateStore,
        receivers: Mapping[str, Receiver],
        clock: Callable[[], datetime] = utc_now,
        *,
        lease: Lease | None = None,
        registry: CollectorRegistry | None = None,
        reload: Reloader | None = None,
        volumes: VolumeSource | None = None,
        partitions: PartitionLeases | None = None,
    ):
        self.config = config
        self.store = store
        self.receivers = receivers
        self.clock = clock
        # With ha.partitions: the engine ticks the held partitions' gateways alone, and is
        # built again (from the stored alerts) whenever they change.
        self.partitions = partitions
        self._source, self._volumes = source, volumes
        self._ticking: tuple[str, ...] | None = None  # the gateways the engine was built for
        self._ticked: frozenset[int] = frozenset()  # and the partitions they were of
        self._known: list[str] = []  # the gateways seen in the payments so far
        self._discovered_until: datetime | None = None
        if partitions is not None:
            self.engine = self._partition_engine(Scope(partitions.count, frozenset()))
        else:
            self.engine = Engine(config, source, volumes=volumes, hold_first_start=True)
            # The window is refilled from the database on start; the alerts carry over, and
            # so do the volume rules' weeks of quarter hours (only the hours since are read).
            _, alerts = store.load()
            self.engine.quarter_hours = store.load_history(self.engine.history_key)
            # And what was learnt of how late the rows arrive and how fast they settle, so
            # that the first ticks judge the newest minutes as the last ones before the
            # restart did.
            self.engine.restore_learnt(store.load_learnt())
            self.engine.alerts.restore(alerts, store.resolutions())
            if alerts:
                log.info("restored %d pending/firing alert(s) from the state store", len(alerts))
        self.metrics = Metrics(registry if registry is not None else CollectorRegistry())
        self.registry = self.metrics.registry
        self.metrics.receivers(receivers)
        self.dispatcher = Dispatcher(
            store, receivers, clock, on_result=self.metrics.notification_result
        )
        self.router = Router(config, receivers)
        self._tick_ids = itertools.count(1)
        self._stop = threading.Event()
        self.last_tick: TickResult | None = None
        self.lease = lease
        self.leadership = Leadership(lease, clock, self.metrics.leader, self._take_over)
        replica = lease.holder if lease else None
        self.heartbeat = Heartbeat(config.heartbeat, self.metrics.heartbeat_result, replica)
        self._reload = reload
        self._reload_requested = threading.Event()
        self.history = History()
        self.started = clock()
        self.last_success: datetime | None = None
        self.last_problem: str | None = None
        # When the verdicts the API serves were made: the last tick that read the payments.
        self.last_read: datetime | None = None
        self._tick_started: datetime | None = None  # the tick in flight, if any
        self._snapshot = Snapshot(None, self.role, config, HealthTable.empty(config))
        # The snapshot served when the verdicts are stale or the role changed since it was
        # published: (published snapshot, stale reason, role, the one served).
        self._view: tuple[Snapshot, str | None, str, Snapshot] | None = None
        self.volume_charts: VolumeCharts | None = None

    def tick(self) -> TickResult:
        """One evaluation, committed to the store with the notifications it causes."""
        self._apply_requested_reload()
        tick_id = next(self._tick_ids)
        now = self._tick_started = self.clock()
        try:
            return self._tick(tick_id, now)
        finally:
            self._tick_started = None

    def _tick(self, tick_id: int, now: datetime) -> TickResult:
        if self.partitions is not None:
            leases, scope = self.partitions, self._hold_partitions(now)
            if not scope.held:
                return self._idle(tick_id, now)
            return self._evaluate(
                tick_id,
                now,
                lambda connection: leases.fence(connection, now, scope.held),
                scope,
            )
        if not self.leadership.hold(now):
            return self._follow(tick_id, now)
        lease = self.lease
        fence = None if lease is None else (lambda connection: lease.fence(connection, now))
        return self._evaluate(tick_id, now, fence)

    def _evaluate(
        self,
        tick_id: int,
        now: datetime,
        fence: Callable[[sa.Connection], bool] | None,
        scope: Scope | None = None,
    ) -> TickResult:
        """Tick the engine and commit what it found, as the leader or (``scope``) for the
        partitions held; ``fence`` checks the lease(s) inside the commit's transaction."""
        before = self.engine.alerts.snapshot()
        result = self.engine.tick(now)
        if scope is not None:
            result = self._owned(result, scope)
        history = self._history_updates(scope)
        try:
            deliveries = self.router.deliveries(
                result.transitions,
                self.engine.alerts.alerts,
                now,
                self.store.silences(not_ended_at=now),
                self.engine.explains,
            )
            queued = self.store.save_tick(
                self.engine.watermark,
                self.engine.alerts.alerts,
                deliveries,
                now,
                fence=fence,
                resolved=self.engine.alerts.resolved,
                transitions=result.transitions,
                history=history,
                learnt=self._learnt(scope) if _saves_learnt(now) else None,
                scope=scope,
            )
        except FencedOut:
            self.engine.alerts.restore(before)
            self._fenced_out()
            log.warning("tick %d: lost a lease mid-tick; not saved", tick_id)
            self._publish(result, "follower")
            return result
        except StoreError as exc:
            # Forget this tick's transitions so the next tick makes (and saves) them again.
            self.engine.alerts.restore(before)
            log.error("tick %d: %s; the transitions will be retried next tick", tick_id, exc)
            self._publish(result, "store_error", str(exc))
            return result
        if history:
            self.engine.history_changed = None
        self._log_tick(tick_id, result, queued)
        self.last_tick = result
        self._publish(result, "source_error" if result.error else "ok")
        # Read the payments and saved the state: alive and well.
        if result.error is None and (scope is None or GLOBAL_PARTITION in scope.held):
            self.heartbeat.beat(now)
        return result

    def _fenced_out(self) -> None:
        if self.partitions is not None:
            self.partitions.lost()
            # Built again from the stored alerts and weeks at the next tick.
            self._ticking, self._ticked = None, frozenset()
        else:
            self.leadership.lost()

    def _log_tick(self, tick_id: int, result: TickResult, queued: int) -> None:
        if result.error:
            log.warning(
                "tick %d: payments source unreachable (%d tick(s) in a row): %s",
                tick_id,
                self.engine.failed_ticks,
                result.error,
            )
        else:
            log.info(
                "tick %d: read %d rows (%d new invalid skipped) in %.3fs, evaluated %d gateways "
                "in %.3fs; %d transition(s), %d notification(s) queued",
                tick_id,
                result.rows,
                result.invalid_rows,
                result.read_seconds,
                len(self.engine.window.gateways),
                result.seconds,
                len(result.transitions),
                queued,
            )
        for transition in result.transitions:
            log.info(
                "alert %s %s%s: %s",
                transition.alert.fingerprint,
                transition.event,
                " (repeat)" if transition.repeat else "",
                transition.alert.summary,
            )

    # --- ha.partitions --------------------------------------------------------------------------

    def _hold_partitions(self, now: datetime) -> Scope:
        """Balance the partition leases, and build the engine again for the gateways of the
        partitions held if they changed."""
        assert self.partitions is not None
        held = self.partitions.balance(now)
        if GLOBAL_PARTITION in held:
            self._discover(now)
        try:
            self._known = self.store.known_gateways()
        except StoreError as exc:
            log.warning("the gateways seen could not be read (%s); ticking those known", exc)
        scope = Scope(self.partitions.count, held)
        # Built again for other gateways, and for a partition taken (even one this replica
        # held before): its alerts are as its last holder committed them.
        gateways = self._gateways(scope)
        if self.partitions.taken or gateways != self._ticking:
            # A gateway new in a partition ticked already is in none of the saved weeks:
            # those of the partitions held are read whole, its past weeks with them.
            new = set(gateways) - set(self._ticking or ())
            seen = partitioned(new, scope.count, self._ticked & scope.held)
            self.engine = self._partition_engine(scope, saved_weeks=not seen)
        return scope

    def _gateways(self, scope: Scope) -> tuple[str, ...]:
        """The gateways of the held partitions: those configured and those seen."""
        names = set(self.config.gateways) | set(self._known)
        return tuple(partitioned(names, scope.count, scope.held))

    def _partition_engine(self, scope: Scope, *, saved_weeks: bool = True) -> Engine:
        """An engine reading the gateways of ``scope`` alone, continuing from their stored
        alerts (so a partition taken over neither fires again nor loses a resolve) and, with
        ``saved_weeks``, their saved weeks of quarter hours; the holder of partition 0 also
        runs the business volumes."""
        gateways = self._gateways(scope)
        config = self.config.model_copy(
            update={"gateways": {g: c for g, c in self.config.gateways.items() if g in gateways}}
        )
        volumes = self._volumes if GLOBAL_PARTITION in scope.held else None
        engine = Engine(config, self._source.only(gateways), volumes=volumes, hold_first_start=True)
        if scope.held:
            _, alerts = self.store.load()
            mine = {key: a for key, a in alerts.items() if scope.owns(a.labels)}
            engine.alerts.restore(mine, self.store.resolutions(scope))
            self._restore_learnt(engine, scope, saved_weeks=saved_weeks)
            log.info(
                "ticking %d gateway(s) of partition(s) %s; continuing from %d stored alert(s)",
                len(gateways),
                ", ".join(str(p) for p in sorted(scope.held)),
                len(mine),
            )
        self._ticking, self._ticked = gateways, scope.held
        return engine

    def _restore_learnt(self, engine: Engine, scope: Scope, *, saved_weeks: bool) -> None:
        """Continue from the held partitions' learnt estimates and (``saved_weeks``) saved
        weeks of quarter hours, of which the engine reads only the hours since, as a
        restart does."""
        key = _partition_history_key(engine, scope)
        saved = [self.store.load_history(key, p) for p in sorted(scope.held)] if saved_weeks else []
        tables = [table for table in saved if table is not None]
        # A partition with no saved weeks has its gateways' weeks read anew: all of them.
        if tables and len(tables) == len(saved):
            engine.quarter_hours = QuarterHourTable.joined(tables)
        learnt = self.store.load_learnt()
        engine.restore_learnt(
            *(
                {name: learnt.get(_partition_key(name, p), "") for name in LEARNT_NAMES}
                for p in sorted(scope.held)
            )
        )

    def _discover(self, now: datetime) -> None:
        """The holder of partition 0 records the gateways that appear in the payments, so
        that the replica holding each one's partition ticks it."""
        start = self._discovered_until or now - timedelta(minutes=self.engine.window.minutes)
        try:
            seen = self._source.gateway_names(start - timedelta(minutes=1), now)
            unknown = set(seen) - set(self._known) - set(self.config.gateways)
            if unknown:
                self._known = self.store.add_gateways(unknown)
                log.info("%d gateway(s) seen for the first time", len(unknown))
        except (SourceError, StoreError) as exc:
            log.warning("could not look for new gateways: %s", exc)
            return
        self._discovered_until = now

    def _owned(self, result: TickResult, scope: Scope) -> TickResult:
        """Drop the alerts of no held partition (``source_down`` of a replica not holding
        partition 0): their partition's holder raises them."""
        book = self.engine.alerts
        for key in [k for k, a in book.alerts.items() if not scope.owns(a.labels)]:
            del book.alerts[key]
        return replace(
            result, transitions=[t for t in result.transitions if scope.owns(t.alert.labels)]
        )

    def _idle(self, tick_id: int, now: datetime) -> TickResult:
        """A replica holding no partition reads and saves nothing until it gets one."""
        result = TickResult(at=now)
        log.info("tick %d: holds no partition; waiting for one", tick_id)
        self.last_tick = result
        self._publish(result, "follower")
        return result

    def _history_updates(self, scope: Scope | None) -> list[HistoryUpdate]:
        """The quarter hours read since the store last saved them, if any: with ``scope``,
        each held partition's gateways as that partition's."""
        engine = self.engine
        table, changed = engine.quarter_hours, engine.history_changed
        if table is None or changed is None:
            return []
        if scope is None:
            return [HistoryUpdate(engine.history_key, table, changed)]
        key = _partition_history_key(engine, scope)
        return [
            HistoryUpdate(
                key, table.only(partitioned(table.gateways, scope.count, [p])), changed, p
            )
            for p in sorted(scope.held)
        ]

    def _learnt(self, scope: Scope | None) -> dict[str, str]:
        """What the engine learnt of lateness and settlement, by the names it is saved
        under: with ``scope``, each held partition's gateways as that partition's."""
        if scope is None:
            return self.engine.learnt()
        gateways = self._ticking or ()
        return {
            _partition_key(name, p): text
            for p in sorted(scope.held)
            for name, text in self.engine.learnt(partitioned(gateways, scope.count, [p])).items()
        }

    def deliver(self, *, wait: bool = True) -> None:
        """One delivery pass; without ``wait`` it does not wait for a slow receiver."""
        # A leader whose renewals failed stops sending before anyone else may take over.
        if not self._delivers():
            return
        try:
            if self.dispatcher.deliver_due(wait=wait).delivered:
                self.metrics.outbox_depth.set(self.store.outbox_depth())
        except StoreError as exc:
            log.error("delivery paused: %s", exc)
        except Exception:
            # A scheduler job, and a step of the shutdown flush: whatever else goes wrong in
            # one pass is logged with its traceback and must not stop the passes after it.
            log.exception("delivery pass failed; retrying next pass")

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:
            # The scheduler's tick job: one bad tick (a bug, or the state database failing
            # where the tick has no fallback) is logged and must not stop the service.
            log.exception("tick failed; the next tick will try again")

    def _tick_skipped(self, event: JobEvent) -> None:
        """A tick the scheduler did not start because the one before has not finished.

        Every query is bounded, so a tick that outlives its interval is slow rather than
        stuck; the API turns the verdicts ``unknown`` once they are too old either way.
        """
        if event.job_id != "tick":
            return
        self.metrics.ticks.labels("skipped").inc()
        started = self._tick_started
        log.warning(
            "tick skipped: the previous tick %s",
            f"has been running since {iso_z(started)}" if started else "ran past its time",
        )

    # --- leadership -----------------------------------------------------------------------------

    def _delivers(self) -> bool:
        """Whether this replica sends the outbox: the leader, or the holder of partition 0
        (a message may group the alerts of gateways of several partitions)."""
        if self.partitions is not None:
            return self.partitions.holds_global(self.clock())
        return self.leadership.leading()

    @property
    def role(self) -> str:
        """``leader`` only while this replica's clock says the lease it last renewed has not
        expired: a renewal stuck on a frozen state connection does not keep it leading.
        With partitions: ``leader`` while it holds some partition."""
        if self.partitions is not None:
            return "leader" if self.partitions.holding(self.clock()) else "follower"
        return self.leadership.role

    @property
    def lease_holder(self) -> str | None:
        """The replica leading as far as this one knows (None: nobody, or unknown)."""
        return self.leadership.holder

    def leadership_problem(self) -> str | None:
        """Why nobody may be notifying, as far as this replica can tell (None: fine)."""
        if self.partitions is not None:
            error = self.partitions.error
            return f"cannot renew the partition leases: {error}" if error else None
        return self.leadership.problem()

    def partitions_held(self) -> dict[str, object]:
        """With ``ha.partitions``: what this replica holds, and who holds each partition as
        it last read (for a router to find the replica that ticks a gateway)."""
        assert self.partitions is not None
        leases = self.partitions
        return {
            "count": leases.count,
            "held": sorted(leases.holding(self.clock())),
            "holders": {str(p): holder for p, holder in sorted(leases.assignment.items())},
            "gateways": len(self._ticking or ()),
        }

    def _take_over(self) -> None:
        """Continue exactly where the previous leader's last committed tick left off."""
        assert self.lease is not None
        _, alerts = self.store.load()
        self.engine.alerts.restore(alerts, self.store.resolutions())
        log.info(
            "became the leader (replica %s, term %s); continuing from %d stored alert(s)",
            self.lease.holder,
            self.lease.term,
            len(alerts),
        )

    def _renew_lease(self) -> None:
        """Between ticks, so that a long interval never lets the lease lapse."""
        if self.partitions is not None:
            self.partitions.renew(self.clock())
        else:
            self.leadership.hold(self.clock(), renew_only=True)

    def _follow(self, tick_id: int, now: datetime) -> TickResult:
        """Evaluate without notifying, from the leader's stored alerts, to serve the API."""
        problem = None
        try:
            _, alerts = self.store.load()
            resolved = self.store.resolutions()
        except StoreError as exc:  # the state database may be what made us lose the lease
            problem = str(exc)
            log.warning("tick %d (follower): %s", tick_id, problem)
        else:
            self.engine.alerts.restore(alerts, resolved)
        result = self.engine.tick(now)
        log.info(
            "tick %d (follower): read %d rows in %.3fs%s",
            tick_id,
            result.rows,
            result.seconds,
            f"; payments source unreachable: {result.error}" if result.error else "",
        )
        self.last_tick = result
        self._publish(result, "follower", problem)
        return result

    # --- what the HTTP endpoint shows -----------------------------------------------------------

    def _publish(self, result: TickResult, outcome: str, problem: str | None = None) -> None:
        """Update metrics, the 24 h history and the snapshot the HTTP threads read.

        A tick succeeded (for ``/healthz``) when it read the payments and, as the leader,
        saved its state or, as a follower, read the leader's (``problem`` says what failed).
        """
        alerts = list(self.engine.alerts.alerts.values())
        health = gateway_health(
            self.engine.window, alerts, self.config, result.error, self.engine.last_results
        )
        self.last_problem = problem or result.error
        if result.error is None and problem is None:
            self.last_success = result.at
        if result.error is None:
            self.last_read = result.at
        if result.error is None:
            firing = [
                a.labels["gateway"] for a in alerts if a.state == "firing" and "gateway" in a.labels
            ]
            self.history.update(self.engine.window, firing)
        self.metrics.observe_tick(result, outcome)
        series = self.engine.series
        verdicts = self.engine.last_series
        self.metrics.observe_health(
            health,
            alerts,
            self.engine.last_results,
            None
            if series is None or verdicts is None
            else series_health(series.window, verdicts, self.config),
        )
        try:
            self.metrics.outbox_depth.set(self.store.outbox_depth())
        except StoreError as exc:
            log.debug("outbox depth unavailable: %s", exc)
        self._refresh_volume_charts(result.at)
        self._snapshot = Snapshot(
            result.at,
            self.role,
            self.config,
            health,
            self.history.snapshot(self.engine.volume_history, self.last_read),
            self._silences(),
            self.volume_charts,
            firing_volumes(alerts),
        )

    def _refresh_volume_charts(self, now: datetime) -> None:
        """Re-read the ``/volumes`` charts once an hour (one GROUP BY per volume)."""
        source = self.engine.volume_source
        hour = epoch_minute(now) // 60
        if source is None or (
            self.volume_charts is not None and self.volume_charts.end_hour == hour
        ):
            return
        try:
            self.volume_charts = read_volume_charts(source, self.config.calendar, hour)
        except SourceError as exc:
            log.warning("could not read the volumes' charts: %s", exc)

    def _silences(self) -> list[dict[str, Any]]:
        """The silences in force now, as the status page lists them."""
        now = self.clock()
        try:
            silences = self.store.silences(not_ended_at=now)
        except StoreError as exc:
            log.debug("silences unavailable: %s", exc)
            return []
        return [
            {
                "matchers": s.describe(),
                "until": s.ends_at.isoformat(timespec="minutes"),
                "comment": s.comment,
            }
            for s in silences
            if s.is_active(now)
        ]

    @property
    def _fresh_for(self) -> timedelta:
        """How long verdicts (and a successful tick) stay current: ``server.unhealthy_after``
        intervals, for /healthz and /api/v1/gateways alike."""
        return self.config.schedule.interval * self.config.server.unhealthy_after

    def _stale_since(self) -> datetime | None:
        return stale_since(self.clock(), self.started, self.last_read, self._fresh_for)

    def snapshot(self) -> Snapshot:
        """The last tick's view, with every gateway ``unknown`` once its verdicts are older
        than ``server.unhealthy_after`` intervals: a router must not fail over, or stay, on
        a verdict nobody renewed."""
        published = self._snapshot
        role = self.role
        since = self._stale_since()
        if since is None and published.role == role:
            return published
        reason = None if since is None else self._stale_reason()
        view = self._view
        # Built once per published snapshot, reason and role, so the HTTP server's
        # rendering cache (keyed on the snapshot) serves it to every client.
        if view is None or view[0] is not published or view[1:3] != (reason, role):
            served = replace(published, role=role)
            if since is not None and reason is not None:
                served = replace(served, health=published.health.stale(since, reason))
            view = self._view = (published, reason, role, served)
        return view[3]

    def _stale_reason(self) -> str:
        read = f"payments last read at {iso_z(self.last_read)}" if self.last_read else "no read"
        started = self._tick_started
        why = (
            f"the tick started at {iso_z(started)} has not finished"
            if started
            else (f"last tick: {self.last_problem}" if self.last_problem else "no tick ran")
        )
        return f"no fresh verdict ({read}, limit {self._fresh_for.total_seconds():.0f}s): {why}"

    def exposition(self) -> bytes:
        """``/metrics``."""
        self.metrics.leader.set(1 if self.role == "leader" else 0)  # a lapsed lease is no lead
        return self.metrics.exposition()

    def healthz(self) -> tuple[int, dict[str, object]]:
        last = self.last_tick
        code, body = liveness(
            self.clock(),
            self.started,
            self.last_success,
            self._fresh_for,
            last.error if last else None,
            self.engine.failed_ticks,
            self.config.schedule.source_down_after,
            self.role,
            self.last_problem,
            self._stale_since(),
        )
        body["lease_holder"] = self.lease_holder
        if self.partitions is not None:
            body["partitions"] = self.partitions_held()
        problem = self.leadership_problem()
        if problem is None:
            return code, body
        reason = problem if code == 200 else f"{problem}; {body['reason']}"
        return 503, {**body, "status": "unhealthy", "reason": reason}

    def backfill_history(self) -> None:
        """Fill the status page's 24 h charts at start: counts aggregated by the payments
        database, alert spans from the notifications in the outbox and the firing alerts."""
        now = self.clock()
        try:
            counts = self.engine.source.read(now - HISTORY, now)
        except SourceError as exc:
            log.warning("status page history starts empty: %s", exc)
            return
        self.history.backfill(counts, epoch_minute(now) + 1)
        try:
            notified = self.store.notified_since(now - HISTORY)
        except StoreError as exc:
            log.warning("status page shows no past alert spans: %s", exc)
            return
        fired: dict[str, datetime] = {}
        for n in notified:
            gateway = n.labels.get("gateway")
            if gateway is None or n.repeat:
                continue
            at = datetime.fromisoformat(n.at)
            if n.event == "firing":
                fired.setdefault(n.fingerprint, at)
            elif n.fingerprint in fired:
                start = fired.pop(n.fingerprint)
                self.history.mark_alerting(gateway, epoch_minute(start), epoch_minute(at) + 1)
        for alert in self.engine.alerts.alerts.values():
            gateway = alert.labels.get("gateway")
            if alert.state == "firing" and gateway is not None:
                start = alert.fired_at or alert.active_since
                self.history.mark_alerting(gateway, epoch_minute(start), epoch_minute(now) + 1)

    # --- SIGHUP ---------------------------------------------------------------------------------

    def request_reload(self, _signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Reload alerts.yaml before the next tick (signal handlers must not do the work)."""
        log.info("received SIGHUP: alerts.yaml will be reloaded before the next tick")
        self._reload_requested.set()

    def _apply_requested_reload(self) -> None:
        if self._reload is None or not self._reload_requested.is_set():
            return
        self._reload_requested.clear()
        try:
            config, source, receivers = self._reload()
        except DetectorError as exc:
            self.metrics.reloads.labels("rejected").inc()
            log.error("config reload rejected, the running config stays in force: %s", exc)
            return
        for key in ("state", "server", "ha", "volumes"):
            if getattr(config, key) != getattr(self.config, key):
                log.warning("config reload: changes to %s: take effect only after a restart", key)
        if self.partitions is not None:
            # Built again for it at the next tick.
            self._source, self._ticking, self._ticked = source, None, frozenset()
        else:
            self.engine = self.engine.reconfigured(config, source, self.engine.volume_source)
        self.config = config
        self.receivers = receivers
        self.dispatcher.receivers = receivers
        self.metrics.receivers(receivers)
        self.router = Router(config, receivers)
        self.heartbeat.config = config.heartbeat
        self.metrics.reloads.labels("applied").inc()
        log.info(
            "config reloaded: %d gateway(s) configured, receivers: %s",
            len(config.gateways),
            ", ".join(receivers) or "none",
        )

    # --- lifecycle ------------------------------------------------------------------------------

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("received %s, finishing the tick in flight", signal.Signals(signum).name)
        self._stop.set()

    def _flush(self) -> None:
        """Deliver what the outbox can send within ``schedule.shutdown_grace``."""
        deadline = time.monotonic() + self.config.schedule.shutdown_grace.total_seconds()
        while True:
            self.deliver(wait=False)  # a receiver still sending must not outlast the grace
            remaining = deadline - time.monotonic()
            if not self._delivers() or remaining <= 0:
                break
            try:  # a retry that falls due before the deadline is still worth waiting for
                if not self.store.due(self.clock() + timedelta(seconds=remaining)):
                    break
            except StoreError:
                break
            time.sleep(min(remaining, DELIVERY_INTERVAL.total_seconds() / 4))
        self.dispatcher.stop()
        try:
            waiting = self.store.outbox_depth()
        except StoreError:
            return
        if waiting and self._delivers():
            log.warning("%d notification(s) still queued; the next leader sends them", waiting)

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Tick every interval until stopped by SIGTERM/SIGINT or :meth:`stop`."""
        if install_signal_handlers:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGHUP, self.request_reload)
        server = None
        if self.config.server.enabled:
            server = WebServer(self.config.server.address, self, self.config.server).start()
            host, port = server.address
            log.info(
                "serving /healthz, /metrics, /api/v1/gateways and / on http://%s:%d", host, port
            )
        self.backfill_history()
        interval = self.config.schedule.interval.total_seconds()
        scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.add_job(
            self._safe_tick,
            IntervalTrigger(seconds=interval, timezone=UTC),
            id="tick",
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, int(interval)),
        )
        scheduler.add_job(
            functools.partial(self.deliver, wait=False),
            IntervalTrigger(seconds=DELIVERY_INTERVAL.total_seconds(), timezone=UTC),
            id="deliver",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=1,
        )
        leases = self.partitions or self.lease
        if leases is not None:
            scheduler.add_job(
                self._renew_lease,
                IntervalTrigger(seconds=leases.ttl.total_seconds() / 3, timezone=UTC),
                id="lease",
                coalesce=True,
                max_instances=1,
                misfire_grace_time=1,
            )
        scheduler.add_listener(self._tick_skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        scheduler.start()
        log.info(
            "detector running: %d gateway(s) configured, tick every %ss, receivers: %s%s",
            len(self.config.gateways),
            f"{interval:g}",
            ", ".join(self.receivers) or "none",
            f"; replica {self.lease.holder}" if self.lease else "",
        )
        self._stop.wait()
        scheduler.shutdown(wait=True)  # lets the tick in flight finish
        self._flush()  # what that tick queued, within the grace period
        if self.partitions is not None:
            self.partitions.release()
        self.leadership.release()
        self.heartbeat.close()
        if server is not None:
            server.stop()
        log.info("detector stopped")
