"""Judging a gateway whose rows arrive late on the minutes known to be complete, or, where
they trickle in, on the newest minutes against the share of their rows arrived by now.

Where a gateway's rows arrive minutes late, its newest minutes are not complete yet: a
rule judges the window that ends that many minutes before the newest instead, with the
same figures it computes on any window (see :class:`~detector.rules.ticks.Windows`). The
volume rules judge a gateway whose rows trickle in on its newest minutes, against the
expectation scaled by their :class:`Nowcast` completeness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from detector.rules.ticks import TickFigures, Windows
from detector.timeutil import minute_start
from detector.window import CountWindow

__all__ = [
    "Nowcast",
    "complete_minutes",
    "judged_earlier",
    "late_note",
    "nowcast_size",
    "trailing_empty",
    "volume_lateness",
]

Figures = TypeVar("Figures", bound=TickFigures)
FloatArray = npt.NDArray[np.float64]

# The share of a window's rows still to arrive may be off by this much of itself beyond the
# sampling error of the curve (the lateness drifting within the hours it is learnt over).
MODEL_ERROR = 0.1


@dataclass(frozen=True)
class Nowcast:
    """Per row (gateway): how much of a minute's rows is visible by its age, learnt from the
    re-reads (:class:`~detector.arrival.Arrival`), for the volume rules.

    ``shares[i, a]`` is the share of a minute's final rows visible at age ``a`` (0 for the
    newest minute; 1 where all have arrived); ``smooth[i]`` whether row ``i``'s rows trickle
    in, so that its newest minutes are judged against those shares (else the rules judge
    complete minutes only); ``dispersion[i]`` how far a minute's visible count spreads
    around its binomial expectation (1 when rows arrive independently); ``error[i, a]`` the
    relative variance of ``shares[i, a]`` as learnt.
    """

    shares: FloatArray
    smooth: npt.NDArray[np.bool_]
    dispersion: FloatArray
    error: FloatArray

    def visible(self, minutes: int) -> FloatArray:
        """Per row: the share of the rows of its newest ``minutes`` minutes visible now
        (1 where it is not nowcast).

        >>> nowcast = Nowcast(np.array([[0.5, 1.0, 1.0]]), np.array([True]),
        ...                   np.ones(1), np.zeros((1, 3)))
        >>> nowcast.visible(2).tolist(), nowcast.visible(5).tolist()
        ([0.75], [0.9])
        """
        visible: FloatArray = np.where(self.smooth, self._mean(self.shares, minutes), 1.0)
        return visible

    def _mean(self, values: FloatArray, minutes: int) -> FloatArray:
        """Per row: the mean of ``values`` over ages 0 .. ``minutes - 1`` (the ages beyond the
        curve's hold its last value)."""
        ages = values.shape[1]
        mean: FloatArray = values[:, : min(minutes, ages)].sum(axis=1)
        mean += values[:, -1] * max(minutes - ages, 0)
        return mean / minutes

    def variance(self, minutes: int) -> tuple[FloatArray, FloatArray]:
        """Per row, for a window of the newest ``minutes``: the variance its visible count
        adds over the binomial thinning of its final count, per row expected (the rows
        arriving in lumps), and relative to the visible count's square (the curve's
        uncertainty); 0 where it is not nowcast."""
        shares = self.shares
        lumps = (self.dispersion - 1) * self._mean(shares * (1 - shares), minutes)
        missing = 1 - self._mean(shares, minutes)
        relative = self._mean(self.error, minutes) + (MODEL_ERROR * missing) ** 2
        return np.where(self.smooth, lumps, 0.0), np.where(self.smooth, relative, 0.0)


def nowcast_size(
    expected: FloatArray, size: npt.ArrayLike, nowcast: Nowcast | None, minutes: int
) -> tuple[FloatArray, FloatArray]:
    """The mean and negative-binomial size of the payments visible by now in a window of
    the newest ``minutes``, for a final count of mean ``expected`` (ticks, rows) and size
    ``size``: the mean scaled by the share visible, the size lowered so that the variance
    holds what the nowcast adds (rows arriving in lumps, the curve's uncertainty), so that
    rows still to arrive cannot look like a drop. Unchanged where a row is not nowcast.

    >>> nowcast = Nowcast(np.array([[0.5, 1.0]]), np.array([True]), np.array([3.0]),
    ...                   np.zeros((1, 2)))
    >>> mean, size = nowcast_size(np.array([[100.0]]), 20.0, nowcast, 2)
    >>> mean.tolist(), size.round(1).tolist()
    ([[75.0]], [[18.2]])
    """
    size = np.broadcast_to(np.asarray(size, dtype=np.float64), expected.shape)
    if nowcast is None or not nowcast.smooth.any():
        return expected, size
    mean = expected * nowcast.visible(minutes)
    per_row, relative = nowcast.variance(minutes)
    # Variance beyond the mean: NB's mean^2 / size, plus what the nowcast adds.
    beyond = mean**2 / size + per_row * expected + relative * mean**2
    lowered = np.where(beyond > 0, mean**2 / np.maximum(beyond, 1e-12), size)
    return mean, np.where(nowcast.smooth, np.minimum(lowered, size), size)


def volume_lateness(
    lateness: npt.NDArray[np.int64] | None, nowcast: Nowcast | None
) -> npt.NDArray[np.int64] | None:
    """Per row, how many of the newest minutes the volume rules leave out: none where the
    row is nowcast, else as many as its rows arrive minutes late."""
    if lateness is None or nowcast is None:
        return lateness
    return np.where(nowcast.smooth, 0, lateness)


def judged_earlier(
    windows: Windows, earlier: npt.NDArray[np.int64], compute: Callable[[Windows], Figures]
) -> Figures:
    """``compute``'s figures where row ``i`` is judged on the windows ending ``earlier[i]``
    minutes before each tick's (its window that much shorter, so it starts where it did).

    >>> from detector.rules.outage import outages
    >>> from detector.config import Config
    >>> counts = np.array([[9, 9, 0, 0, 0, 0, 0, 0]])  # all failed, 6 empty minutes since
    >>> windows = Windows(["a"], counts, counts, counts, 0 * counts, np.array([8]), 8, 100)
    >>> [judged_earlier(windows, np.array([s]), lambda w: outages(w, Config())).active.item()
    ...  for s in (0, 6)]
    [False, True]
    """
    earlier = np.minimum(earlier, windows.minutes - 1)
    # A window of no rows (a replica whose partitions hold no gateway yet) has no shift.
    shifts = np.unique(earlier) if earlier.size else np.zeros(1, dtype=np.int64)
    figures = [
        compute(replace(windows, ends=windows.ends - s, minutes=windows.minutes - int(s)))
        for s in shifts
    ]
    if len(figures) == 1:
        return figures[0]
    first = figures[0]
    combined = {}
    for field in fields(first):
        values = np.array(getattr(first, field.name), copy=True)
        for shift, other in zip(shifts[1:], figures[1:], strict=True):
            rows = earlier == shift
            values[:, rows] = getattr(other, field.name)[:, rows]
        combined[field.name] = values
    return replace(first, **combined)


def complete_minutes(window: CountWindow, lateness: npt.NDArray[np.int64] | None) -> CountWindow:
    """The window with each row's newest ``lateness[i]`` minutes emptied of payments, for a
    rule that judges a failure rate on complete minutes only: a minute still missing its
    late rows has a rate they would change (the window itself where none arrive late).

    >>> window = CountWindow(3, ["a"]); window.advance(10); window.payments[:] = 5
    >>> complete_minutes(window, np.array([2])).payments.tolist()
    [[5, 0, 0]]
    """
    if lateness is None or not lateness.any():
        return window
    newest = min(int(lateness.max()), window.minutes)
    age = np.arange(newest)[::-1]  # of each of the newest columns
    late = age[None, :] < lateness[:, None]
    complete = window.copy()
    for counts in (complete.payments, complete.failures, complete.declines):
        counts[:, window.minutes - newest :][late] = 0
    return complete


def trailing_empty(
    counts: npt.NDArray[np.int64], most: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Per row, how many of its newest columns hold nothing, at most ``most`` of them.

    >>> counts = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1]])
    >>> trailing_empty(counts, np.array([5, 2, 5])).tolist()
    [2, 2, 0]
    """
    newest = counts[:, counts.shape[1] - min(int(most.max(initial=0)), counts.shape[1]) :]
    empty = np.cumprod(newest[:, ::-1] == 0, axis=1).sum(axis=1)
    found: npt.NDArray[np.int64] = np.minimum(empty, most).astype(np.int64)
    return found


def late_note(
    lateness: npt.NDArray[np.int64] | None,
    row: int,
    judged_end: int,
    nowcast: Nowcast | None = None,
) -> str:
    """What a message adds where the row's rows arrive late: how late, and up to which
    minute it was judged, and how where its newest minutes are nowcast ("" where they
    arrive on time).

    >>> late_note(np.array([0, 10]), 1, 29_000_000)
    ' (rows arrive up to 10 min late; judged up to 21:20 UTC)'
    """
    if lateness is None or not lateness[row]:
        return ""
    until = minute_start(judged_end).strftime("%H:%M")
    how = (
        ", each minute against the share of its rows arrived by its age"
        if nowcast is not None and nowcast.smooth[row]
        else ""
    )
    return f" (rows arrive up to {int(lateness[row])} min late; judged up to {until} UTC{how})"
