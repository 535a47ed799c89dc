"""Judging a gateway whose rows arrive late on the minutes known to be complete.

Where a gateway's rows arrive minutes late, its newest minutes are not complete yet: a
rule judges the window that ends that many minutes before the newest instead, with the
same figures it computes on any window (see :class:`~detector.rules.ticks.Windows`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from detector.rules.ticks import TickFigures, Windows
from detector.timeutil import minute_start
from detector.window import CountWindow

__all__ = ["complete_minutes", "judged_earlier", "late_note", "trailing_empty"]

Figures = TypeVar("Figures", bound=TickFigures)


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
    shifts = np.unique(earlier)
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


def late_note(lateness: npt.NDArray[np.int64] | None, row: int, judged_end: int) -> str:
    """What a message adds where the row's rows arrive late: how late, and up to which
    minute it was judged ("" where they arrive on time).

    >>> late_note(np.array([0, 10]), 1, 29_000_000)
    ' (rows arrive up to 10 min late; judged up to 21:20 UTC)'
    """
    if lateness is None or not lateness[row]:
        return ""
    until = minute_start(judged_end).strftime("%H:%M")
    return f" (rows arrive up to {int(lateness[row])} min late; judged up to {until} UTC)"
