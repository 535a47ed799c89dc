"""``no_data``: a gateway gone silent, when no payment at all in the last ``silence``
minutes is too unlikely for the traffic expected (seasonal with a week of history, else
from the traffic before the silence began). Where a gateway's rows trickle in late, the
newest minutes count with the share of their rows expected to be visible by now
(:class:`~detector.rules.completeness.Nowcast`); where they land in batches, the silence is
judged on the minutes whose rows have all arrived."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.config import Config
from detector.model import Evidence
from detector.rules.base import RuleContext, minutes_of
from detector.rules.completeness import Nowcast, nowcast_size, volume_lateness
from detector.rules.seasonal import VolumeHistory
from detector.rules.ticks import TickFigures, Windows
from detector.rules.verdict import BoolArray, Finding, RuleResult
from detector.rules.volume import rate_before, volume_alpha
from detector.stats.binomial import poisson_zero_probability
from detector.stats.seasonal import negative_binomial_cdf
from detector.timeutil import minute_start
from detector.window import CountWindow

__all__ = ["NoData", "Silences", "silences"]


@dataclass(frozen=True)
class Silences(TickFigures):
    """Per tick and gateway: the no_data rule's figures."""

    recent: npt.NDArray[np.int64]  # payments in the last ``silence`` minutes
    silent_for: npt.NDArray[np.int64]  # minutes since the last payment (the window if none)
    expected: npt.NDArray[np.float64]  # payments expected to be visible by now
    chance: npt.NDArray[np.float64]  # of no payment at all
    seasonal: BoolArray  # the expectation is the seasonal one


# The negative-binomial size of a Poisson count (no seasonal noise): the nowcast's own
# variance is added to it.
_POISSON_SIZE = 1e9


def silences(
    windows: Windows,
    config: Config,
    history: VolumeHistory | None,
    nowcast: Nowcast | None = None,
) -> Silences:
    rule = config.detection.no_data
    silence, hours = minutes_of(rule.silence), minutes_of(rule.history)
    recent = windows.recent(windows.volume, silence)
    # Without a week of history: the traffic before the silence began (not before the last
    # few minutes, or a long silence would lower its own expectation and resolve while the
    # gateway is still dead), and the lower of the long and the latest rate, so traffic
    # falling into the night does not look like a silent gateway.
    columns = np.arange(windows.volume.shape[1])
    last_seen = np.maximum.accumulate(np.where(windows.volume > 0, columns, -1), axis=1)
    last_seen = last_seen[:, windows.ends - 1].T
    first = (windows.ends - windows.minutes)[:, None]  # each tick's first column
    end = windows.ends[:, None]
    silent_for = np.where(last_seen >= first, end - 1 - last_seen, windows.minutes)
    stop = end - np.maximum(silent_for, silence)
    simple = rate_before(windows.volume, stop, hours, silence, first) * silence
    chance = poisson_zero_probability(simple)
    seasonal = np.zeros(recent.shape, dtype=bool)
    size = np.full(recent.shape, _POISSON_SIZE)
    if history is not None:
        season = history.span_expectation(windows.gateways, windows.end_minutes, silence)
        seasonal = np.isfinite(season.expected)
        expected = np.where(seasonal, season.expected, simple)
        size = np.where(seasonal, season.size, size)
        chance = np.where(seasonal, negative_binomial_cdf(0, expected, season.size), chance)
    else:
        expected = simple
    if nowcast is not None and nowcast.smooth.any():
        expected, size = nowcast_size(expected, size, nowcast, silence)
        chance = np.where(nowcast.smooth, negative_binomial_cdf(0, expected, size), chance)
    active = (recent == 0) & (chance < volume_alpha(config))
    return Silences(
        active=active,
        recent=recent,
        silent_for=silent_for,
        expected=expected,
        chance=chance,
        seasonal=seasonal,
    )


class NoData:
    """The ``no_data`` rule."""

    name = "no_data"

    def evaluate(self, window: CountWindow, context: RuleContext) -> RuleResult:
        config, history = context.config, context.history
        rule = config.detection.no_data
        silence, hours = minutes_of(rule.silence), minutes_of(rule.history)
        # Judged on the minutes whose rows have arrived (a batch not yet written is no
        # silence), or, where they trickle in, on the newest minutes nowcast.
        nowcast = context.nowcast
        figures = context.figures(
            window,
            self.name,
            history,
            lambda w: silences(w, config, history, nowcast),
            volume_lateness(context.volume_late(), nowcast),
        )
        recent, silent_for, expected = figures.recent, figures.silent_for, figures.expected
        chance, seasonal, active = figures.chance, figures.seasonal, figures.active

        def build(i: int) -> Finding:
            has_volume = window.volume[i] > 0
            # The column after the last one with payments.
            last_seen = window.minutes - int(np.argmax(has_volume[::-1]))
            since_minute = window.end_minute - window.minutes + last_seen
            basis = (
                "for this time of the week"
                if seasonal[i]
                else f"from the previous {hours // 60 or hours}{' h' if hours >= 60 else ' min'} "
                "(less than a week of history)"
            )
            summary = (
                f"{window.gateways[i]} is silent: no {context.noun} for "
                f"{max(int(silent_for[i]), silence)} min where "
                f"{expected[i]:.0f} were expected"
                + (" to have arrived by now" if nowcast is not None and nowcast.smooth[i] else "")
                + f" {basis}"
                if active[i]
                else f"{window.gateways[i]}: {int(recent[i])} {context.noun} in the last "
                f"{silence} min"
            )
            return Finding(
                "no_data",
                window.gateways[i],
                "critical",
                summary,
                minute_start(since_minute)
                if has_volume.any()
                else minute_start(window.end_minute - silence),
                Evidence(
                    payments=int(recent[i]),
                    window_minutes=silence,
                    p_value=float(chance[i]),
                    expected_payments=float(expected[i]),
                ),
            )

        return RuleResult(self.name, window.gateways, active, build)
