"""Declines benchmark: a technical incident under declines with a diurnal swing.

Scenarios come from the simulator (seeded): gateways of 8 and 30 payments a minute whose
technical failures run at 1.5% and whose declines average 6% with a diurnal swing (9% at
03:00 UTC, 3% at 15:00). Incidents: technical failures 1.5% -> 6% for an hour, starting at
times of day spread over the 24 hours, after a day of history. Healthy runs: the same
gateways without an incident, counted from their second day. Decline waves: the decline
share jumps from its usual 6% to 20% for an hour (an issuer or fraud problem), at times
spread over the day, after a week of history (``decline_rate`` learns the usual share of
each time of the week from past weeks).

On exactly the same counts, side by side:

- ``ours``: the default alerts.yaml with the declines told apart (``source.declines`` or
  ``statuses.declined``: the source's counts then hold them apart from the failures), so
  ``decline_rate`` runs and takes its share of the false-alert budget;
- ``decline_rate off``: the same with ``detection.decline_rate.enabled: false`` (its share
  goes back to the other rules), to show what that share costs them;
- ``oracle``: the binomial CUSUM on the technical failures told the true post-change rate
  (6%), its threshold calibrated by simulation at exactly the SLA to the false-alert budget;
- ``as failures``: ours on the same table read without a declines setting (its share of
  healthy time spent firing, over the first week);
- ``as failures, SLA 10%``: the same with the SLA raised to 10% to quiet it.

Told apart, the declines leave exactly the payments and technical failures a table without
declines holds (the simulator draws them from a stream of their own), so ``ours`` is also
what the detector does on the same traffic with no declines at all.

    .venv/bin/python benchmarks/declines.py --quick   # ~5 minutes on a loaded 2-core machine
    .venv/bin/python benchmarks/declines.py           # more seeds and healthy days, ~27 minutes
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.detection import calibrate_oracle, our_alerts
from benchmarks.references import cusum_alerts, cusum_increments
from benchmarks.scenarios import SLA, START, IncidentKind, Scenario, ScenarioSet
from benchmarks.scenarios import incident_scenarios as draw_incidents
from benchmarks.scoring import (
    BUDGET_DAYS,
    FAILURE_RULES,
    MONTH_DAYS,
    Tally,
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
    "decline_rate_figures",
    "declines_as_failures",
    "failure_alerts_during_waves",
    "firing_share",
    "first_days",
    "healthy_scenarios",
    "main",
    "oracle_alerts",
    "run",
]

TECHNICAL_RATE = 0.015
DECLINE_RATE = 0.06
VOLUMES = (8.0, 30.0)
INCIDENT = IncidentKind("technical 1.5% -> 6% for 1 h", "failure", 60, failure_rate=0.06)
# An issuer or fraud problem: not the gateway's, so no failure-rate alert may fire, and
# decline_rate should.
DECLINE_WAVE = IncidentKind("decline wave 6% -> 20% for 1 h", "declines", 60, decline_rate=0.20)
# decline_rate compares with the same time of the past weeks: it judges from the second week.
WAVE_HISTORY_DAYS = 7
# The declines as a source with a status of their own for them reads them.
DECLINES_COUNTED: dict[str, Any] = {"source": {"statuses": {"declined": ["declined"]}}}
# The workaround without a declines setting: an SLA high enough for declines + failures.
RAISED_SLA = 0.10


@dataclass(frozen=True)
class Mode:
    seeds: int  # incidents per volume
    healthy_gateways: int  # per volume
    healthy_days: int  # counted, after a day of history
    calibration_days: int  # simulated days at exactly the SLA per volume, for the oracle


QUICK = Mode(seeds=20, healthy_gateways=4, healthy_days=30, calibration_days=1800)
FULL = Mode(seeds=60, healthy_gateways=8, healthy_days=60, calibration_days=9000)


def declines_as_failures(scenarios: ScenarioSet) -> ScenarioSet:
    """The same payments as a source reads them without a declines setting."""
    counts = scenarios.counts
    merged = replace(
        counts, failures=counts.failures + counts.declines, declines=counts.declines * 0
    )
    return replace(scenarios, counts=merged)


def healthy_scenarios(mode: Mode, seed: int) -> ScenarioSet:
    """Gateways without an incident, ``mode.healthy_days`` counted after a day of history."""
    scenarios: list[Scenario] = []
    profiles: list[GatewayProfile] = []
    for volume in VOLUMES:
        for repetition in range(mode.healthy_gateways):
            name = f"healthy-{len(scenarios):02d}"
            scenarios.append(
                Scenario(name, "no incident", "none", volume, TECHNICAL_RATE, 0.0, repetition)
            )
            profiles.append(GatewayProfile(name, volume, TECHNICAL_RATE, decline_rate=DECLINE_RATE))
    end = START + timedelta(days=mode.healthy_days + 1)
    return ScenarioSet(tuple(scenarios), minute_counts(START, end, profiles, seed=seed), 1440)


def oracle_alerts(
    scenarios: ScenarioSet, thresholds: dict[tuple[float, float], float]
) -> npt.NDArray[np.bool_]:
    """The oracle CUSUM's alert starts on the technical failures (declines are successes)."""
    counts = scenarios.counts
    rate = INCIDENT.failure_rate
    assert rate is not None
    increments = cusum_increments(counts.payments, counts.failures, SLA, rate)
    limits = np.array([thresholds[s.volume, rate] for s in scenarios.scenarios])
    return cusum_alerts(increments, limits)


def failure_alerts_during_waves(scenarios: ScenarioSet, alerts: list[list[tuple[int, str]]]) -> int:
    """Our failure-rate alerts (sla_breach, outage) fired during a wave or the hour after."""
    count = 0
    for scenario, mine in zip(scenarios.scenarios, alerts, strict=True):
        assert scenario.incident_minute is not None
        assert scenario.end_minute is not None
        count += sum(
            1
            for minute, rule in mine
            if rule in FAILURE_RULES
            and scenario.incident_minute < minute <= scenario.end_minute + 60
        )
    return count


def decline_rate_figures(
    waves: ScenarioSet,
    wave_alerts: list[list[tuple[int, str]]],
    healthy: ScenarioSet,
    healthy_alerts: list[list[tuple[int, str]]],
) -> dict[str, Any]:
    """decline_rate's waves caught within the wave, its median delay (minutes from the
    wave's start to the tick that fired), and its false alerts on healthy gateways per
    gateway-month of the days it judges (from the second week on)."""
    delays: list[float] = []
    for scenario, mine in zip(waves.scenarios, wave_alerts, strict=True):
        assert scenario.incident_minute is not None
        assert scenario.end_minute is not None
        hits = [
            minute
            for minute, rule in mine
            if rule == "decline_rate" and scenario.incident_minute < minute <= scenario.end_minute
        ]
        delays.append(min(hits) - scenario.incident_minute if hits else np.inf)
    judged_from = WAVE_HISTORY_DAYS * 1440
    false = sum(
        1
        for mine in healthy_alerts
        for minute, rule in mine
        if rule == "decline_rate" and minute > judged_from
    )
    judged_days = (healthy.counts.payments.shape[1] - judged_from) / 1440
    months = judged_days * len(healthy.scenarios) / MONTH_DAYS
    caught = np.isfinite(delays)
    by_volume: dict[float, dict[str, Any]] = {}
    for volume in VOLUMES:
        at_volume = np.array(
            [d for s, d in zip(waves.scenarios, delays, strict=True) if s.volume == volume]
        )
        hit = at_volume[np.isfinite(at_volume)]
        by_volume[volume] = {
            "waves": int(at_volume.size),
            "caught": int(hit.size),
            "median_delay": float(np.median(hit)) if hit.size else None,
        }
    return {
        "waves": by_volume,
        "caught": int(caught.sum()),
        "false_alerts": false,
        "gateway_months": round(months, 2),
        "false_per_gateway_month": false / months if months else None,
    }


def firing_share(scenarios: ScenarioSet, config: Config) -> float:
    """Share of the counted gateway-minutes during which one of our alerts is firing."""
    counts = scenarios.counts
    start = counts.start.replace(tzinfo=UTC)
    minutes = counts.payments.shape[1]
    end = start + timedelta(minutes=minutes)
    opened: dict[str, int] = {}
    firing = 0
    first = scenarios.count_from

    def column(at: str) -> int:
        return int((datetime.fromisoformat(at) - start) / timedelta(minutes=1))

    def close(fingerprint: str, at: int) -> int:
        return max(at - max(opened.pop(fingerprint), first), 0)

    for event in replay(config, FrameSource(counts.to_counts()), start, end):
        if event.event == "firing":
            opened[event.fingerprint] = column(event.at)
        elif event.fingerprint in opened:
            firing += close(event.fingerprint, column(event.at))
    firing += sum(close(fingerprint, minutes) for fingerprint in list(opened))
    return float(firing / ((minutes - first) * len(scenarios.scenarios)))


def first_days(scenarios: ScenarioSet, days: int) -> ScenarioSet:
    """The scenarios' history and their first ``days`` counted days."""
    stop = scenarios.count_from + days * 1440
    counts = scenarios.counts
    cut = {
        name: getattr(counts, name)[:, :stop]
        for name in ("payments", "failures", "pending", "declines")
    }
    return replace(scenarios, counts=replace(counts, **cut))


def run(mode: Mode, seed: int, out: Any) -> dict[str, Any]:
    began = time.perf_counter()

    def progress(step: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f}s] {step}", file=sys.stderr, flush=True)

    ours = parse_config(DECLINES_COUNTED, env={})
    off = parse_config(
        {**DECLINES_COUNTED, "detection": {"decline_rate": {"enabled": False}}}, env={}
    )
    raised = parse_config({"detection": {"sla": RAISED_SLA}}, env={})
    assert INCIDENT.failure_rate is not None
    thresholds = calibrate_oracle(VOLUMES, [INCIDENT.failure_rate], mode.calibration_days, seed)
    progress("oracle calibrated")

    incidents = draw_incidents(
        mode.seeds,
        seed,
        volumes=VOLUMES,
        kinds=(INCIDENT,),
        baseline=TECHNICAL_RATE,
        decline_rate=DECLINE_RATE,
    )
    incident_tallies: dict[tuple[str, float], dict[str, Tally]] = {}
    score_incidents(
        incidents,
        our_alerts(incidents, ours),
        {"oracle": oracle_alerts(incidents, thresholds)},
        incident_tallies,
    )
    off_tallies: dict[tuple[str, float], dict[str, Tally]] = {}
    score_incidents(incidents, our_alerts(incidents, off), {}, off_tallies)
    merged = declines_as_failures(incidents)
    raised_tallies: dict[tuple[str, float], dict[str, Tally]] = {}
    score_incidents(merged, our_alerts(merged, raised), {}, raised_tallies)
    progress("incidents replayed")

    healthy = healthy_scenarios(mode, seed)
    quiet_tallies: dict[tuple[str, float, float, float], dict[str, Tally]] = {}
    healthy_alerts = our_alerts(healthy, ours)
    score_quiet(
        healthy,
        healthy_alerts,
        {"oracle": oracle_alerts(healthy, thresholds)},
        quiet_tallies,
        river_minutes=0,
    )
    shares = {
        "ours": firing_share(healthy, ours),
        # Firing from the first day on: a week shows it, and costs what firing costs to replay.
        "as failures": firing_share(declines_as_failures(first_days(healthy, 7)), ours),
        f"as failures, SLA {RAISED_SLA:.0%}": firing_share(declines_as_failures(healthy), raised),
    }
    progress("healthy runs replayed")

    waves = draw_incidents(
        mode.seeds,
        seed,
        volumes=VOLUMES,
        kinds=(DECLINE_WAVE,),
        baseline=TECHNICAL_RATE,
        decline_rate=DECLINE_RATE,
        history_days=WAVE_HISTORY_DAYS,
    )
    ours_on_waves = our_alerts(waves, ours)
    wave_alerts = {
        "ours": failure_alerts_during_waves(waves, ours_on_waves),
        f"as failures, SLA {RAISED_SLA:.0%}": failure_alerts_during_waves(
            declines_as_failures(waves), our_alerts(declines_as_failures(waves), raised)
        ),
    }
    decline_rate = decline_rate_figures(waves, ours_on_waves, healthy, healthy_alerts)
    progress("decline waves replayed")

    def summaries(tallies: dict[Any, dict[str, Tally]], key: Any, names: dict[str, str]) -> Any:
        return {shown: tallies[key][name].summary() for shown, name in names.items()}

    result = {
        "seed": seed,
        "incidents": {
            volume: {
                **summaries(
                    incident_tallies, (INCIDENT.name, volume), {"ours": "ours", "oracle": "oracle"}
                ),
                **summaries(off_tallies, (INCIDENT.name, volume), {"decline_rate off": "ours"}),
                **summaries(
                    raised_tallies,
                    (INCIDENT.name, volume),
                    {f"as failures, SLA {RAISED_SLA:.0%}": "ours"},
                ),
            }
            for volume in VOLUMES
        },
        "healthy": {
            volume: summaries(
                quiet_tallies,
                ("no incident", TECHNICAL_RATE, 0.0, volume),
                {"ours": "ours", "oracle": "oracle"},
            )
            for volume in VOLUMES
        },
        "healthy_firing_share": shares,
        "decline_waves": len(waves.scenarios),
        "failure_alerts_during_decline_waves": wave_alerts,
        "decline_rate": decline_rate,
        "seconds": round(time.perf_counter() - began, 1),
    }
    _print(result, mode, out)
    return result


def _delay(summary: dict[str, Any]) -> str:
    median = summary["median_delay"]
    return "-" if median is None else ("miss" if np.isinf(median) else f"{median:.0f}")


def _print(result: dict[str, Any], mode: Mode, out: Any) -> None:
    width = 24
    incidents = list(next(iter(result["incidents"].values())))
    out.write(
        f"\n{INCIDENT.name}, {mode.seeds} per volume: caught within the hour / incidents, "
        "median delay (min)\n"
    )
    out.write(f"{'payments/min':<14}" + "".join(f"{d:>{width}}" for d in incidents) + "\n")
    for volume, detectors in result["incidents"].items():
        cells = [
            f"{s['incidents'] - s['misses']}/{s['incidents']}, {_delay(s)}"
            for s in detectors.values()
        ]
        out.write(f"{volume:<14.0f}" + "".join(f"{c:>{width}}" for c in cells) + "\n")
    budget = MONTH_DAYS / BUDGET_DAYS
    out.write(
        f"\nhealthy with declines, {mode.healthy_gateways} gateways x {mode.healthy_days} days "
        f"per volume: false alerts per gateway-month, budget {budget:.2f} (alerts)\n"
    )
    healthy = list(next(iter(result["healthy"].values())))
    out.write(f"{'payments/min':<14}" + "".join(f"{d:>{width}}" for d in healthy) + "\n")
    for volume, detectors in result["healthy"].items():
        cells = [
            f"{s['false_per_gateway_month']:.2f} ({s['false_alerts']})" for s in detectors.values()
        ]
        out.write(f"{volume:<14.0f}" + "".join(f"{c:>{width}}" for c in cells) + "\n")
    out.write("share of the healthy time with an alert firing: ")
    out.write(", ".join(f"{n} {v:.1%}" for n, v in result["healthy_firing_share"].items()))
    out.write(
        f"\n\n{DECLINE_WAVE.name}, {result['decline_waves']} waves: sla_breach or outage "
        "alerts during a wave or the hour after: "
    )
    alerts = result["failure_alerts_during_decline_waves"].items()
    out.write(", ".join(f"{n} {v}" for n, v in alerts))
    figures = result["decline_rate"]
    out.write(
        f"\n\ndecline_rate on the same {result['decline_waves']} waves (after a week of history):\n"
    )
    out.write(f"{'payments/min':<14}{'caught / waves':>16}{'median delay (min)':>20}\n")
    for volume, wave in figures["waves"].items():
        delay = "-" if wave["median_delay"] is None else f"{wave['median_delay']:.0f}"
        out.write(f"{volume:<14.0f}{wave['caught']:>9}/{wave['waves']:<6}{delay:>20}\n")
    out.write(
        "decline_rate false alerts on the healthy gateways (diurnal swing of declines), "
        f"from their second week: {figures['false_alerts']} in {figures['gateway_months']} "
        f"gateway-months = {figures['false_per_gateway_month']:.2f} per gateway-month\n"
    )
    out.write(f"\n{result['seconds']:.0f} s\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds and healthy days")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    sys.stdout.write(
        f"declines benchmark ({'quick' if args.quick else 'full'}, seed {args.seed}): SLA "
        f"{SLA:.0%}, technical failures {TECHNICAL_RATE:.1%}, declines {DECLINE_RATE:.0%} "
        "on average with a diurnal swing, default alerts.yaml\n"
    )
    run(mode, args.seed, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
