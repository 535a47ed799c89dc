"""What a looser false-alert budget buys: small steps at low volume, ours and the oracle.

At 2 payments a minute a step to 2x the SLA adds about 2.4 failures an hour to the 2.4 the
SLA allows. With the default budget (1 false alert per gateway per 90 days) no detector can
tell that apart within the hour, not even the oracle that knows the post-change rate: the
evidence an hour carries is below what the budget demands. This benchmark shows the
trade-off a user makes with ``detection.false_alerts``: for each budget it replays the same
seeded step scenarios (healthy 1%, then a 4-hour step, starting at times of day spread over
the 24 hours) through our detector configured with that budget, and through the oracle CUSUM
calibrated to the same budget, side by side, and prints how many steps each catches within
60 minutes and the median delay.

    .venv/bin/python benchmarks/budget.py [--seeds 10] [--budgets 90 30 7 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.detection import calibrate_oracle, our_alerts, reference_alerts
from benchmarks.scenarios import INCIDENT_KINDS, SLA, incident_scenarios
from benchmarks.scoring import Tally, score_incidents
from detector.config import parse_config

__all__ = ["main"]

STEPS = ("step 2x SLA", "step 2.5x SLA", "step 5x SLA")
KINDS = tuple(k for k in INCIDENT_KINDS if k.name in STEPS)
VOLUMES = (2.0, 10.0)


def _cell(summary: dict[str, object]) -> str:
    """'caught within the hour / of all, median delay' (delays censored at the step's end)."""
    median = summary["median_delay"]
    assert isinstance(median, float)
    delay = f">{KINDS[0].minutes}" if np.isinf(median) else f"{median:.0f}"
    return f"{summary['detected_within_60_min']}/{summary['incidents']} {delay:>4}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="repetitions per step and volume")
    parser.add_argument("--budgets", type=float, nargs="+", default=[90, 30, 7, 1])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calibration-days", type=int, default=1800)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    scenarios = incident_scenarios(args.seeds, args.seed, volumes=VOLUMES, kinds=KINDS)
    print(
        f"steps after 1 healthy day (1%), SLA {SLA:.0%}, {args.seeds} repetitions each; "
        "per budget: caught within 60 min / incidents, median delay in minutes "
        f"('>{KINDS[0].minutes}' = most not caught during the 4-hour step)"
    )
    print(
        f"{'budget':>13} {'false/gw-month':>14} {'scenario':<14} {'vol/min':>7} "
        f"{'ours':>9} {'oracle':>9}"
    )
    rates = sorted({k.failure_rate for k in KINDS if k.failure_rate is not None})
    for days in args.budgets:
        config = parse_config({"detection": {"false_alerts": f"1 per {days:g}d"}}, env={})
        thresholds = calibrate_oracle(
            VOLUMES, rates, args.calibration_days, args.seed, budget_days=days
        )
        ours = our_alerts(scenarios, config)
        oracle = reference_alerts(
            scenarios,
            thresholds,
            oracle_rate=lambda s: s.true_rate or 2 * SLA,
            river_span=lambda s: None,
            seed=args.seed,
        )
        tallies: dict[tuple[str, float], dict[str, Tally]] = {}
        score_incidents(scenarios, ours, {"oracle": oracle["oracle"]}, tallies)
        for (kind, volume), tally in tallies.items():
            print(
                f"{f'1 per {days:g} d':>13} {30 / days:>14.2f} {kind:<14} {volume:>7g} "
                f"{_cell(tally['ours'].summary()):>9} {_cell(tally['oracle'].summary()):>9}"
            )
    print(f"\n{time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
