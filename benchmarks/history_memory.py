"""What the volume rules' weeks hold per gateway, and the peak of their first and next hour.

Makes up four weeks of quarter hours of ``--gateways`` busy gateways in memory (no database),
then traces (``tracemalloc``, numpy's arrays included) a first hour's volume history (the
seasonal fit, the quarter hours the SLA bank's dispersion reads, the decline baseline) and
the next hour's, made from it:

    .venv/bin/python benchmarks/history_memory.py [--gateways 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector.model import Counts
from detector.rules.quarter_hours import HISTORY_SLOTS, QuarterHourTable
from detector.rules.seasonal import VolumeHistory
from detector.stats.seasonal import SLOTS_PER_HOUR

__all__ = ["main"]

END_HOUR = 500_000  # an epoch hour in 2027


def _table(gateways: int) -> QuarterHourTable:
    """Four weeks of Poisson quarter hours, 5 to 300 payments each, 1% failed and declined."""
    rng = np.random.default_rng(2)
    payments = rng.poisson(rng.uniform(5, 300, (gateways, 1)), (gateways, HISTORY_SLOTS))
    failures = rng.binomial(payments, 0.01)
    cells = np.stack([payments, payments, failures, failures, np.ones_like(payments)])
    names = tuple(f"gw{g:05d}" for g in range(gateways))
    return QuarterHourTable(END_HOUR * SLOTS_PER_HOUR, names, cells.astype(np.int32))


def _hour(history: VolumeHistory, gateways: list[str]) -> None:
    history.season(gateways)
    history.outcomes(gateways)
    history.decline_baseline(gateways)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=1000)
    args = parser.parse_args()
    table = _table(args.gateways)
    names = list(table.gateways)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    began = time.perf_counter()
    first = VolumeHistory(END_HOUR, table)
    _hour(first, names)
    held, peak = tracemalloc.get_traced_memory()
    print(
        f"first hour: {time.perf_counter() - began:.2f} s, peak {(peak - base) / 1e6:.0f} MB;"
        f" held {(held - base + table.cells.nbytes) / args.gateways / 1e3:.1f} KB per gateway"
        f" (its table {table.cells.nbytes / args.gateways / 1e3:.1f} KB)"
    )
    end = table.end_slot + SLOTS_PER_HOUR
    later = table.updated(end - SLOTS_PER_HOUR, end, Counts.empty())
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    began = time.perf_counter()
    nxt = VolumeHistory(END_HOUR + 1, later, previous=first)
    del first
    _hour(nxt, names)
    peak = tracemalloc.get_traced_memory()[1]
    print(f"next hour: {time.perf_counter() - began:.2f} s, peak {(peak - base) / 1e6:.0f} MB")
    tracemalloc.stop()


if __name__ == "__main__":
    main()
