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

The real trace (NYC taxi passengers per 30 minutes, Numenta Anomaly Benchmark, five
labelled anomaly windows) is read at run time from ``../shared/data/nyc_taxi/`` beside the
repository; that part is skipped, saying so, when it is missing.

    .venv/bin/python benchmarks/detection.py --quick            # 2-5 minutes on 2 cores
    .venv/bin/python benchmarks/detection.py [--json out.json]  # the full run, 10-30 minutes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
from detector.backtest import replay
from detector.config import Config, parse_config
from detector.model import Counts
from detector.simulate import GatewayProfile, minute_counts
from detector.source import FrameSource

BoolArray = npt.NDArray[np.bool_]

BUDGET_DAYS = 90  # the default budget: 1 false alert per gateway per 90 days
MONTH_DAYS = 30
# Rules about the failure rate; every other gateway rule of ours is about volume.
FAILURE_RULES = frozenset({"sla_breach", "outage"})
RIVER_MAX_VOLUME = 50.0
RIVER_HISTORY_MINUTES = 360
DETECTORS = ("ours", "oracle", "SRE burn rate", "fixed 15m>4%", "ADWIN", "DDM")
TAXI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nyc_taxi"


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


@dataclass
class Tally:
    """What one detector did on one group of scenarios."""

    delays: list[float] = field(default_factory=list)  # inf: missed
    false_alerts: int = 0
    gateway_days: float = 0.0

    def add_false(self, alerts: int, minutes: int) -> None:
        self.false_alerts += alerts
        self.gateway_days += minutes / 1440

    def summary(self) -> dict[str, Any]:
        delays = np.array(self.delays) if self.delays else None
        return {
            "false_alerts": self.false_alerts,
            "gateway_days": round(self.gateway_days, 2),
            "false_per_gateway_month": (
                self.false_alerts / self.gateway_days * MONTH_DAYS if self.gateway_days else None
            ),
            "incidents": len(self.delays),
            "misses": int(np.isinf(delays).sum()) if delays is not None else None,
            "median_delay": _percentile(delays, 50),
            "p90_delay": _percentile(delays, 90),
            "detected_within_60_min": int((delays <= 60).sum()) if delays is not None else None,
        }


def _percentile(values: npt.NDArray[np.float64] | None, q: float) -> float | None:
    """A percentile that is one of the values (so a miss, inf, can be the answer)."""
    if values is None:
        return None
    return float(np.percentile(values, q, method="inverted_cdf"))


# --- the oracle's calibration -------------------------------------------------------------


def calibrate_oracle(
    volumes: Iterable[float],
    rates: Iterable[float],
    days: int,
    seed: int,
    budget_days: float = BUDGET_DAYS,
) -> dict[tuple[float, float], float]:
    """CUSUM threshold per (volume, post-change rate) for the budget (1 false alert per
    ``budget_days``) at exactly the SLA.

    ``days`` simulated days per volume, cut into 30-day streams of the same diurnal and
    weekly profile, binomial failures at exactly p0 = SLA.
    """
    thresholds = {}
    streams = max(days // 30, 1)
    for volume in volumes:
        profiles = [GatewayProfile(f"cal-{i}", volume, SLA) for i in range(streams)]
        counts = minute_counts(START, START + timedelta(days=30), profiles, seed=seed)
        for rate in rates:
            increments = cusum_increments(counts.payments, counts.failures, SLA, rate)
            maxima = first_passage_maxima(increments)
            thresholds[volume, rate] = calibrate_cusum(maxima, budget_days * 1440)
    return thresholds


# --- running the detectors ----------------------------------------------------------------


def our_alerts(scenarios: ScenarioSet, config: Config) -> list[list[tuple[int, str]]]:
    """(column, rule) of each of our firing events, per scenario row; column = minutes from
    the start of the counts to the tick that fired."""
    counts = scenarios.counts
    start = counts.start.replace(tzinfo=UTC)
    end = start + timedelta(minutes=counts.payments.shape[1])
    row = {name: i for i, name in enumerate(counts.gateways)}
    alerts: list[list[tuple[int, str]]] = [[] for _ in counts.gateways]
    for event in replay(config, FrameSource(counts.to_counts()), start, end):
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

    return {"ADWIN": ADWIN, "DDM": DDM}[name]


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
    for name in ("ADWIN", "DDM"):
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


def _river_runs(scenario: Scenario) -> bool:
    return scenario.volume <= RIVER_MAX_VOLUME


def _river_from_start(minutes: int) -> Callable[[Scenario], tuple[int, int] | None]:
    """River sees the first ``minutes`` of the scenarios it runs on."""
    return lambda scenario: (0, minutes) if _river_runs(scenario) else None


# --- scoring ------------------------------------------------------------------------------


Key = tuple[str, float]  # (scenario kind, volume)


def score_quiet(
    scenarios: ScenarioSet,
    ours: list[list[tuple[int, str]]],
    references: dict[str, BoolArray],
    tallies: dict[tuple[str, float, float, float], dict[str, Tally]],
    river_minutes: int,
) -> None:
    """False alerts of every detector on no-incident traffic, per (baseline, rho, volume);
    river's detectors saw only the first ``river_minutes``."""
    first = scenarios.count_from
    minutes = scenarios.counts.payments.shape[1]
    for i, scenario in enumerate(scenarios.scenarios):
        key = ("no incident", scenario.baseline, scenario.dispersion, scenario.volume)
        tally = tallies.setdefault(key, {})
        ours_count = sum(1 for minute, _ in ours[i] if minute > first)
        tally.setdefault("ours", Tally()).add_false(ours_count, minutes - first)
        for name, alerts in references.items():
            if name in ("ADWIN", "DDM"):
                if not _river_runs(scenario):
                    continue
                span = river_minutes
            else:
                span = minutes
            count = int(alerts[i, first:span].sum())
            tally.setdefault(name, Tally()).add_false(count, span - first)


def _first(columns: Iterable[int], lo: int, hi: int) -> int | None:
    return next((c for c in sorted(columns) if lo <= c <= hi), None)


def score_incidents(
    scenarios: ScenarioSet,
    ours: list[list[tuple[int, str]]],
    references: dict[str, BoolArray],
    tallies: dict[Key, dict[str, Tally]],
) -> None:
    """Delay (minutes from the incident's start to the alert) of every detector, and the
    false alerts of the healthy days before the incident."""
    first = scenarios.count_from
    for i, s in enumerate(scenarios.scenarios):
        assert s.incident_minute is not None and s.end_minute is not None
        assert s.delay_from is not None
        tally = tallies.setdefault((s.kind, s.volume), {})
        relevant = [
            minute
            for minute, rule in ours[i]
            if (rule in FAILURE_RULES) == (s.family == "failure") and rule != "source_down"
        ]
        # Our events are stamped with the tick that fired: tick t has seen minutes < t.
        hit = _first(relevant, s.incident_minute, s.end_minute)
        ours_tally = tally.setdefault("ours", Tally())
        ours_tally.delays.append(np.inf if hit is None else max(hit - s.delay_from, 0))
        before = sum(1 for minute, _ in ours[i] if first < minute <= s.incident_minute)
        ours_tally.add_false(before, s.incident_minute - first)
        if s.family != "failure":
            continue
        for name, alerts in references.items():
            river = name in ("ADWIN", "DDM")
            if river and not _river_runs(s):
                continue
            # A reference alert at column t is raised by the tick at t + 1.
            columns = np.flatnonzero(alerts[i]) + 1
            hit = _first(columns.tolist(), s.incident_minute + 1, s.end_minute)
            reference = tally.setdefault(name, Tally())
            reference.delays.append(np.inf if hit is None else max(hit - s.delay_from, 0))
            if not river:
                before = int(alerts[i, first : s.incident_minute].sum())
                reference.add_false(before, s.incident_minute - first)


def score_harmless(
    scenarios: ScenarioSet,
    ours: list[list[tuple[int, str]]],
    references: dict[str, BoolArray],
    river_span: Callable[[Scenario], tuple[int, int] | None],
) -> list[dict[str, Any]]:
    """Per volume and detector: how many harmless shifts got an alert, from the shift's start
    to an hour after its end (a change detector may also fire when the rate falls back)."""
    rows: dict[float, dict[str, list[int]]] = {}
    for i, s in enumerate(scenarios.scenarios):
        assert s.incident_minute is not None and s.end_minute is not None
        lo, hi = s.incident_minute + 1, s.end_minute + 60
        counts = rows.setdefault(s.volume, {})
        alerted = [_first((m for m, rule in ours[i] if rule != "source_down"), lo, hi)]
        counts.setdefault("ours", []).append(int(alerted[0] is not None))
        for name, alerts in references.items():
            if name in ("ADWIN", "DDM") and river_span(s) is None:
                continue
            columns = np.flatnonzero(alerts[i]) + 1  # raised by the tick after the column
            counts.setdefault(name, []).append(int(_first(columns.tolist(), lo, hi) is not None))
    return [
        {
            "volume": volume,
            "detectors": {
                name: {"alerted": sum(hits), "of": len(hits)} for name, hits in counts.items()
            },
        }
        for volume, counts in sorted(rows.items())
    ]


# --- the real trace -----------------------------------------------------------------------


def taxi_counts(
    folder: Path, per_minute: float, seed: int, start: str | None
) -> tuple[Counts, datetime, datetime, list[tuple[datetime, datetime]]] | None:
    """The NYC taxi trace as one gateway's payments: each 30-minute count scaled so the
    trace averages ``per_minute`` payments a minute and spread over its minutes (Poisson),
    1% of payments failing. None when the data is not there."""
    csv, labels = folder / "nyc_taxi.csv", folder / "labels.json"
    if not (csv.exists() and labels.exists()):
        return None
    raw = np.genfromtxt(csv, delimiter=",", skip_header=1, dtype=str)
    times = np.array(raw[:, 0], dtype="datetime64[m]")
    values = raw[:, 1].astype(np.float64)
    if start is not None:
        keep = times >= np.datetime64(start)
        times, values = times[keep], values[keep]
    rng = np.random.default_rng([seed, 11])
    expected = np.repeat(values / values.mean() * per_minute, 30)
    payments = rng.poisson(expected)
    failures = rng.binomial(payments, 0.01)
    minute = (times[0] - np.datetime64("1970-01-01T00:00")).astype(np.int64) + np.arange(
        payments.size
    )
    nonzero = payments > 0
    counts = Counts(
        np.full(int(nonzero.sum()), "taxi", dtype=object),
        minute[nonzero],
        payments[nonzero],
        failures[nonzero],
        payments[nonzero],
    )
    first = datetime.fromisoformat(str(times[0])).replace(tzinfo=UTC)
    windows = [
        tuple(datetime.fromisoformat(t).replace(tzinfo=UTC) for t in window)
        for window in json.loads(labels.read_text())["anomaly_windows"]
    ]
    return counts, first, first + timedelta(minutes=payments.size), windows  # type: ignore[return-value]


def run_taxi(config: Config, mode: Mode, seed: int, per_minute: float) -> dict[str, Any] | None:
    loaded = taxi_counts(TAXI, per_minute, seed, mode.taxi_from)
    if loaded is None:
        return None
    counts, start, end, windows = loaded
    # The first week only teaches a seasonal detector; alerts count after it.
    count_from = start + timedelta(days=7)
    windows = [w for w in windows if w[1] > count_from]
    inside = {i: 0 for i in range(len(windows))}
    outside, outside_failure = 0, 0
    for event in replay(config, FrameSource(counts), start, end):
        at = datetime.fromisoformat(event.at)
        if event.event != "firing" or at < count_from:
            continue
        window = next((i for i, (lo, hi) in enumerate(windows) if lo <= at < hi), None)
        if event.rule in FAILURE_RULES:
            outside_failure += window is None
        elif window is not None:
            inside[window] += 1
        else:
            outside += 1
    window_days = sum((hi - max(lo, count_from)).total_seconds() for lo, hi in windows) / 86400
    outside_days = (end - count_from).total_seconds() / 86400 - window_days
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "per_minute": per_minute,
        "windows": [
            {"from": lo.isoformat(), "to": hi.isoformat(), "volume_alerts": inside[i]}
            for i, (lo, hi) in enumerate(windows)
        ],
        "volume_alerts_outside": outside,
        "failure_alerts_outside": outside_failure,
        "outside_days": round(outside_days, 1),
        "volume_alerts_outside_per_month": outside / outside_days * MONTH_DAYS,
    }


# --- output -------------------------------------------------------------------------------


def _minutes(value: float | None, censor: int | None = None) -> str:
    if value is None:
        return "-"
    if np.isinf(value):
        return f">{censor}" if censor else "miss"
    return f"{value:.0f}"


def _cell(summary: dict[str, Any] | None, censor: int) -> str:
    if summary is None or not summary["incidents"]:
        return "n/a"
    median = _minutes(summary["median_delay"], censor)
    p90 = _minutes(summary["p90_delay"], censor)
    return f"{median}/{p90} {summary['misses']}"


def _delay_ratio(ours: dict[str, Any] | None, oracle: dict[str, Any] | None) -> float | None:
    """Our median delay over the oracle's; None where the oracle has none (or missed)."""
    if not ours or not oracle or ours["median_delay"] is None or oracle["median_delay"] is None:
        return None
    if np.isinf(oracle["median_delay"]):
        return None
    return float(ours["median_delay"] / max(oracle["median_delay"], 1))


def _ratio(ours: dict[str, Any] | None, oracle: dict[str, Any] | None) -> str:
    ratio = _delay_ratio(ours, oracle)
    return "n/a" if ratio is None else f"{ratio:.2f}"


def _rate(summary: dict[str, Any] | None) -> str:
    if summary is None or summary["false_per_gateway_month"] is None:
        return "-"
    return f"{summary['false_per_gateway_month']:.2f}"


def print_quiet(results: list[dict[str, Any]], river_days: int, out: Any) -> None:
    out.write(
        "\nFALSE ALERTS per gateway-month on no-incident traffic (budget: "
        f"{MONTH_DAYS / BUDGET_DAYS:.2f}); base = healthy failure rate (2% = at the SLA), "
        "rho = beta-binomial dispersion, gw-days counted per row; the oracle is the one tuned "
        f"to 2x SLA; '-' = not run (river: <= {RIVER_MAX_VOLUME:g}/min, first "
        f"{river_days} days)\n"
    )
    head = f"{'base':>5} {'rho':>6} {'vol/min':>7} {'gw-days':>7} " + " ".join(
        f"{d:>13}" for d in DETECTORS
    )
    out.write(head + "\n")
    for row in results:
        d = row["detectors"]
        out.write(
            f"{row['baseline']:>5.1%} {row['dispersion']:>6g} {row['volume']:>7g} "
            f"{d['ours']['gateway_days']:>7.0f} "
            + " ".join(f"{_rate(d.get(name)):>13}" for name in DETECTORS)
            + "\n"
        )


def print_incidents(results: list[dict[str, Any]], out: Any) -> None:
    out.write(
        "\nDETECTION DELAY in minutes: median/p90 misses (of the repetitions); '>N' = not "
        "detected by the incident's end (N min); ratio = our median / the oracle's\n"
    )
    width = 14
    head = f"{'scenario':<27} {'vol/min':>7} {'ratio':>6} " + " ".join(
        f"{d:>{width}}" for d in DETECTORS
    )
    out.write(head + "\n")
    for row in results:
        d = row["detectors"]
        censor = row["minutes"]
        out.write(
            f"{row['scenario']:<27} {row['volume']:>7g} "
            f"{_ratio(d.get('ours'), d.get('oracle')):>6} "
            + " ".join(f"{_cell(d.get(name), censor):>{width}}" for name in DETECTORS)
            + "\n"
        )
    ratios = [
        ratio
        for row in results
        if row["scenario"].startswith("step")
        and (ratio := _delay_ratio(row["detectors"].get("ours"), row["detectors"].get("oracle")))
        is not None
        and np.isfinite(ratio)
    ]
    if ratios:
        out.write(
            f"median of the ratios over the step scenarios both detect: {np.median(ratios):.2f} "
            f"({len(ratios)} scenarios; target <= 1.25)\n"
        )
    pre = {name: Tally() for name in DETECTORS}
    for row in results:
        for name, summary in row["detectors"].items():
            if summary["gateway_days"]:
                pre[name].false_alerts += summary["false_alerts"]
                pre[name].gateway_days += summary["gateway_days"]
    out.write(
        f"{'false alerts/gw-month before the incidents':<42} "
        + " ".join(f"{_rate(pre[name].summary()):>{width}}" for name in DETECTORS)
        + "\n"
    )


def print_harmless(rows: list[dict[str, Any]], out: Any) -> None:
    out.write(
        "\nHARMLESS SHIFT: the failure rate rises from 1% to 1.8% for "
        f"{HARMLESS_SHIFT.minutes // 60} h, still within the SLA; shifts alerted on (from the "
        "start to 1 h after the end) / "
        "repetitions, '-' = not run\n"
    )
    out.write(f"{'vol/min':>7} " + " ".join(f"{d:>13}" for d in DETECTORS) + "\n")
    for row in rows:
        d = row["detectors"]
        cells = [f"{d[n]['alerted']}/{d[n]['of']}" if n in d else "-" for n in DETECTORS]
        out.write(f"{row['volume']:>7g} " + " ".join(f"{c:>13}" for c in cells) + "\n")


def print_taxi(taxi: dict[str, Any] | None, out: Any) -> None:
    if taxi is None:
        out.write(f"\nNYC taxi trace: skipped, {TAXI} not found (it lives outside the repo)\n")
        return
    out.write(
        f"\nNYC TAXI trace (NAB) as {taxi['per_minute']:g} payments/min, {taxi['from'][:10]} to "
        f"{taxi['to'][:10]}, alerts after the first week; our volume rules:\n"
    )
    for window in taxi["windows"]:
        out.write(
            f"  labelled window {window['from'][:16]} .. {window['to'][:16]}: "
            f"{window['volume_alerts']} alert(s)\n"
        )
    out.write(
        f"  outside the windows ({taxi['outside_days']} days): {taxi['volume_alerts_outside']} "
        f"volume alert(s) = {taxi['volume_alerts_outside_per_month']:.2f} per month; "
        f"{taxi['failure_alerts_outside']} failure-rate alert(s)\n"
    )


# --- main ---------------------------------------------------------------------------------


def selected(name: str, only: tuple[str, ...]) -> bool:
    """Whether ``--only`` (parts of scenario names, any case) keeps this scenario."""
    return not only or any(part.lower() in name.lower() for part in only)


def run(
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
                    if s.family == "failure" and _river_runs(s)
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
            if not _river_runs(s):
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
    taxi = run_taxi(config, mode, seed, taxi_per_minute) if run_trace else None
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
