"""``sla_breach``: a failure rate significantly above the SLA, by a bank of CUSUMs; and
``latency_breach``: the same test of the share of payments slower than a threshold.

Each member of the bank watches for one post-change failure rate (``detection.sla_breach
.rates``) with the hourly thresholds of :mod:`detector.rules.calibration`; the rule fires
where any member reaches its threshold. It runs on the gateways and on their dimension
series (``context.series``).

``latency_breach`` runs on a window whose "payments" are those with a latency and whose
"failures" are the slow ones (:meth:`~detector.model.Counts.latency`), with the latency
SLA as baselines (``detection.latency``): everything else is ``sla_breach``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from detector.config import BankRule, Config
from detector.rules.base import RuleContext, minutes_of
from detector.rules.calibration import Thresholds
from detector.rules.completeness import complete_minutes, late_note
from detector.rules.ticks import TickFigures
from detector.rules.verdict import (
    BoolArray,
    Finding,
    RuleResult,
    Severity,
    percent,
    rate_evidence,
    series_name,
)
from detector.stats.binomial import binomial_upper_tail, p_value_clause
from detector.stats.cusum import CusumBank
from detector.timeutil import minute_start
from detector.window import CountWindow

__all__ = ["BankFigures", "LatencyBreach", "SlaBreach", "bank_figures", "latency_text"]


@dataclass(frozen=True)
class BankFigures(TickFigures):
    """Per tick and row: the SLA bank's statistics and how they stand against the thresholds."""

    statistics: npt.NDArray[np.float64]  # (..., members)
    leader: npt.NDArray[np.int64]  # the member closest to (or furthest past) alarm
    closest: npt.NDArray[np.float64]  # that member's statistic / threshold


def bank_figures(bank: CusumBank, limits: Thresholds) -> BankFigures:
    # Unused members (NaN rate, infinite threshold) stay at 0 and never alarm.
    ratio = bank.statistics / limits.threshold
    active: BoolArray = np.asarray((ratio >= 1.0).any(axis=2), dtype=bool)
    return BankFigures(
        active=active,
        statistics=bank.statistics,
        leader=np.argmax(ratio, axis=2),
        closest=ratio.max(axis=2),
    )


class SlaBreach:
    """The ``sla_breach`` rule."""

    name = "sla_breach"

    def settings(self, config: Config) -> BankRule:
        """The bank's settings: ``detection.sla_breach``."""
        return config.detection.sla_breach

    def counted(self, config: Config) -> str:
        """What the payments of the watched count did: "failed"."""
        return "failed"

    def share(self, config: Config, rate: float) -> str:
        """The watched share as a message says it: "failure rate 2.1%"."""
        return f"failure rate {percent(rate)}"

    def evaluate(self, window: CountWindow, context: RuleContext) -> RuleResult:
        config, baselines, rows = context.config, context.baselines, context.series
        rule = self.settings(config)
        did = self.counted(config)
        # Judged up to the newest complete minute: late rows would still change the rate.
        lateness = context.lateness
        window = complete_minutes(window, lateness)
        limits = context.calibration.thresholds(
            window,
            config,
            baselines,
            context.sla_shares,
            None if rows is None else rows.watched,
            context.history,
            rule,
        )
        gateways = window.gateways if rows is None else rows.gateways
        labels: list[dict[str, str]] = [{}] * len(gateways) if rows is None else rows.labels
        served = context.served
        restarts = context.restarts
        if served is not None:
            bank, this = served.bank(limits, restarts), served.index
        else:
            first = None if restarts is None else restarts - (window.end_minute - window.minutes)
            live = (context.calibration.live(self.name), window.end_minute)
            bank = limits.bank(window.failures, window.payments, first=first, live=live)
            this = 0
        # The bank is the same object while the thresholds and the restarts stay the same.
        figures = context.figures(window, self.name, bank, lambda _: bank_figures(bank, limits))
        statistics, active, leader = figures.statistics, figures.active, figures.leader
        explain = minutes_of(rule.window)
        first_minute = window.end_minute - window.minutes

        def build(i: int) -> Finding:
            name = series_name(gateways[i], labels[i])
            m = int(leader[i])
            p0 = float(baselines[i])
            start = min(bank.start(i, m, this), window.minutes - 1)
            # Firing: the figures since the estimated change, undiluted by the healthy minutes
            # before it. Otherwise: the recent minutes that are back within the SLA.
            shown = (
                slice(start, window.minutes)
                if active[i]
                else _recovered_span(window, i, explain, p0)
            )
            n, k = int(window.payments[i, shown].sum()), int(window.failures[i, shown].sum())
            span = shown.stop - shown.start
            excursion_n = int(window.payments[i, start:].sum())
            estimate = window.failures[i, start:].sum() / excursion_n if excursion_n else 0.0
            rate = k / n if n else 0.0
            since = minute_start(first_minute + start)
            p_value = float(binomial_upper_tail(k, n, p0)) if n else 1.0
            statistic, threshold = float(statistics[i, m]), float(limits.threshold[i, m])
            severity: Severity = "critical" if estimate >= rule.critical_factor * p0 else "warning"
            if active[i]:
                summary = (
                    f"{name}: {percent(rate)} of {n} payments {did} since "
                    f"{since:%H:%M} ({span} min), above the {percent(p0)} SLA "
                    f"(CUSUM {statistic:.1f} >= {threshold:.1f}, {p_value_clause(p_value)})"
                )
            elif rate <= p0:
                summary = (
                    f"{name}: {self.share(config, rate)} over the last {span} min, "
                    f"back within the {percent(p0)} SLA"
                )
            else:
                # The evidence of a breach has faded, but no recent stretch is under the SLA yet.
                summary = (
                    f"{name}: {self.share(config, rate)} over the last {span} min, "
                    f"no longer clearly above the {percent(p0)} SLA "
                    f"(CUSUM {statistic:.1f} < {threshold:.1f})"
                )
            evidence = replace(
                rate_evidence(k, n, p0, span, p_value),
                statistic=statistic,
                threshold=threshold,
                dispersion=float(limits.rho[i]),
                magnitude=float(estimate / p0),
            )
            if lateness is not None:
                summary += late_note(lateness, i, window.end_minute - int(lateness[i]))
            return Finding(self.name, gateways[i], severity, summary, since, evidence, labels[i])

        return RuleResult(
            self.name,
            list(gateways),
            active,
            build,
            evidence_ratio=figures.closest,
            series=None if rows is None else rows.labels,
        )


class LatencyBreach(SlaBreach):
    """The ``latency_breach`` rule: ``sla_breach`` on the slow share of the timed payments."""

    name = "latency_breach"

    def settings(self, config: Config) -> BankRule:
        return config.detection.latency

    def counted(self, config: Config) -> str:
        return f"slower than {latency_text(config.detection.latency.threshold_ms)}"

    def share(self, config: Config, rate: float) -> str:
        return f"{percent(rate)} of payments {self.counted(config)}"


def latency_text(ms: float) -> str:
    """A latency threshold as people say it.

    >>> latency_text(2000), latency_text(1500), latency_text(800)
    ('2 s', '1.5 s', '800 ms')
    """
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"


def _recovered_span(window: CountWindow, i: int, longest: int, p0: float) -> slice:
    """The longest run of recent minutes (at most ``longest``) whose failure rate is within
    ``p0``, so a resolution does not quote a rate still diluted by the incident; the whole
    ``longest`` minutes if there is none."""
    columns = window.recent(longest)
    payments = np.cumsum(window.payments[i, columns][::-1])
    failures = np.cumsum(window.failures[i, columns][::-1])
    within = np.flatnonzero((payments > 0) & (failures <= p0 * payments))
    length = int(within[-1]) + 1 if within.size else payments.size
    return slice(window.minutes - length, window.minutes)
