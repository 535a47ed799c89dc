"""``volume_drop``: far fewer payments than expected for this time of the week (the "sales
suddenly dropped" case), or, in a gateway's first week, than the traffic just before.

A gateway whose rows arrive minutes late (or in batches) has its newest minutes still
filling up: its window ends that many minutes before the newest, on minutes whose rows
have arrived, so a batch not yet written is not a drop. Where its rows trickle in, the
window ends at the newest minute instead, and the expectation is scaled by the share of
the rows visible by each minute's age (:class:`~detector.rules.completeness.Nowcast`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.config import Config
from detector.model import Evidence
from detector.rules.base import RuleContext, minutes_of
from detector.rules.completeness import Nowcast, late_note, nowcast_size, volume_lateness
from detector.rules.seasonal import VolumeHistory
from detector.rules.ticks import TickFigures, Windows
from detector.rules.verdict import BoolArray, Finding, RuleResult
from detector.rules.volume import mean_before, rate_before, volume_alpha
from detector.stats.binomial import p_value_clause
from detector.stats.seasonal import DEFAULT_SIZE, negative_binomial_cdf
from detector.timeutil import minute_start
from detector.window import CountWindow

__all__ = ["DROP_BLOCKS", "DROP_BLOCK_MINUTES", "Drops", "VolumeDrop", "drops", "rate_before_drop"]


# How far back a first-week drop is followed to the traffic before it began: blocks of
# minutes, at most this many of them.
DROP_BLOCK_MINUTES, DROP_BLOCKS = 5, 9


def rate_before_drop(
    volume: npt.NDArray[np.int64],
    stop: npt.NDArray[np.int64],
    history: int,
    span: int,
    below: float,
    first: npt.ArrayLike = 0,
) -> npt.NDArray[np.float64]:
    """:func:`~detector.rules.volume.rate_before` column ``stop``, or before the drop that
    ``stop`` is in: the whole blocks of ``DROP_BLOCK_MINUTES`` just before ``stop`` (up to
    ``DROP_BLOCKS``) whose volume is below ``below`` times the mean rate over ``history``
    belong to a drop that began before the window, and the rate is the one before them."""
    offsets = np.arange(DROP_BLOCKS).reshape(-1, *[1] * stop.ndim) * DROP_BLOCK_MINUTES
    ends = stop[None, ...] - offsets
    whole = ends - DROP_BLOCK_MINUTES >= np.asarray(first)
    blocks = mean_before(volume, np.maximum(ends, DROP_BLOCK_MINUTES), (DROP_BLOCK_MINUTES,))[0]
    # Against the long rate: the latest one already holds the drop's first minutes.
    long_rate = mean_before(volume, stop, (history,), first)[0]
    low = whole & (blocks < below * long_rate[None, ...])
    run = np.cumprod(low, axis=0).sum(axis=0)  # consecutive low blocks from ``stop`` back
    return rate_before(volume, stop - run * DROP_BLOCK_MINUTES, history, span, first)


def _per_minute(rate: float) -> str:
    """``28``, ``1.4``, ``0.25``: a rate a minute to two significant figures or more.

    >>> [_per_minute(r) for r in (28.4, 1.43, 0.254, 0.0)]
    ['28', '1.4', '0.25', '0']
    """
    return f"{rate:.0f}" if rate >= 10 or rate == 0 else f"{rate:.2g}"


@dataclass(frozen=True)
class Drops(TickFigures):
    """Per tick and gateway: the volume_drop rule's figures."""

    observed: npt.NDArray[np.int64]  # payments in the last ``window`` minutes
    expected: npt.NDArray[np.float64]
    simple: npt.NDArray[np.float64]  # the expectation from the traffic before the window
    seasonal: BoolArray  # the expectation is the seasonal one (a week of history)
    chance: npt.NDArray[np.float64]  # of as few payments
    per_minute: npt.NDArray[np.float64]  # seasonal payments expected a minute, else NaN
    holding: BoolArray  # a first-week drop still below the traffic before it began
    before_drop: npt.NDArray[np.float64]  # first week: that traffic (NaN where seasonal)
    visible: npt.NDArray[np.float64]  # share of the window's rows expected to be visible


def drops(
    windows: Windows,
    config: Config,
    history: VolumeHistory | None,
    nowcast: Nowcast | None = None,
) -> Drops:
    rule = config.detection.volume_drop
    minutes = minutes_of(rule.window)
    observed = windows.recent(windows.volume, minutes)
    # Without a week of history: the traffic of the hours just before the window (see
    # rate_before), under the noise the seasonal rule assumes until it can fit its own.
    # A drop that lasts soon lowers that expectation too: ``holding`` below keeps its alert.
    first = (windows.ends - windows.minutes)[:, None]  # each tick's first column
    before = np.maximum(windows.ends - minutes, windows.ends - windows.minutes)
    stop = np.repeat(before[:, None], len(windows.gateways), axis=1)
    simple = rate_before(windows.volume, stop, minutes_of(rule.history), minutes, first) * minutes
    seasonal = np.zeros(observed.shape, dtype=bool)
    held = np.zeros(observed.shape, dtype=bool)
    expected, size = simple, np.full(len(windows.gateways), DEFAULT_SIZE)
    if history is not None:
        season = history.span_expectation(windows.gateways, windows.end_minutes, minutes)
        seasonal = np.isfinite(season.expected)
        expected = np.where(seasonal, season.expected, simple)
        size = np.where(seasonal, season.size, DEFAULT_SIZE)
        # A declared day of unknown effect has no expectation to fall short of; nor has one
        # of known effect without the seasonal one (the traffic just before is not scaled).
        held = season.held | (season.declared & ~seasonal)
    # Where the newest minutes are nowcast: against the payments expected to be visible.
    judged, size = nowcast_size(expected, size, nowcast, minutes)
    visible = np.broadcast_to(
        nowcast.visible(minutes) if nowcast is not None and nowcast.smooth.any() else 1.0,
        judged.shape,
    )
    chance = negative_binomial_cdf(observed, judged, size)
    # A drop must also be large, however significant. A drop to nothing stays one (no_data
    # raises its own, critical alert), so a silence does not make this alert flap.
    active = (observed < rule.below * judged) & (chance < volume_alpha(config)) & ~held
    # The seasonal expectation only: the API and the status page show none in the first week.
    per_minute = np.where(seasonal, expected / minutes, np.nan)
    # A first-week drop that lasts soon becomes the traffic before the window, and the
    # condition above clears while the gateway is still down. A firing alert holds while
    # the window stays below ``below`` times the traffic before the drop began. (Opening
    # alerts on that reference too made them fire two or three times within one drop at
    # 10-20 a minute, and alert on quarter hours swinging 16%.)
    holding = np.zeros(observed.shape, dtype=bool)
    before_drop = np.full(observed.shape, np.nan)
    if not seasonal.all():
        before_drop = (
            rate_before_drop(
                windows.volume, stop, minutes_of(rule.history), minutes, rule.below, first
            )
            * minutes
        )
        # Only "still below half": the drop was proven when the alert fired, and a count a
        # fifth of the usual need not keep clearing the per-tick significance level.
        holding = ~seasonal & (observed < rule.below * before_drop * visible)
        before_drop = np.where(seasonal, np.nan, before_drop)
    return Drops(
        active=active,
        observed=observed,
        expected=expected,
        simple=simple,
        seasonal=seasonal,
        chance=chance,
        per_minute=per_minute,
        holding=holding,
        before_drop=before_drop,
        visible=visible,
    )


class VolumeDrop:
    """The ``volume_drop`` rule."""

    name = "volume_drop"

    def evaluate(self, window: CountWindow, context: RuleContext) -> RuleResult:
        config, history = context.config, context.history
        minutes = minutes_of(config.detection.volume_drop.window)
        lateness, nowcast = context.volume_late(), context.nowcast
        # Rows that trickle in are judged up to the newest minute, nowcast; others on the
        # minutes whose rows have all arrived (and, on a first start, not the held ones).
        earlier = volume_lateness(lateness, nowcast)
        figures = context.figures(
            window, self.name, history, lambda w: drops(w, config, history, nowcast), earlier
        )
        observed, expected, simple = figures.observed, figures.expected, figures.simple
        seasonal, chance, active = figures.seasonal, figures.chance, figures.active
        before_drop, visible = figures.before_drop, figures.visible

        def build(i: int) -> Finding:
            end = window.end_minute - (0 if earlier is None else int(earlier[i]))
            judged = expected[i] * visible[i]
            share = observed[i] / judged if judged > 0 else 1.0
            if seasonal[i]:
                basis, notes = f"{expected[i]:.0f} usual for this time of the week", []
            elif not active[i] and before_drop[i] > simple[i]:
                # Held or resolved: against the traffic before the drop, not the drop itself.
                judged = before_drop[i] * visible[i]
                share = observed[i] / judged
                rate = _per_minute(before_drop[i] / minutes)
                basis, notes = f"{rate}/min before the drop", ["less than a week of history"]
            else:
                rate = _per_minute(simple[i] / minutes)
                basis, notes = f"{rate}/min before it", ["less than a week of history"]
            if visible[i] < 1:
                # Nowcast: against the share of those rows expected to have arrived by now.
                basis = (
                    f"{judged:.0f} expected to have arrived by now ({visible[i]:.0%} of the "
                    f"{basis})"
                )
            if active[i]:
                notes.append(p_value_clause(float(chance[i])))
            summary = (
                f"{window.gateways[i]}: {int(observed[i])} {context.noun} in the last "
                f"{minutes} min, "
                f"{share:.0%} of the {basis}"
                + (f" ({', '.join(notes)})" if notes else "")
                + late_note(lateness, i, end, nowcast)
            )
            return Finding(
                "volume_drop",
                window.gateways[i],
                "warning",
                summary,
                minute_start(end - minutes),
                Evidence(
                    payments=int(observed[i]),
                    window_minutes=minutes,
                    p_value=float(chance[i]),
                    expected_payments=float(judged),
                    magnitude=float(share),
                ),
            )

        return RuleResult(
            self.name,
            window.gateways,
            active,
            build,
            expected_per_minute=figures.per_minute,
            holding=figures.holding,
        )
