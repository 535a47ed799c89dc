"""Latency benchmark: a slow checkout against the latency SLA (``latency_breach``).

Scenarios come from the simulator (seeded): gateways of 2 to 200 payments a minute whose
payments take a log-normal latency (median 300 ms, p95 about 680 ms), failing at 1%.
Incidents: a slow checkout for 4 hours, the p95 latency raised to 3 s (20% of the payments
slower than 2 s), starting at times of day spread over the 24 hours after a day of history.
Healthy runs: the same gateways without an incident, counted from their second day; and,
the hard case for false alerts, gateways with exactly the SLA's 5% of slow payments.

The slow payments of a minute are drawn as a binomial count of its final payments with the
minute's share slower than 2 s (``detector.simulate.latency.slow_share``): the count the
simulator's per-payment latencies give, without a row per payment.

On exactly the same counts, side by side:

- ``ours``: the default alerts.yaml with ``source.columns.latency_ms`` set and
  ``detection.latency: {threshold: 2s, sla: 0.05}``, replayed by the backtest;
- ``oracle``: the binomial CUSUM on the slow payments told the true post-change share,
  its threshold calibrated by simulation at exactly the 5% SLA to the false-alert budget
  (as in benchmarks/detection.py).

    .venv/bin/python benchmarks/latency.py --quick   # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/latency.py           # more seeds and healthy days
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.detection import calibrate_oracle, our_alerts
from benchmarks.references import cusum_alerts, cusum_increments
from benchmarks.scenarios import HEALTHY_RATE, START, IncidentKind, ScenarioSet
from benchmarks.scenarios import incident_scenarios as draw_incidents
from benchmarks.scoring import BUDGET_DAYS
from detector.config import Config, parse_config
from detector.simulate import GatewayProfile, minute_counts
from detector.simulate.latency import slow_share

__all__ = ["FULL", "QUICK", "main", "run"]

IntArray = npt.NDArray[np.int64]

THRESHOLD_MS = 2000.0
LATENCY_SLA = 0.05
INCIDENT_P95_MS = 3000.0
VOLUMES = (2.0, 10.0, 50.0, 200.0)
SLOW_CHECKOUT = IncidentKind(
    "slow checkout (p95 300 ms -> 3 s)", "latency", 240, latency=INCIDENT_P95_MS
)
RULE = "latency_breach"


@dataclass(frozen=True)
class Mode:
    seeds: int  # incidents per volume
    quiet_days: int  # healthy days per volume (after a day of history)
    calibration_days: int  # simulated days at exactly the SLA per volume, for the oracle


QUICK = Mode(seeds=8, quiet_days=14, calibration_days=1800)
FULL = Mode(seeds=20, quiet_days=60, calibration_days=9000)


def config() -> Config:
    return parse_config(
        {
            "source": {"columns": {"latency_ms": "latency_ms"}},
            "detection": {"latency": {"threshold": "2s", "sla": LATENCY_SLA}},
        },
        env={},
    )


def slow_counts(scenarios: ScenarioSet, seed: int, share: float | None = None) -> IntArray:
    """Slow payments per (gateway, minute): binomial in the final payments with the share of
    the minute's latency above the threshold (``share`` instead, where given)."""
    counts = scenarios.counts
    if share is None:
        p95 = np.unique(counts.latency_p95)
        shares = {float(p): slow_share(THRESHOLD_MS, float(p)) for p in p95}
        p = np.vectorize(lambda v: shares[float(v)])(counts.latency_p95)
    else:
        p = np.full(counts.payments.shape, share)
    slow: IntArray = np.random.default_rng([seed, 11]).binomial(counts.payments, p)
    return slow


def _healthy(days: int, seed: int, name: str) -> ScenarioSet:
    """One gateway per volume, healthy for ``days`` days after a day of history."""
    profiles = [GatewayProfile(f"{name}-{v:g}", v, HEALTHY_RATE) for v in VOLUMES]
    end = START + timedelta(days=days + 1)
    counts = minute_counts(START, end, profiles, seed=seed)
    return ScenarioSet((), counts, count_from=1440)


def _false_per_90_days(alerts: list[list[tuple[int, str]]], first: int, ends: list[int]) -> float:
    """``latency_breach`` alerts per gateway per 90 days, row ``i`` counted from the tick
    after column ``first`` to the tick at column ``ends[i]``."""
    fired = sum(
        1
        for row, end in zip(alerts, ends, strict=True)
        for minute, rule in row
        if rule == RULE and first < minute <= end
    )
    gateway_days = sum(end - first for end in ends) / 1440
    return fired / gateway_days * BUDGET_DAYS


def run(mode: Mode, seed: int, out: TextIO) -> dict[str, float]:
    """Print the delays and false alerts of ours and the oracle; return the medians."""
    settings = config()
    incidents = draw_incidents(mode.seeds, seed, VOLUMES, (SLOW_CHECKOUT,))
    slow = slow_counts(incidents, seed)
    ours = our_alerts(incidents, settings, slow)

    p1 = slow_share(THRESHOLD_MS, INCIDENT_P95_MS)
    thresholds = calibrate_oracle(VOLUMES, [p1], mode.calibration_days, seed, p0=LATENCY_SLA)
    timed = incidents.counts.payments
    increments = cusum_increments(timed, slow, LATENCY_SLA, p1)
    limits = np.array([thresholds[s.volume, p1] for s in incidents.scenarios])
    oracle = cusum_alerts(increments, limits)

    out.write(
        f"slow checkout: p95 300 ms -> 3 s, {p1:.1%} of payments slower than 2 s "
        f"(healthy {slow_share(THRESHOLD_MS):.4%}), latency SLA {LATENCY_SLA:.0%}, "
        f"{mode.seeds} incidents per volume of 4 h\n"
    )
    out.write(f"{'payments/min':>12}  {'ours':>6}  {'oracle':>6}  {'ratio':>6}  missed\n")
    ratios: list[float] = []
    all_ours: list[float] = []
    for volume in VOLUMES:
        delays: list[tuple[float, float]] = []
        for i, s in enumerate(incidents.scenarios):
            if s.volume != volume:
                continue
            assert s.incident_minute is not None
            assert s.end_minute is not None
            lo, hi = s.incident_minute, s.end_minute
            hit = min((m for m, rule in ours[i] if rule == RULE and lo <= m <= hi), default=None)
            # A reference alert at column t is raised by the tick at t + 1.
            columns = np.flatnonzero(oracle[i, lo:hi]) + lo + 1
            ours_delay = np.inf if hit is None else float(hit - lo)
            oracle_delay = float(columns[0] - lo) if columns.size else np.inf
            delays.append((ours_delay, oracle_delay))
        found = np.array(delays)
        both = np.isfinite(found).all(axis=1)
        ratio = found[both, 0] / np.maximum(found[both, 1], 1)
        ratios += ratio.tolist()
        all_ours += found[:, 0].tolist()
        out.write(
            f"{volume:>12g}  {np.median(found[:, 0]):>6.0f}  {np.median(found[:, 1]):>6.0f}  "
            f"{np.median(ratio):>6.2f}  {int((~np.isfinite(found[:, 0])).sum())}\n"
        )
    median_ratio = float(np.median(ratios))
    out.write(
        f"median delay: ours {np.median(all_ours):.0f} min; median ratio ours / oracle "
        f"{median_ratio:.2f}\n"
    )
    before = _false_per_90_days(
        ours, incidents.count_from, [s.incident_minute or 0 for s in incidents.scenarios]
    )

    healthy = _healthy(mode.quiet_days, seed + 1, "healthy")
    ends = [healthy.counts.payments.shape[1]] * len(VOLUMES)
    fast = _false_per_90_days(
        our_alerts(healthy, settings, slow_counts(healthy, seed)), healthy.count_from, ends
    )
    at_sla = _false_per_90_days(
        our_alerts(healthy, settings, slow_counts(healthy, seed, LATENCY_SLA)),
        healthy.count_from,
        ends,
    )
    out.write(
        f"false latency_breach alerts per gateway per 90 days: healthy latency {fast:.2f}, "
        f"exactly at the {LATENCY_SLA:.0%} SLA {at_sla:.2f} ({len(VOLUMES)} gateways x "
        f"{mode.quiet_days} days each; budget 1 for all rules together); "
        f"before the incidents {before:.2f}\n"
    )
    return {"median_ratio": median_ratio, "false_healthy": fast, "false_at_sla": at_sla}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds and healthy days")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    sys.stdout.write(f"latency benchmark ({'quick' if args.quick else 'full'}, seed {args.seed})\n")
    run(mode, args.seed, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
