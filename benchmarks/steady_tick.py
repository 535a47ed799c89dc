"""What a steady tick's engine work costs as the gateways grow, reading from memory.

A daemon's steady tick reads the last minutes, moves the count window on, runs the rules
and the alert lifecycle. This measures that tick with the counts served from memory
(``FrameSource``), so that only the engine's own work is timed: the median elapsed and
CPU milliseconds of ``--ticks`` consecutive ticks after the first (warm-up) tick, per
gateway count, and each count's CPU per gateway against the first count's (1.0 means the
tick grows linearly with the gateways). ``--profile`` prints the functions that take the
most time over the steady ticks of the largest count.

    .venv/bin/python benchmarks/steady_tick.py [--gateways 1000 10000] [--ticks 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import wall_and_cpu
from detector.config import parse_config
from detector.engine import Engine
from detector.model import Counts
from detector.rules import minutes_needed
from detector.source import FrameSource
from detector.timeutil import epoch_minute

__all__ = ["main"]

NOW = datetime(2026, 11, 20, 12, 20, tzinfo=UTC)  # steady ticks follow within the hour


def _counts(gateways: int, minutes: int, rng: np.random.Generator) -> Counts:
    """Seeded counts of ``minutes`` minutes up to NOW: about 20 payments a minute, 2% failed."""
    names = np.array([f"gw{i:05d}" for i in range(gateways)], dtype=object)
    first = epoch_minute(NOW) - minutes
    minute = np.repeat(np.arange(first, first + minutes, dtype=np.int64), gateways)
    payments = rng.poisson(20, size=minute.size).astype(np.int64)
    failures = rng.binomial(payments, 0.02).astype(np.int64)
    return Counts(np.tile(names, minutes), minute, payments, failures, payments)


def measure(gateways: int, ticks: int, profile: cProfile.Profile | None) -> tuple[float, float]:
    """Median elapsed and CPU seconds of a steady tick at ``gateways`` gateways."""
    config = parse_config({}, env={})
    minutes = minutes_needed(config) + ticks + 1
    source = FrameSource(_counts(gateways, minutes, np.random.default_rng(14)))
    engine = Engine(config, source)
    start = NOW - timedelta(minutes=ticks + 1)
    engine.tick(start)  # the warm-up read fills the window
    runs = []
    for m in range(1, ticks + 1):
        moment = start + timedelta(minutes=m)
        if profile is not None:
            profile.enable()
        runs.append(wall_and_cpu(partial(engine.tick, moment)))
        if profile is not None:
            profile.disable()
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(f"{'gateways':>8} {'tick ms':>8} {'CPU ms':>8} {'CPU us/gateway':>15} {'vs first':>9}")
    first_per_gateway = None
    for i, count in enumerate(args.gateways):
        last = i == len(args.gateways) - 1
        profile = cProfile.Profile() if args.profile and last else None
        wall, cpu = measure(count, args.ticks, profile)
        per_gateway = cpu / count
        first_per_gateway = first_per_gateway or per_gateway
        print(
            f"{count:>8} {wall * 1e3:>8.1f} {cpu * 1e3:>8.1f} {per_gateway * 1e6:>15.2f} "
            f"{per_gateway / first_per_gateway:>9.2f}"
        )
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
