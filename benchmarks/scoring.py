"""Scoring the detection benchmark: each detector's delays and false alerts per scenario group.

Our alerts are ``(column, rule)`` per scenario row, stamped with the tick that fired (tick
``t`` has seen the minutes before ``t``); a reference detector's alert matrix marks the column
after which it fired, so its tick is the column plus one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.scenarios import Scenario, ScenarioSet

__all__ = [
    "BUDGET_DAYS",
    "FAILURE_RULES",
    "MONTH_DAYS",
    "RIVER_DETECTORS",
    "RIVER_MAX_VOLUME",
    "Key",
    "Tally",
    "river_runs",
    "score_harmless",
    "score_incidents",
    "score_quiet",
]

BoolArray = npt.NDArray[np.bool_]
Key = tuple[str, float]  # (scenario kind, volume)

BUDGET_DAYS = 90  # the default budget: 1 false alert per gateway per 90 days
MONTH_DAYS = 30
# Rules about the failure rate; every other gateway rule of ours is about volume.
FAILURE_RULES = frozenset({"sla_breach", "outage"})
# river's detectors cost a Python call per payment: they run on the lower volumes only.
RIVER_DETECTORS = ("ADWIN", "DDM")
RIVER_MAX_VOLUME = 50.0


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


def river_runs(scenario: Scenario) -> bool:
    """Whether river's detectors run on this scenario."""
    return scenario.volume <= RIVER_MAX_VOLUME


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
            if name in RIVER_DETECTORS:
                if not river_runs(scenario):
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
        assert s.incident_minute is not None
        assert s.end_minute is not None
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
            river = name in RIVER_DETECTORS
            if river and not river_runs(s):
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
        assert s.incident_minute is not None
        assert s.end_minute is not None
        lo, hi = s.incident_minute + 1, s.end_minute + 60
        counts = rows.setdefault(s.volume, {})
        alerted = [_first((m for m, rule in ours[i] if rule != "source_down"), lo, hi)]
        counts.setdefault("ours", []).append(int(alerted[0] is not None))
        for name, alerts in references.items():
            if name in RIVER_DETECTORS and river_span(s) is None:
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
