"""What the service adds to each tick, next to the tick itself.

After every tick the daemon computes each gateway's health, refreshes the 24 h history,
updates the Prometheus gauges and publishes a snapshot (``publish``). The first scrape of
``/metrics``, poll of ``/api/v1/gateways`` and view of ``/`` after a tick then render their
answer (later requests until the next tick are served from memory). This measures all of
them against one engine tick (rules + lifecycle, reading from memory so the database does
not blur the ratio), for a few gateway counts; ``all/tick`` is a tick that is published,
scraped, polled and viewed once.

Ratios, not seconds, are the verdict; medians of ``--repeat`` runs.

    .venv/bin/python benchmarks/service_overhead.py [--gateways 5 50 500] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.throughput import _median_seconds
from detector.config import parse_config
from detector.engine import Engine
from detector.model import Counts
from detector.rules import VolumeHistory
from detector.service.gateways_api import gateways_json
from detector.service.health import gateway_health
from detector.service.history import History
from detector.service.metrics import Metrics
from detector.service.snapshot import Snapshot
from detector.service.status_page import render
from detector.source import FrameSource
from detector.stats.seasonal import SLOT_MINUTES, SLOTS_PER_HOUR
from detector.timeutil import epoch_minute

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _counts(gateways: int, minutes: int, rng: np.random.Generator) -> Counts:
    names = np.array([f"gw{i:03d}" for i in range(gateways)], dtype=object)
    first = epoch_minute(NOW) - minutes
    minute = np.tile(np.arange(first, first + minutes, dtype=np.int64), gateways)
    payments = rng.poisson(20, size=minute.size).astype(np.int64)
    failures = rng.binomial(payments, 0.02).astype(np.int64)
    order = np.argsort(minute, kind="stable")
    return Counts(
        np.repeat(names, minutes)[order],
        minute[order],
        payments[order],
        failures[order],
        payments[order],
    )


def _quarter_hours(gateways: int, rng: np.random.Generator) -> Counts:
    """Four weeks of volume per quarter hour and gateway before NOW, with a daily cycle."""
    slots = VolumeHistory.hours_needed() * SLOTS_PER_HOUR
    first = epoch_minute(NOW) // SLOT_MINUTES - slots
    cycle = 300 * (1 + 0.5 * np.sin(np.arange(slots) * 2 * np.pi / (24 * SLOTS_PER_HOUR)))
    volume = rng.poisson(np.tile(cycle, gateways)).astype(np.int64)
    names = np.repeat(np.array([f"gw{i:03d}" for i in range(gateways)], dtype=object), slots)
    minute = np.tile((first + np.arange(slots)) * SLOT_MINUTES, gateways)
    return Counts(names, minute, volume, volume * 0, volume)


def _median_after(setup: Callable[[], object], action: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``action`` alone, each run right after a fresh ``setup``."""
    timings = []
    for _ in range(repeat):
        setup()
        began = time.perf_counter()
        action()
        timings.append(time.perf_counter() - began)
    return statistics.median(timings)


def measure(count: int, repeat: int, rng: np.random.Generator) -> tuple[float, ...]:
    """Median seconds of: one tick; refreshing the 24 h history from it; publishing it
    (history included); then the first /metrics scrape, the first
    /api/v1/gateways poll and the first page view after it (each is rendered once a tick
    and served from memory until the next)."""
    config = parse_config({}, env={})
    engine = Engine(config, FrameSource(_counts(count, 24 * 60, rng)))
    engine.tick(NOW)  # warm-up read fills the window
    moment = iter(NOW + timedelta(minutes=m) for m in range(1, 10**6))
    tick = _median_seconds(lambda: engine.tick(next(moment)), repeat)

    # Four weeks of volume history, so the page draws every gateway's expected band. Its
    # hourly expectation is computed once an hour (warmed here); the band's quantiles and
    # shapes are part of every page render.
    seasonal = VolumeHistory(epoch_minute(NOW) // 60, _quarter_hours(count, rng))
    seasonal.expected_hours(engine.window.gateways, epoch_minute(NOW) // 60 - 24)
    history = History()
    metrics = Metrics(CollectorRegistry())
    # The daemon's start-up backfill lists the gateways as the database returns them, which
    # need not be the window's order: reversed here, so the history maps one to the other.
    day = engine.source.read(NOW - timedelta(hours=24), NOW)
    history.backfill(
        Counts(
            day.gateway[::-1],
            day.minute[::-1],
            day.payments[::-1],
            day.failures[::-1],
            day.volume[::-1],
        ),
        epoch_minute(NOW),
    )
    latest: list[Snapshot] = []

    def publish() -> None:
        """What Daemon._publish does after a tick, without the state database."""
        alerts = list(engine.alerts.alerts.values())
        health = gateway_health(engine.window, alerts, config, None, engine.last_results)
        history.update(engine.window, [])
        metrics.observe_health(health, alerts, engine.last_results)
        latest[:] = [Snapshot(NOW, "leader", config, health, history.snapshot(seasonal))]

    return (
        tick,
        _median_seconds(lambda: history.update(engine.window, []), repeat),
        _median_seconds(publish, repeat),
        _median_after(publish, metrics.exposition, repeat),
        _median_after(publish, lambda: gateways_json(latest[0]), repeat),
        _median_after(publish, lambda: render(latest[0]), repeat),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, nargs="+", default=[5, 50, 500])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    print(
        f"{'gateways':>8} {'tick ms':>8} {'history ms':>11} {'history/tick':>13} "
        f"{'publish ms':>11} {'publish/tick':>13} "
        f"{'/metrics ms':>12} {'JSON ms':>8} {'page ms':>8} {'all/tick':>9}"
    )
    for count in args.gateways:
        tick, history, publish, scrape, document, page = measure(count, args.repeat, rng)
        every = (publish + scrape + document + page) / tick
        print(
            f"{count:>8} {tick * 1e3:>8.2f} {history * 1e3:>11.2f} {history / tick:>13.3f} "
            f"{publish * 1e3:>11.2f} {publish / tick:>13.2f} "
            f"{scrape * 1e3:>12.2f} {document * 1e3:>8.2f} {page * 1e3:>8.2f} {every:>9.1f}"
        )


if __name__ == "__main__":
    main()
