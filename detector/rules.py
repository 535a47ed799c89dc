"""Turns a window of counts into verdicts per gateway per rule, with their evidence.

Every rule is computed for all gateways at once with numpy; a :class:`Finding` (the
human-readable verdict) is only built for the gateways the alert lifecycle asks about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

from detector.config import Config
from detector.notify.base import Evidence
from detector.stats.binomial import (
    binomial_upper_tail,
    change_point,
    poisson_zero_probability,
    wilson_interval,
)
from detector.window import CountWindow

__all__ = ["Finding", "RuleResult", "evaluate", "minutes_needed", "source_down_finding"]

Severity = Literal["warning", "critical"]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Finding:
    """What one rule concluded about one gateway (or the source) at one tick."""

    rule: str
    gateway: str | None
    severity: Severity
    summary: str
    since: datetime
    evidence: Evidence


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict for every gateway of the window, in window order."""

    rule: str
    gateways: list[str]
    active: BoolArray
    build: Callable[[int], Finding]

    def finding(self, index: int) -> Finding:
        return self.build(index)


def _minutes(duration: timedelta) -> int:
    return max(1, round(duration.total_seconds() / 60))


def minutes_needed(config: Config) -> int:
    """How many minute buckets the enabled rules look back over."""
    detection = config.detection
    return max(
        _minutes(detection.sla_breach.window),
        _minutes(detection.outage.window),
        _minutes(detection.no_data.silence) + _minutes(detection.no_data.history),
    )


def _minute_start(epoch_minute: int) -> datetime:
    return datetime.fromtimestamp(epoch_minute * 60, tz=UTC)


def _pct(rate: float) -> str:
    return f"{rate:.1%}" if rate >= 0.001 or rate == 0 else f"{rate:.2%}"


def _rate_evidence(
    failures: int, payments: int, baseline: float, minutes: int, p_value: float | None = None
) -> Evidence:
    low, high = wilson_interval(failures, payments)
    return Evidence(
        value=failures / payments if payments else None,
        interval_low=float(low),
        interval_high=float(high),
        baseline=baseline,
        payments=payments,
        failures=failures,
        window_minutes=minutes,
        p_value=p_value,
    )


def _sla_breach(
    window: CountWindow, config: Config, baselines: npt.NDArray[np.float64]
) -> RuleResult:
    rule = config.detection.sla_breach
    minutes = _minutes(rule.window)
    columns = window.recent(minutes)
    payments = window.payments[:, columns].sum(axis=1)
    failures = window.failures[:, columns].sum(axis=1)
    p_values = np.ones(len(window.gateways))
    eligible = payments >= rule.min_payments
    if eligible.any():
        p_values[eligible] = binomial_upper_tail(
            failures[eligible], payments[eligible], baselines[eligible]
        )
    active = eligible & (p_values < rule.alpha) & (failures > payments * baselines)
    first_minute = window.end_minute - window.minutes + (columns.start or 0)

    def build(i: int) -> Finding:
        n, k, p0 = int(payments[i]), int(failures[i]), float(baselines[i])
        rate = k / n if n else 0.0
        start = change_point(
            window.failures[i : i + 1, columns], window.payments[i : i + 1, columns], p0
        )[0]
        severity: Severity = "critical" if rate >= rule.critical_factor * p0 else "warning"
        summary = (
            f"{window.gateways[i]}: {_pct(rate)} of {n} payments failed in the last {minutes} min, "
            f"above the {_pct(p0)} SLA (p = {p_values[i]:.1e})"
            if active[i]
            else f"{window.gateways[i]}: failure rate {_pct(rate)} over {n} payments is within "
            f"the {_pct(p0)} SLA"
        )
        return Finding(
            "sla_breach",
            window.gateways[i],
            severity,
            summary,
            _minute_start(first_minute + int(start)),
            _rate_evidence(k, n, p0, minutes, float(p_values[i])),
        )

    return RuleResult("sla_breach", window.gateways, active, build)


def _outage(window: CountWindow, config: Config, baselines: npt.NDArray[np.float64]) -> RuleResult:
    rule = config.detection.outage
    minutes = _minutes(rule.window)
    columns = window.recent(minutes)
    # Suffix sums: the last 1, 2, ... minutes, so a fresh outage is not diluted by the
    # healthy minutes before it.
    recent_payments = np.cumsum(window.payments[:, columns][:, ::-1], axis=1)
    recent_failures = np.cumsum(window.failures[:, columns][:, ::-1], axis=1)
    qualifies = (recent_payments >= rule.min_payments) & (
        recent_failures >= rule.failure_rate * recent_payments
    )
    active: BoolArray = np.asarray(qualifies.any(axis=1), dtype=bool)
    span = qualifies.shape[1] - np.argmax(qualifies[:, ::-1], axis=1)  # longest qualifying suffix

    def build(i: int) -> Finding:
        length = int(span[i]) if active[i] else qualifies.shape[1]
        n, k = int(recent_payments[i, length - 1]), int(recent_failures[i, length - 1])
        p0 = float(baselines[i])
        summary = (
            f"{window.gateways[i]} is down: {k} of {n} payments failed in the last {length} min"
            if active[i]
            else f"{window.gateways[i]}: {k} of {n} payments failed in the last {length} min"
        )
        p_value = float(binomial_upper_tail(k, n, p0)) if n else None
        return Finding(
            "outage",
            window.gateways[i],
            "critical",
            summary,
            _minute_start(window.end_minute - length),
            _rate_evidence(k, n, p0, length, p_value),
        )

    return RuleResult("outage", window.gateways, active, build)


def _no_data(window: CountWindow, config: Config) -> RuleResult:
    rule = config.detection.no_data
    silence, history = _minutes(rule.silence), _minutes(rule.history)
    recent = window.volume[:, window.recent(silence)].sum(axis=1)
    before = window.volume[:, window.recent(history, offset=silence)].sum(axis=1)
    latest = min(history, 2 * silence)
    just_before = window.volume[:, window.recent(latest, offset=silence)].sum(axis=1)
    # The lower of the long and the latest rate: traffic falling into the night must not
    # look like a silent gateway (a seasonal expectation replaces this in a later version).
    expected = np.minimum(before / history, just_before / latest) * silence
    active = (recent == 0) & (poisson_zero_probability(expected) < rule.alpha)
    has_volume = window.volume > 0
    last_seen = window.minutes - np.argmax(has_volume[:, ::-1], axis=1)  # column after the last row

    def build(i: int) -> Finding:
        since_minute = window.end_minute - window.minutes + int(last_seen[i])
        summary = (
            f"{window.gateways[i]} is silent: no payments for {silence} min where "
            f"{expected[i]:.0f} were expected from the previous {history // 60 or history}"
            f"{' h' if history >= 60 else ' min'}"
            if active[i]
            else f"{window.gateways[i]}: {int(recent[i])} payments in the last {silence} min"
        )
        return Finding(
            "no_data",
            window.gateways[i],
            "critical",
            summary,
            _minute_start(since_minute)
            if has_volume[i].any()
            else _minute_start(window.end_minute - silence),
            Evidence(
                payments=int(recent[i]),
                window_minutes=silence,
                p_value=float(poisson_zero_probability(expected[i])),
                expected_payments=float(expected[i]),
            ),
        )

    return RuleResult("no_data", window.gateways, active, build)


def evaluate(window: CountWindow, config: Config) -> list[RuleResult]:
    """Every enabled rule's verdict on the window as it stands."""
    baselines = np.array([config.sla_for(g) for g in window.gateways], dtype=np.float64)
    detection = config.detection
    results = []
    if detection.outage.enabled:
        results.append(_outage(window, config, baselines))
    if detection.sla_breach.enabled:
        results.append(_sla_breach(window, config, baselines))
    if detection.no_data.enabled:
        results.append(_no_data(window, config))
    return results


def source_down_finding(failed_ticks: int, since: datetime, error: str) -> Finding:
    """The single alert raised when the payments database cannot be read (not one per gateway)."""
    return Finding(
        "source_down",
        None,
        "critical",
        f"the payments source cannot be read ({failed_ticks} ticks in a row): {error}",
        since,
        Evidence(),
    )
