"""What dimension series cost a backtest: the same replay with and without them, side by side.

Per-minute counts of ``--gateways`` gateways, each split over ``--methods`` payment methods
and ``--countries`` countries (seeded Poisson traffic, 1% failing; in one gateway's card
payments from the first country, 30% fail for an hour on the second day), are made in
memory and replayed through ``detector.backtest.replay`` over a ``FrameSource`` (no SQL):
once with ``sla_breach.series: [[method], [country]]`` and once without. Each repeat times
the two alternately; the median of their ratios is printed, with the ticks each evaluated.

    .venv/bin/python benchmarks/series_backtest.py [--gateways 10] [--methods 3]
        [--countries 10] [--days 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import wall_and_cpu
from detector.backtest import replay
from detector.config import Config, parse_config
from detector.model import Counts, grouped
from detector.source import FrameSource

__all__ = ["main"]

START = datetime(2026, 11, 2, tzinfo=UTC)
PER_MINUTE = 20.0  # payments a minute per gateway


def _config(series: bool) -> Config:
    detection: dict[str, object] = {}
    if series:
        detection["sla_breach"] = {"series": [["method"], ["country"]]}
    dimensions = {"method": "method", "country": "country"}
    return parse_config(
        {"source": {"columns": {"dimensions": dimensions}}, "detection": detection}, env={}
    )


def _counts(gateways: int, methods: int, countries: int, days: float, seed: int) -> Counts:
    """Counts per (gateway, minute) with their per-(method, country) detail."""
    rng = np.random.default_rng(seed)
    first = int(START.timestamp() // 60)
    minutes = int(days * 1440)
    # Each gateway's methods and countries in shares falling off like real traffic.
    method_share = 1 / np.arange(1, methods + 1)
    country_share = 1 / np.arange(1, countries + 1)
    share = np.outer(method_share / method_share.sum(), country_share / country_share.sum())
    cells = gateways * methods * countries
    rate = np.tile(share.ravel() * PER_MINUTE, gateways)
    payments = rng.poisson(rate, size=(minutes, cells))
    failure = np.full((minutes, cells), 0.01)
    incident = slice(1440 + 14 * 60, 1440 + 15 * 60)
    failure[incident, 0] = 0.3  # gateway 0's first method in its first country
    failures = rng.binomial(payments, failure)
    minute, cell = np.nonzero(payments)
    gateway = np.array([f"gw{g:03d}" for g in range(gateways)], dtype=object)
    method = np.array([f"m{m}" for m in range(methods)], dtype=object)
    country = np.array([f"c{c:02d}" for c in range(countries)], dtype=object)
    g, rest = np.divmod(cell, methods * countries)
    m, c = np.divmod(rest, countries)
    detail = Counts(
        gateway[g],
        minute + first,
        payments[minute, cell],
        failures[minute, cell],
        payments[minute, cell],
        dimensions=("method", "country"),
        values=np.column_stack([method[m], country[c]]),
    )
    return replace(grouped(detail.gateway, detail.minute, detail), detail=detail)


class _Evaluated(logging.Handler):
    """Catches the replay's closing count of ticks, and of those left out as quiet."""

    def __init__(self) -> None:
        super().__init__()
        self.evaluated = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("replayed") and isinstance(record.args, tuple):
            ticks, quiet = record.args[:2]
            self.evaluated = int(str(ticks)) - int(str(quiet))


def _timed(config: Config, source: FrameSource, end: datetime) -> tuple[float, float, int, int]:
    """Elapsed and CPU seconds, alert transitions and ticks evaluated of one replay."""
    logger = logging.getLogger("detector.backtest")
    catcher = _Evaluated()
    logger.addHandler(catcher)
    logger.setLevel(logging.INFO)
    events: list[object] = []
    try:
        wall, cpu = wall_and_cpu(
            lambda: events.extend(replay(config, source, START + timedelta(hours=6), end))
        )
    finally:
        logger.removeHandler(catcher)
    return wall, cpu, len(events), catcher.evaluated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=10)
    parser.add_argument("--methods", type=int, default=3)
    parser.add_argument("--countries", type=int, default=10)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    counts = _counts(args.gateways, args.methods, args.countries, args.days, seed=1)
    source = FrameSource(counts)
    end = START + timedelta(days=args.days)
    series = args.gateways * (args.methods + args.countries)
    print(
        f"{args.gateways} gateways x {args.methods} methods x {args.countries} countries "
        f"({series} series), {args.days:g} days: {counts.minute.size:,} gateway-minutes, "
        f"{counts.detail.minute.size if counts.detail else 0:,} rows of detail"
    )
    runs = []
    for _ in range(args.repeat):
        runs.append((_timed(_config(False), source, end), _timed(_config(True), source, end)))
    for name, side in (("without series", 0), ("with series", 1)):
        wall = statistics.median(run[side][0] for run in runs)
        _, _, events, ticks = runs[0][side]
        print(f"  {name:<15} {wall:8.2f} s  {events:3} transitions, {ticks:,} ticks evaluated")
    ratio = statistics.median(s[0] / p[0] for p, s in runs)
    cpu_ratio = statistics.median(s[1] / p[1] for p, s in runs)
    print(
        f"  ratio with / without series  {ratio:.2f}  (in CPU time {cpu_ratio:.2f}; "
        f"median of {args.repeat})"
    )


if __name__ == "__main__":
    main()
