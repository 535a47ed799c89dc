"""The windows the rules compute on: one tick's (live) or an hour of ticks' (a replay).

A rule computes its figures for every tick of a :class:`Windows` at once, with the same
numpy operations whether there is one tick or sixty, so each tick's numbers are the same
bit for bit either way; :meth:`TickFigures.row` then takes one tick's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Self

import numpy as np
import numpy.typing as npt

from detector.rules.verdict import BoolArray
from detector.window import CountWindow

__all__ = ["TickFigures", "Windows"]


@dataclass(frozen=True)
class Windows:
    """The windows of one or more ticks over the same rows: tick ``t``'s window is the
    ``minutes`` columns before column ``ends[t]`` of the count matrices.

    A live tick has one (its window); a replay the 60 of an hour, whose counts it knows.
    The rules compute their verdicts for every tick at once, with the same operations
    either way, so each tick's numbers are the same bit for bit.
    """

    gateways: list[str]
    payments: npt.NDArray[np.int64]  # (rows, columns)
    failures: npt.NDArray[np.int64]
    volume: npt.NDArray[np.int64]
    declines: npt.NDArray[np.int64]  # part of the payments
    ends: npt.NDArray[np.int64]  # (ticks,), ascending
    minutes: int
    end_minute: int  # epoch minute after the last column

    @classmethod
    def of(cls, window: CountWindow) -> Windows:
        one = np.array([window.minutes])
        return cls(
            window.gateways,
            window.payments,
            window.failures,
            window.volume,
            window.declines,
            one,
            window.minutes,
            window.end_minute,
        )

    @property
    def end_minutes(self) -> npt.NDArray[np.int64]:
        """Epoch minute after each tick's window."""
        ends: npt.NDArray[np.int64] = self.end_minute - self.payments.shape[1] + self.ends
        return ends

    def recent(self, counts: npt.NDArray[np.int64], minutes: int) -> npt.NDArray[np.int64]:
        """(ticks, rows): each tick's sum of ``counts`` over the last ``minutes`` of its window."""
        minutes = min(minutes, self.minutes)
        if self.ends.size == 1:  # a live tick: a plain sum (integers: the same either way)
            stop = int(self.ends[0])
            return np.asarray(counts[:, stop - minutes : stop].sum(axis=1)[None, :], dtype=np.int64)
        first = int(self.ends[0]) - minutes  # only the columns some tick sums (ends ascend)
        part = counts[:, first : int(self.ends[-1])]
        total = np.zeros((counts.shape[0], part.shape[1] + 1), dtype=np.int64)
        np.cumsum(part, axis=1, out=total[:, 1:])
        end = self.ends - first
        return np.asarray((total[:, end] - total[:, end - minutes]).T, dtype=np.int64)

    def newest_first(self, counts: npt.NDArray[np.int64], minutes: int) -> npt.NDArray[np.int64]:
        """(ticks, rows, minutes): each tick's last ``minutes`` of ``counts``, newest first."""
        minutes = min(minutes, self.minutes)
        if self.ends.size == 1:  # a live tick: a view of its last minutes
            end = int(self.ends[0])
            return counts[None, :, end - 1 : (end - minutes - 1 if end > minutes else None) : -1]
        columns = self.ends[:, None] - 1 - np.arange(minutes)[None, :]
        return counts[:, columns].transpose(1, 0, 2)


@dataclass(frozen=True)
class TickFigures:
    """A rule's figures for every tick of some :class:`Windows`: arrays whose first axis is
    the tick and whose second is the row (a gateway or a series). Each rule's figures are a
    subclass naming its own arrays."""

    active: BoolArray  # where the rule's condition holds

    def row(self, tick: int) -> Self:
        """The figures of tick ``tick`` alone (arrays whose first axis is the row)."""
        return replace(self, **{f.name: getattr(self, f.name)[tick] for f in fields(self)})
