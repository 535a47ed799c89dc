"""``decline_rate``: the share of final payments declined far above its usual share for
this time of the week (a decline wave: an issuer's or a fraud screen's problem, not the
gateway's SLA).

The usual share comes from the weeks of quarter hours the volume rules keep
(:meth:`~detector.rules.seasonal.VolumeHistory.decline_baseline`), so the ordinary
diurnal swing of the declines is the baseline, not a wave. The last ``window`` minutes,
their half and their quarter are each tested one-sided (exact binomial) against the usual
share over the quarter hours they cover, raised by the relative margin ``above`` (and at
least ``min_increase``), at the rule's share of the false-alert budget per tick split
between the three. A gateway without a decline in its weeks of history, or without a week
of them, is not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from detector.config import Config
from detector.model import Evidence
from detector.rules.base import RuleContext, minutes_of
from detector.rules.completeness import late_note
from detector.rules.seasonal import DeclineBaseline, VolumeHistory
from detector.rules.ticks import TickFigures, Windows
from detector.rules.verdict import BoolArray, Finding, RuleResult, percent
from detector.rules.volume import volume_alpha
from detector.stats.binomial import binomial_upper_tail, p_value_clause
from detector.stats.seasonal import SLOT_MINUTES
from detector.timeutil import minute_start
from detector.window import CountWindow

__all__ = [
    "DeclineRate",
    "DeclineWaves",
    "decline_limit",
    "decline_spans",
    "decline_waves",
    "span_usual",
]

Values = TypeVar("Values", bound=np.generic)


def decline_spans(window: int) -> tuple[int, ...]:
    """The recent stretches tested, in minutes: the window, its half and its quarter (a
    wave at a busy gateway shows within minutes, at a quiet one only over the hour).

    >>> decline_spans(60)
    (15, 30, 60)
    """
    return tuple(sorted({max(window // 4, 1), max(window // 2, 1), window}))


@dataclass(frozen=True)
class DeclineWaves(TickFigures):
    """Per tick and gateway: the decline_rate rule's figures, on the most significant span."""

    declines: npt.NDArray[np.int64]
    payments: npt.NDArray[np.int64]
    span: npt.NDArray[np.int64]  # minutes
    usual: npt.NDArray[np.float64]  # the usual share over that span of the week; NaN: unknown
    chance: npt.NDArray[np.float64]  # of as many declines at the raised usual share


def decline_limit(usual: npt.ArrayLike, config: Config) -> npt.NDArray[np.float64]:
    """The share a wave must exceed: the usual one times ``above``, at least ``min_increase``
    above it.

    >>> from detector.config import parse_config
    >>> decline_limit([0.06, 0.01], parse_config({}, env={})).round(3).tolist()
    [0.09, 0.03]
    """
    rule = config.detection.decline_rate
    share = np.asarray(usual, dtype=np.float64)
    limit = np.maximum(share * rule.above, share + rule.min_increase)
    return np.asarray(np.minimum(limit, 0.999))


def span_usual(
    baseline: DeclineBaseline, end_minutes: npt.NDArray[np.int64], minutes: int
) -> npt.NDArray[np.float64]:
    """(ticks, rows): the usual share over the ``minutes`` before each of ``end_minutes``:
    the usual shares of the quarter hours the span covers, each weighted by the span's
    minutes in it (quarter hours without a usual share left out; NaN if none has one).
    An hour that ends just past a sharp step of the day's declines (the end of a night of
    riskier payments) then expects the night's share for its night minutes."""
    first = end_minutes - minutes
    first_slot = first // SLOT_MINUTES
    touched = (end_minutes - 1) // SLOT_MINUTES - first_slot + 1
    last_column = baseline.usual.shape[1] - 1
    total = np.zeros((end_minutes.size, baseline.usual.shape[0]))
    weight = np.zeros_like(total)
    # A quarter hour at a time, as the volume rules' span: the same sums live and replayed.
    for j in range(int(touched.max())):
        slot = first_slot + j
        overlap = np.minimum((slot + 1) * SLOT_MINUTES, end_minutes) - np.maximum(
            slot * SLOT_MINUTES, first
        )
        # Before the baseline's first quarter hour (a window over an hour): its oldest one.
        column = np.clip(slot - baseline.first_slot, 0, last_column)
        share = baseline.usual[:, column].T
        counted = (j < touched)[:, None] & np.isfinite(share)
        minutes_in = np.where(counted, overlap[:, None].astype(np.float64), 0.0)
        total = total + np.where(counted, share, 0.0) * minutes_in
        weight = weight + minutes_in
    usual: npt.NDArray[np.float64] = np.where(weight > 0, total / np.maximum(weight, 1.0), np.nan)
    return usual


def decline_waves(windows: Windows, config: Config, history: VolumeHistory | None) -> DeclineWaves:
    ticks, rows = windows.ends.size, len(windows.gateways)
    spans = decline_spans(minutes_of(config.detection.decline_rate.window))
    usuals = np.full((len(spans), ticks, rows), np.nan)
    seen = np.zeros(rows, dtype=bool)
    if history is not None and config.declines_watched:
        baseline = history.decline_baseline(windows.gateways)
        usuals = np.stack([span_usual(baseline, windows.end_minutes, s) for s in spans])
        seen = baseline.seen
    # Rows without a usual share are not judged: any finite stand-in keeps the maths quiet.
    limits = decline_limit(np.where(np.isfinite(usuals), usuals, 0.5), config)
    declines = np.stack([windows.recent(windows.declines, s) for s in spans])
    payments = np.stack([windows.recent(windows.payments, s) for s in spans])
    chances = binomial_upper_tail(declines, payments, limits)
    pick = np.argmin(chances, axis=0)[None, ...]  # the most significant span, per tick and row

    def taken(values: npt.NDArray[Values]) -> npt.NDArray[Values]:
        chosen: npt.NDArray[Values] = np.take_along_axis(values, pick, axis=0)[0]
        return chosen

    chance = taken(chances)
    # Each tick is one chance of a false alert per span: the rule's share of the budget per
    # tick, split between the spans (Bonferroni).
    significant = chance < volume_alpha(config) / len(spans)
    # The newest quarter of the window must still be above the limit, so that the alert
    # clears soon after the wave ends instead of when the whole window has forgotten it.
    still = declines[0] > limits[0] * payments[0]
    usual = taken(usuals)
    active: BoolArray = np.asarray(
        significant & still & seen[None, :] & np.isfinite(usual), dtype=bool
    )
    return DeclineWaves(
        active=active,
        declines=taken(declines),
        payments=taken(payments),
        span=np.asarray(spans, dtype=np.int64)[pick[0]],
        usual=usual,
        chance=chance,
    )


class DeclineRate:
    """The ``decline_rate`` rule."""

    name = "decline_rate"

    def evaluate(self, window: CountWindow, context: RuleContext) -> RuleResult:
        config, history, lateness = context.config, context.history, context.lateness
        rule = config.detection.decline_rate
        figures = context.figures(
            window, self.name, history, lambda w: decline_waves(w, config, history), lateness
        )

        shortest = decline_spans(minutes_of(rule.window))[0]

        def build(i: int) -> Finding:
            late = 0 if lateness is None else int(lateness[i])
            end = window.end_minute - late
            usual = float(figures.usual[i])
            firing = bool(figures.active[i])
            # Firing: the most significant span. Otherwise the newest minutes, as they stand.
            span = int(figures.span[i]) if firing else shortest
            columns = window.recent(span, late)
            n = int(window.payments[i, columns].sum())
            k = int(window.declines[i, columns].sum())
            share = k / n if n else 0.0
            summary = f"{window.gateways[i]}: declines {percent(share)} of {n} payments "
            summary += f"in the last {span} min"
            if np.isfinite(usual) and firing:
                p_value = p_value_clause(float(figures.chance[i]))
                summary += f" (usual {percent(usual)} at this hour, {p_value})"
            elif np.isfinite(usual):
                summary += f", usual {percent(usual)} at this hour"
            return Finding(
                self.name,
                window.gateways[i],
                rule.severity,
                summary + late_note(lateness, i, end),
                minute_start(end - span),
                Evidence(
                    payments=n,
                    failures=int(window.failures[i, columns].sum()),
                    declines=k,
                    usual_decline_rate=usual if np.isfinite(usual) else None,
                    window_minutes=span,
                    p_value=float(figures.chance[i]) if firing else None,
                    magnitude=share / usual if usual > 0 else None,
                ),
            )

        return RuleResult(self.name, window.gateways, figures.active, build)
