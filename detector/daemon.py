"""The long-running service: a tick job and a delivery job on APScheduler, clean shutdown.

Each tick's alert changes and the notifications they cause are committed to the state
store together; the delivery job drains the outbox independently, so a slow receiver
never delays detection.
"""

from __future__ import annotations

import itertools
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from detector.config import Config
from detector.engine import Engine, TickResult
from detector.notify.base import Receiver
from detector.notify.dispatch import Dispatcher
from detector.routing import Router
from detector.source import Source
from detector.store import StateStore, StoreError

__all__ = ["Daemon", "utc_now"]

log = logging.getLogger(__name__)

DELIVERY_INTERVAL = timedelta(seconds=1)


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
    ):
        self.config = config
        self.store = store
        self.receivers = receivers
        self.clock = clock
        self.engine = Engine(config, source)
        # The window is refilled from the database on start; only the alerts carry over.
        _, alerts = store.load()
        self.engine.alerts.restore(alerts)
        if alerts:
            log.info("restored %d pending/firing alert(s) from the state store", len(alerts))
        self.dispatcher = Dispatcher(store, receivers, clock)
        self.router = Router(config, receivers)
        self._tick_ids = itertools.count(1)
        self._stop = threading.Event()
        self.last_tick: TickResult | None = None

    def tick(self) -> TickResult:
        """One evaluation, committed to the store with the notifications it causes."""
        tick_id = next(self._tick_ids)
        now = self.clock()
        before = self.engine.alerts.snapshot()
        result = self.engine.tick(now)
        try:
            deliveries = self.router.deliveries(
                result.transitions,
                self.engine.alerts.alerts,
                now,
                self.store.silences(not_ended_at=now),
            )
            queued = self.store.save_tick(
                self.engine.watermark, self.engine.alerts.alerts, deliveries, now
            )
        except StoreError as exc:
            # Forget this tick's transitions so the next tick makes (and saves) them again.
            self.engine.alerts.restore(before)
            log.error("tick %d: %s; the transitions will be retried next tick", tick_id, exc)
            return result
        if result.error:
            log.warning(
                "tick %d: payments source unreachable (%d tick(s) in a row): %s",
                tick_id,
                self.engine.failed_ticks,
                result.error,
            )
        else:
            log.info(
                "tick %d: read %d rows (%d invalid skipped) in %.3fs, evaluated %d gateways "
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
        self.last_tick = result
        return result

    def deliver(self) -> None:
        try:
            self.dispatcher.deliver_due()
        except StoreError as exc:
            log.error("delivery paused: %s", exc)
        except Exception:
            log.exception("delivery pass failed; retrying next pass")

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:  # one bad tick must not stop the service
            log.exception("tick failed; the next tick will try again")

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("received %s, finishing the tick in flight", signal.Signals(signum).name)
        self._stop.set()

    def run(self, *, install_signal_handlers: bool = True) -> None:
        """Tick every interval until stopped by SIGTERM/SIGINT or :meth:`stop`."""
        if install_signal_handlers:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
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
            self.deliver,
            IntervalTrigger(seconds=DELIVERY_INTERVAL.total_seconds(), timezone=UTC),
            id="deliver",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=1,
        )
        scheduler.start()
        log.info(
            "detector running: %d gateway(s) configured, tick every %ss, receivers: %s",
            len(self.config.gateways),
            f"{interval:g}",
            ", ".join(self.receivers) or "none",
        )
        self._stop.wait()
        scheduler.shutdown(wait=True)  # lets the tick in flight finish
        self.deliver()  # one last pass for what that tick queued
        log.info("detector stopped")
