"""``outage``: a near-total failure, caught within one tick.

A gateway is down when some suffix of its last minutes (the last 1, 2, ... up to
``detection.outage.window``) holds at least ``min_payments`` payments of which at least
``failure_rate`` failed. It runs on the gateways and on their dimension series
(``context.series``), where one country or method can be down while its gateway is not.

Where the gateway's rows arrive late, its newest minutes without
a payment are not judged yet (as many as its rows arrive minutes late, at most): the
suffixes end at its newest minute with payments, so a total outage whose failed rows land
minutes late fires on the tick they land.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.config import Config
from detector.rules.base import RuleContext, minutes_of
from detector.rules.completeness import late_note, trailing_empty
from detector.rules.ticks import TickFigures, Windows
from detector.rules.verdict import BoolArray, Finding, RuleResult, rate_evidence, series_name
from detector.stats.binomial import binomial_upper_tail
from detector.timeutil import minute_start
from detector.window import CountWindow

__all__ = ["Outage", "Outages", "outages"]


@dataclass(frozen=True)
class Outages(TickFigures):
    """Per tick and gateway: whether some suffix of the last minutes is down."""

    span: npt.NDArray[np.int64]  # the longest qualifying suffix
    payments: npt.NDArray[np.int64]  # (..., minutes): payments in the last 1, 2, ... minutes
    failures: npt.NDArray[np.int64]


def outages(windows: Windows, config: Config) -> Outages:
    rule = config.detection.outage
    minutes = minutes_of(rule.window)
    # Suffix sums: the last 1, 2, ... minutes, so a fresh outage is not diluted by the
    # healthy minutes before it.
    recent_payments = np.cumsum(windows.newest_first(windows.payments, minutes), axis=2)
    recent_failures = np.cumsum(windows.newest_first(windows.failures, minutes), axis=2)
    qualifies = (recent_payments >= rule.min_payments) & (
        recent_failures >= rule.failure_rate * recent_payments
    )
    active: BoolArray = np.asarray(qualifies.any(axis=2), dtype=bool)
    span = qualifies.shape[2] - np.argmax(qualifies[:, :, ::-1], axis=2)
    return Outages(active=active, span=span, payments=recent_payments, failures=recent_failures)


class Outage:
    """The ``outage`` rule."""

    name = "outage"

    def evaluate(self, window: CountWindow, context: RuleContext) -> RuleResult:
        config, baselines, rows = context.config, context.baselines, context.series
        gateways = window.gateways if rows is None else rows.gateways
        labels: list[dict[str, str]] = [{}] * len(gateways) if rows is None else rows.labels
        rule = config.detection.outage
        minutes, lateness = minutes_of(rule.window), context.lateness
        earlier = None if lateness is None else trailing_empty(window.payments, lateness)
        figures = context.figures(window, self.name, None, lambda w: outages(w, config), earlier)
        active, span = figures.active, figures.span
        recent_payments, recent_failures = figures.payments, figures.failures

        def build(i: int) -> Finding:
            name = series_name(gateways[i], labels[i])
            offset = 0 if earlier is None else int(earlier[i])
            columns = window.recent(minutes, offset)
            if active[i]:
                length = int(span[i])
            else:
                # Cleared: the minutes since the last one that looked down, if any in the window.
                payments, failures = window.payments[i, columns], window.failures[i, columns]
                down = np.flatnonzero((payments > 0) & (failures >= rule.failure_rate * payments))
                length = payments.size - int(down[-1]) - 1 if down.size else payments.size
                length = max(length, 1)
            n, k = int(recent_payments[i, length - 1]), int(recent_failures[i, length - 1])
            p0 = float(baselines[i])
            end = window.end_minute - offset
            if active[i]:
                summary = f"{name} is down: {k} of {n} payments failed in the last {length} min"
            elif n == 0:
                # No verdict on failures without payments: silence is no_data's to report.
                summary = (
                    f"{name} went silent: no payments in the last {length} min, so no "
                    "failure rate to judge (silence is the no_data rule's)"
                )
            else:
                summary = (
                    f"{name} is no longer down: {k} of {n} payments failed in the last {length} min"
                )
            summary += late_note(lateness, i, end)
            p_value = float(binomial_upper_tail(k, n, p0)) if n else None
            return Finding(
                "outage",
                gateways[i],
                "critical",
                summary,
                minute_start(end - length),
                rate_evidence(k, n, p0, length, p_value),
                labels[i],
            )

        series = None if rows is None else rows.labels
        return RuleResult(self.name, list(gateways), active, build, series=series)
