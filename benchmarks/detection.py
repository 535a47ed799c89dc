"""Detection benchmark: our detector against reference detectors on the same per-minute counts.

Scenarios come from the simulator's traffic model (`detector.simulate.minute_counts`,
seeded; see benchmarks/scenarios.py). Our detector runs through its public replay path,
``detector.backtest.replay`` over a ``FrameSource`` of those counts, with the default
configuration, so whatever detector the package holds is what gets measured. On exactly the
same counts run (benchmarks/references.py):

1. the oracle: a binomial CUSUM told the true post-change rate, tested against p0 = SLA, its
   threshold calibrated by seeded simulation of the same volume profile at exactly p0 to the
   false-alert budget (1 per gateway per 90 days): the delay floor;
2. the Google SRE workbook's multi-window multi-burn-rate alerts on a 2% error budget;
3. a fixed rule as teams write it: 15-minute failure rate above 4% with at least 20 payments;
4. river's ADWIN and DDM fed one payment at a time -- only up to 50 payments a minute, the
   first 14 days (7 with --quick; history included) of the no-incident runs and the 6 hours
   before each incident, to bound the cost of a Python call per payment.

The real trace (benchmarks/nyc_taxi.py: NYC taxi passengers per 30 minutes, Numenta Anomaly
Benchmark, five labelled anomaly windows) is read at run time from ``../shared/data/nyc_taxi/``
beside the repository; that part is skipped, saying so, when it is missing.

    .venv/bin/python benchmarks/detection.py --quick            # 2-5 minutes on 2 cores
    .venv/bin/python benchmarks/detection.py [--json out.json]  # the full run, 10-30 minutes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.detection_tables import print_harmless, print_incidents, print_quiet, print_taxi
from benchmarks.nyc_taxi import run_taxi
from benchmarks.references import (
    burn_rate_alerts,
    calibrate_cusum,
    cusum_alerts,
    cusum_increments,
    first_passage_maxima,
    fixed_rule_alerts,
    river_alerts,
)
from benchmarks.scenarios import (
    HARMLESS_SHIFT,
    INCIDENT_KINDS,
    SLA,
    START,
    VOLUME_HISTORY_DAYS,
    VOLUMES,
    Scenario,
    ScenarioSet,
    incident_scenarios,
    incident_sets,
    quiet_scenarios,
)
from benchmarks.scoring import (
    BUDGET_DAYS,
    MONTH_DAYS,
    RIVER_DETECTORS,
    Key,
    Tally,
    river_runs,
    score_harmless,
    score_incidents,
    score_quiet,
)
from detector.backtest import replay
from detector.config import Config, parse_config
from detector.simulate import GatewayProfile, minute_counts
from detector.source import FrameSource

__all__ = [
    "FULL",
    "QUICK",
    "Mode",
    "calibrate_oracle",
    "main",
    "our_alerts",
    "reference_alerts",
    "run",
    "selected",
]

BoolArray = npt.NDArray[np.bool_]

RIVER_HISTORY_MINUTES = 360


@dataclass(frozen=True)
class Mode:
    quiet_days: int
    quiet_runs: int  # independent no-incident runs (seeds) of every quiet gateway
    seeds: int  # repetitions of every incident kind x volume
    calibration_days: int  # simulated days at exactly the SLA per volume, to calibrate
    river_days: int  # how much of each no-incident run river's detectors see
    taxi_from: str | None  # None: the whole trace


QUICK = Mode(
    quiet_days=14,
    quiet_runs=1,
    seeds=5,
    calibration_days=1800,
    river_days=7,
    taxi_from="2014-10-01",
)
FULL = Mode(
    quiet_days=60, quiet_runs=2, seeds=20, calibration_days=9000, river_days=14, taxi_from=None
)


# --- the oracle's calibration -------------------------------------------------------------


def calibrate_oracle(
    volumes: Iterable[float],
    rates: Iterable[float],
    days: int,
    seed: int,
    budget_days: float = BUDGET_DAYS,
    p0: float = SLA,
) -> dict[tuple[float, float], float]:
    """CUSUM threshold per (volume, post-change rate) for the budget (1 false alert per
    ``budget_days``) at exactly the SLA ``p0``.

    ``days`` simulated days per volume, cut into 30-day streams of the same diurnal and
    weekly profile, binomial failures at exactly ``p0``.
    """
    thresholds = {}
    streams = max(days // 30, 1)
    for volume in volumes:
        profiles = [GatewayProfile(f"cal-{i}", volume, p0) for i in range(streams)]
        counts = minute_counts(START, START + timedelta(days=30), profiles, seed=seed)
        for rate in rates:
            increments = cusum_increments(counts.payments, counts.failures, p0, rate)
            maxima = first_passage_maxima(increments)
            thresholds[volume, rate] = calibrate_cusum(maxima, budget_days * 1440)
    return thresholds


# --- running the detectors ----------------------------------------------------------------


def our_alerts(
    scenarios: ScenarioSet, config: Config, slow: npt.NDArray[np.int64] | None = None
) -> list[list[tuple[int, str]]]:
    """(column, rule) of each of our firing events, per scenario row; column = minutes from
    the start of the counts to the tick that fired. ``slow``: the slow payments of each
    minute, for the latency rule."""
    counts = scenarios.counts
    start = counts.start.replace(tzinfo=UTC)
    end = start + timedelta(minutes=counts.payments.shape[1])
    row = {name: i for i, name in enumerate(counts.gateways)}
    alerts: list[list[tuple[int, str]]] = [[] for _ in counts.gateways]
    for event in replay(config, FrameSource(counts.to_counts(slow)), start, end):
        gateway = event.labels.get("gateway")
        if event.event != "firing" or gateway not in row:
            continue
        minute = int((datetime.fromisoformat(event.at) - start) / timedelta(minutes=1))
        alerts[row[gateway]].append((minute, event.rule))
    return alerts


def _river(name: str) -> Callable[[], Any]:
    try:
        from river.drift import ADWIN
        from river.drift.binary import DDM
    except ImportError:
        raise SystemExit(
            "river is not installed: pip install -e '.[bench]' (the benchmark's extras)"
        ) from None

    detectors: dict[str, Callable[[], Any]] = {"ADWIN": ADWIN, "DDM": DDM}
    return detectors[name]


def reference_alerts(
    scenarios: ScenarioSet,
    thresholds: dict[tuple[float, float], float],
    oracle_rate: Callable[[Scenario], float],
    river_span: Callable[[Scenario], tuple[int, int] | None],
    seed: int,
) -> dict[str, BoolArray]:
    """Alert starts (row x column) of every reference detector on the scenarios' counts.

    A river detector sees only ``river_span(scenario)`` of a row (None: not run); the
    columns it did not see hold no alert.
    """
    counts = scenarios.counts
    payments, failures = counts.payments, counts.failures
    rates = [oracle_rate(s) for s in scenarios.scenarios]
    increments = np.vstack(
        [cusum_increments(payments[i], failures[i], SLA, rate) for i, rate in enumerate(rates)]
    )
    limits = np.array(
        [thresholds[s.volume, r] for s, r in zip(scenarios.scenarios, rates, strict=True)]
    )
    alerts = {
        "oracle": cusum_alerts(increments, limits),
        "SRE burn rate": burn_rate_alerts(payments, failures, SLA),
        "fixed 15m>4%": fixed_rule_alerts(payments, failures),
    }
    rng = np.random.default_rng([seed, 7])
    for name in RIVER_DETECTORS:
        found = np.zeros(payments.shape, dtype=bool)
        for i, scenario in enumerate(scenarios.scenarios):
            span = river_span(scenario)
            if span is None:
                continue
            lo, hi = span
            found[i, lo:hi] = river_alerts(
                payments[i : i + 1, lo:hi], failures[i : i + 1, lo:hi], _river(name), rng
            )[0]
        alerts[name] = found
    return alerts


def _river_from_start(minutes: int) -> Callable[[Scenario], tuple[int, int] | None]:
    """River sees the first ``minutes`` of the scenarios it runs on."""
    return lambda scenario: (0, minutes) if river_runs(scenario) else None


# --- main ---------------------------------------------------------------------------------


def selected(name: str, only: tuple[str, ...]) -> bool:
    """Whether ``--only`` (parts of scenario names, any case) keeps this scenario."""
    return not only or any(part.lower() in name.lower() for part in only)


# The benchmark's phases (healthy runs, incidents, harmless shifts, the taxi trace), each
# skipped by --only, read best top to bottom in one function.
def run(  # noqa: C901
    mode: Mode,
    seed: int,
    taxi_per_minute: float,
    history_days: int,
    out: Any,
    volume_history_days: int | None = None,
    only: tuple[str, ...] = (),
) -> dict[str, Any]:
    config = parse_config({}, env={})
    began = time.perf_counter()
    if volume_history_days is None:
        volume_history_days = max(history_days, VOLUME_HISTORY_DAYS)
    kinds = tuple(kind for kind in INCIDENT_KINDS if selected(kind.name, only))
    quiet_runs = mode.quiet_runs if selected("no incident", only) else 0
    run_harmless = selected(HARMLESS_SHIFT.name, only)

    def progress(step: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f}s] {step}", file=sys.stderr, flush=True)

    # The oracle is calibrated for what the selected scenarios need (2x SLA: the healthy runs
    # and the harmless shifts).
    rates = {k.failure_rate for k in kinds if k.failure_rate is not None}
    rates |= {2 * SLA} if rates or quiet_runs or run_harmless else set()
    thresholds = (
        calibrate_oracle(VOLUMES, sorted(rates), mode.calibration_days, seed) if rates else {}
    )
    progress("oracle calibrated")

    quiet_tallies: dict[tuple[str, float, float, float], dict[str, Tally]] = {}
    for run_index in range(quiet_runs):
        quiet = quiet_scenarios(
            mode.quiet_days, seed=seed * 100 + run_index, history_days=history_days
        )
        ours = our_alerts(quiet, config)
        progress(f"no-incident run {run_index + 1}: ours replayed")
        river_minutes = min(
            quiet.counts.payments.shape[1], quiet.count_from + (mode.river_days - 1) * 1440
        )
        references = reference_alerts(
            quiet,
            thresholds,
            oracle_rate=lambda s: 2 * SLA,
            river_span=_river_from_start(river_minutes),
            seed=seed + run_index,
        )
        progress(f"no-incident run {run_index + 1}: references run")
        score_quiet(quiet, ours, references, quiet_tallies, river_minutes)

    incident_tallies: dict[Key, dict[str, Tally]] = {}
    for incidents in incident_sets(mode.seeds, seed, history_days, volume_history_days, kinds):
        ours = our_alerts(incidents, config)
        progress(f"{len(incidents.scenarios)} incident scenarios: ours replayed")
        # The reference detectors watch failure rates: they do not apply to volume incidents.
        failure_references: dict[str, BoolArray] = {}
        if any(s.family == "failure" for s in incidents.scenarios):
            failure_references = reference_alerts(
                incidents,
                thresholds,
                oracle_rate=lambda s: (
                    s.true_rate if s.family == "failure" and s.true_rate else 2 * SLA
                ),
                river_span=lambda s: (
                    (max((s.incident_minute or 0) - RIVER_HISTORY_MINUTES, 0), s.end_minute or 0)
                    if s.family == "failure" and river_runs(s)
                    else None
                ),
                seed=seed,
            )
            progress("failure-rate incidents: references run")
        score_incidents(incidents, ours, failure_references, incident_tallies)

    shifts: list[dict[str, Any]] = []
    if run_harmless:
        harmless = incident_scenarios(
            mode.seeds, seed, kinds=(HARMLESS_SHIFT,), history_days=history_days
        )
        ours = our_alerts(harmless, config)

        def around_shift(s: Scenario) -> tuple[int, int] | None:
            if not river_runs(s):
                return None
            return max((s.incident_minute or 0) - RIVER_HISTORY_MINUTES, 0), (
                s.end_minute or 0
            ) + 60

        shift_references = reference_alerts(
            harmless, thresholds, oracle_rate=lambda s: 2 * SLA, river_span=around_shift, seed=seed
        )
        shifts = score_harmless(harmless, ours, shift_references, around_shift)
        progress("harmless shifts replayed")

    run_trace = selected("nyc taxi", only)
    taxi = run_taxi(config, mode.taxi_from, seed, taxi_per_minute) if run_trace else None
    progress("NYC taxi trace replayed" if taxi else "NYC taxi trace skipped")

    minutes = {k.name: k.minutes for k in INCIDENT_KINDS}
    result: dict[str, Any] = {
        "seed": seed,
        "history_days": history_days,
        "volume_history_days": volume_history_days,
        "only": list(only),
        "budget_false_alerts_per_gateway_month": MONTH_DAYS / BUDGET_DAYS,
        "oracle_thresholds": [
            {"volume": v, "rate": r, "threshold": h} for (v, r), h in sorted(thresholds.items())
        ],
        "no_incident": [
            {
                "baseline": key[1],
                "dispersion": key[2],
                "volume": key[3],
                "detectors": {name: t.summary() for name, t in tally.items()},
            }
            for key, tally in sorted(quiet_tallies.items())
        ],
        "incidents": [
            {
                "scenario": kind,
                "volume": volume,
                "minutes": minutes[kind],
                "detectors": {name: t.summary() for name, t in tally.items()},
            }
            for (kind, volume), tally in sorted(
                incident_tallies.items(),
                key=lambda item: (list(minutes).index(item[0][0]), item[0][1]),
            )
        ],
        "harmless_shift": shifts,
        "nyc_taxi": taxi,
        "seconds": round(time.perf_counter() - began, 1),
    }
    if quiet_runs:
        print_quiet(result["no_incident"], mode.river_days, out)
    if kinds:
        print_incidents(result["incidents"], out)
    if run_harmless:
        print_harmless(shifts, out)
    if run_trace:
        print_taxi(taxi, out)
    out.write(f"\n{result['seconds']:.0f} s\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds and days (< 2 min)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON here")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--taxi-per-minute", type=float, default=20.0)
    parser.add_argument(
        "--history-days",
        type=int,
        default=1,
        help=(
            "healthy days before the failure-rate incidents and before the no-incident days "
            "counted (the volume incidents get at least "
            f"{VOLUME_HISTORY_DAYS}: a week for the seasonal rules, a day to replay)"
        ),
    )
    parser.add_argument(
        "--volume-history-days",
        type=int,
        help=(
            "healthy days before the volume incidents (default: --history-days, at least "
            f"{VOLUME_HISTORY_DAYS}); under 8 they meet the first-week rules"
        ),
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help=(
            "run only the scenarios whose name contains TEXT (any case; repeatable): e.g. "
            "'volume drop', 'step', 'no incident' (the healthy runs), 'harmless', 'nyc taxi'"
        ),
    )
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    volume_days = args.volume_history_days or max(args.history_days, VOLUME_HISTORY_DAYS)
    out = sys.stdout
    out.write(
        f"detection benchmark ({'quick' if args.quick else 'full'}, seed {args.seed}): "
        f"SLA {SLA:.0%}, healthy failure rate 1%, {args.history_days} day(s) of history "
        f"before each failure-rate incident and the no-incident days counted, "
        f"{volume_days} before each volume one, default alerts.yaml"
        + (f"; only {', '.join(repr(o) for o in args.only)}" if args.only else "")
        + "\n"
    )
    result = run(
        mode,
        args.seed,
        args.taxi_per_minute,
        args.history_days,
        out,
        volume_days,
        tuple(args.only),
    )
    if args.json:
        Path(args.json).write_text(json.dumps(_jsonable(result), indent=1) + "\n")
    return 0


def _jsonable(value: Any) -> Any:
    """Strict JSON: a delay that is a miss (inf) becomes null."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


if __name__ == "__main__":
    raise SystemExit(main())
