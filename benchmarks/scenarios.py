"""The detection benchmark's scenarios, drawn with the simulator's traffic model (seeded).

Each scenario is one simulated gateway; scenarios of one group share a time axis so that a
single replay (and one vectorised pass of each reference detector) serves them all.

- No incident: every volume x failure baseline (1%, and 2% = exactly at the SLA) x
  beta-binomial dispersion (rho 0, 0.002, 0.005), for ``days`` days with diurnal and weekly
  traffic (after more days of the same on request: history for the dispersion estimate).
- Incidents: each gateway has at least one healthy day (failure rate 1%; more on request)
  before its incident, which starts on a random day of the week at a time of day spread
  evenly over the 24 hours (quiet hours included) across the seeds. Volume incidents get at
  least ``VOLUME_HISTORY_DAYS``: a week for the seasonal volume rules to learn, and a day to
  replay through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from detector.simulate import GatewayProfile, Incident, MinuteCounts, minute_counts

__all__ = [
    "HARMLESS_SHIFT",
    "HEALTHY_RATE",
    "INCIDENT_KINDS",
    "SLA",
    "START",
    "VOLUMES",
    "VOLUME_HISTORY_DAYS",
    "IncidentKind",
    "Scenario",
    "ScenarioSet",
    "incident_scenarios",
    "incident_sets",
    "quiet_scenarios",
]

SLA = 0.02
HEALTHY_RATE = 0.01
START = datetime(2026, 11, 2)  # a Monday, naive UTC
VOLUMES = (0.5, 2.0, 10.0, 50.0, 200.0)  # mean payments per minute on a weekday
QUIET_BASELINES = (HEALTHY_RATE, SLA)
QUIET_DISPERSIONS = (0.0, 0.002, 0.005)
_RAMP_MINUTES, _RAMP_STEP, _RAMP_HOLD = 120, 5, 60
VOLUME_HISTORY_DAYS = 8


@dataclass(frozen=True)
class IncidentKind:
    """What goes wrong and for how long."""

    name: str
    # "failure": the failure rate rises; "volume": the payments thin out or stop;
    # "harmless": the failure rate rises but stays within the SLA; "declines": a decline wave
    family: str
    minutes: int
    failure_rate: float | None = None  # during a step (the end rate of a ramp)
    volume_factor: float | None = None
    ramp: bool = False
    decline_rate: float | None = None
    latency: float | None = None  # the p95 latency (ms) during a slow checkout


INCIDENT_KINDS = (
    IncidentKind("step 2x SLA", "failure", 240, failure_rate=2 * SLA),
    IncidentKind("step 2.5x SLA", "failure", 240, failure_rate=2.5 * SLA),
    IncidentKind("step 5x SLA", "failure", 240, failure_rate=5 * SLA),
    IncidentKind("step 15x SLA", "failure", 240, failure_rate=15 * SLA),
    IncidentKind("outage (100%)", "failure", 60, failure_rate=1.0),
    IncidentKind(
        "ramp 1% -> 10% over 2 h",
        "failure",
        _RAMP_MINUTES + _RAMP_HOLD,
        failure_rate=5 * SLA,
        ramp=True,
    ),
    IncidentKind("volume drop to 20% for 1 h", "volume", 60, volume_factor=0.2),
    IncidentKind("silence for 45 min", "volume", 45, volume_factor=0.0),
)

# Not an incident: the failure rate rises but stays within the SLA. Any alert is a false one
# (a detector of change rather than of SLA breach raises them).
HARMLESS_SHIFT = IncidentKind("shift 1% -> 1.8% (harmless)", "harmless", 240, failure_rate=0.018)


@dataclass(frozen=True)
class Scenario:
    """One simulated gateway and what happens to it."""

    gateway: str
    kind: str  # an IncidentKind's name, or "no incident"
    family: str  # "none", "failure", "volume", "harmless" or "declines"
    volume: float
    baseline: float  # failure rate while healthy
    dispersion: float
    seed: int  # which repetition of this kind and volume
    incident_minute: int | None = None  # first column of the incident
    delay_from: int | None = None  # column delays count from (a ramp's crossing of the SLA)
    end_minute: int | None = None  # first column after the incident
    true_rate: float | None = None  # the failure rate the oracle is told


@dataclass(frozen=True)
class ScenarioSet:
    """Scenarios sharing one time axis, with their simulated counts (row g = scenarios[g])."""

    scenarios: tuple[Scenario, ...]
    counts: MinuteCounts
    count_from: int  # first column in which alerts count (earlier ones are warm-up)

    @property
    def start(self) -> datetime:
        return self.counts.start


def quiet_scenarios(
    days: int, seed: int, volumes: tuple[float, ...] = VOLUMES, history_days: int = 1
) -> ScenarioSet:
    """No incident, ``days`` days long after ``history_days - 1`` more days of the same
    traffic; alerts count from day ``history_days`` on (the second day by default)."""
    if history_days < 1:
        raise ValueError("give each gateway at least one day of history")
    scenarios: list[Scenario] = []
    profiles: list[GatewayProfile] = []
    for baseline in QUIET_BASELINES:
        for rho in QUIET_DISPERSIONS:
            for volume in volumes:
                name = f"quiet-{len(scenarios):03d}"
                scenarios.append(Scenario(name, "no incident", "none", volume, baseline, rho, 0))
                profiles.append(GatewayProfile(name, volume, baseline, dispersion_rho=rho))
    end = START + timedelta(days=days + history_days - 1)
    counts = minute_counts(START, end, profiles, seed=seed)
    return ScenarioSet(tuple(scenarios), counts, count_from=history_days * 1440)


def _incidents_of(kind: IncidentKind, gateway: str, start: datetime) -> list[Incident]:
    if not kind.ramp:
        return [
            Incident(
                gateway,
                start,
                timedelta(minutes=kind.minutes),
                failure_rate=kind.failure_rate,
                volume_factor=kind.volume_factor,
                decline_rate=kind.decline_rate,
                latency=kind.latency,
            )
        ]
    assert kind.failure_rate is not None
    steps = _RAMP_MINUTES // _RAMP_STEP
    rates = np.linspace(HEALTHY_RATE, kind.failure_rate, steps + 1)[1:]
    ramp = [
        Incident(
            gateway,
            start + timedelta(minutes=i * _RAMP_STEP),
            timedelta(minutes=_RAMP_STEP),
            failure_rate=float(rate),
        )
        for i, rate in enumerate(rates)
    ]
    hold = start + timedelta(minutes=_RAMP_MINUTES)
    return [*ramp, Incident(gateway, hold, timedelta(minutes=_RAMP_HOLD), kind.failure_rate)]


def _ramp_crossing(kind: IncidentKind) -> int:
    """Minutes from a ramp's start to its first step above the SLA, where delays count from."""
    assert kind.failure_rate is not None
    steps = _RAMP_MINUTES // _RAMP_STEP
    rates = np.linspace(HEALTHY_RATE, kind.failure_rate, steps + 1)[1:]
    return int(np.argmax(rates > SLA)) * _RAMP_STEP


def incident_scenarios(
    seeds: int,
    seed: int,
    volumes: tuple[float, ...] = VOLUMES,
    kinds: tuple[IncidentKind, ...] = INCIDENT_KINDS,
    history_days: int = 1,
    baseline: float = HEALTHY_RATE,
    decline_rate: float = 0.0,
) -> ScenarioSet:
    """``seeds`` repetitions of every kind x volume, each a gateway with its own incident,
    failing at ``baseline`` when healthy, with ``decline_rate`` declines (diurnal swing).

    Incidents start on one of the 6 days after ``history_days`` days of healthy history from
    Monday ``START`` (so every day of the week gets some); alerts before the incident count
    as false alerts from the second day on.
    """
    if history_days < 1:
        raise ValueError("give each gateway at least one day of history")
    rng = np.random.default_rng([seed, 3])
    scenarios: list[Scenario] = []
    profiles: list[GatewayProfile] = []
    incidents: list[Incident] = []
    latest_end = 0
    for kind in kinds:
        for volume in volumes:
            # Times of day spread evenly over the 24 hours across the repetitions.
            times_of_day = (np.arange(seeds) + rng.random(seeds)) / seeds * 1440
            for repetition, time_of_day in enumerate(rng.permutation(times_of_day)):
                name = f"inc-{len(scenarios):04d}"
                day = history_days + int(rng.integers(0, 6))
                start_minute = day * 1440 + int(time_of_day)
                start = START + timedelta(minutes=start_minute)
                offset = _ramp_crossing(kind) if kind.ramp else 0
                scenarios.append(
                    Scenario(
                        name,
                        kind.name,
                        kind.family,
                        volume,
                        baseline,
                        0.0,
                        repetition,
                        start_minute,
                        start_minute + offset,
                        start_minute + kind.minutes,
                        kind.failure_rate,
                    )
                )
                profiles.append(GatewayProfile(name, volume, baseline, decline_rate=decline_rate))
                incidents += _incidents_of(kind, name, start)
                latest_end = max(latest_end, start_minute + kind.minutes)
    end = START + timedelta(minutes=latest_end + 1)
    counts = minute_counts(START, end, profiles, incidents, seed=seed)
    return ScenarioSet(tuple(scenarios), counts, count_from=1440)


def incident_sets(
    seeds: int,
    seed: int,
    history_days: int = 1,
    volume_history_days: int | None = None,
    kinds: tuple[IncidentKind, ...] = INCIDENT_KINDS,
) -> tuple[ScenarioSet, ...]:
    """The failure-rate incidents after ``history_days`` healthy days, and the volume ones
    after ``volume_history_days`` (default: at least ``VOLUME_HISTORY_DAYS``), each group on
    its own time axis (so the failure scenarios are not replayed over the volume ones'
    longer history). Only ``kinds``; a group without any is left out."""
    if volume_history_days is None:
        volume_history_days = max(history_days, VOLUME_HISTORY_DAYS)
    failure = tuple(kind for kind in kinds if kind.family == "failure")
    volume = tuple(kind for kind in kinds if kind.family == "volume")
    groups = ((failure, history_days), (volume, volume_history_days))
    return tuple(
        incident_scenarios(seeds, seed, kinds=group, history_days=days)
        for group, days in groups
        if group
    )
