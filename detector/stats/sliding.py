"""Arrays whose last axis is a window of columns moving on by whole columns, cheaply."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["SlidingColumns"]

IntArray = npt.NDArray[np.int64]


class SlidingColumns:
    """``columns``: the newest ``width`` columns of an array, oldest first.

    Spare columns after the window take the new ones, so a move by ``shift`` columns
    copies the window back to the start of the buffer once every ``spare`` columns rather
    than on every move: a tick costs its new columns, not the whole window. Columns that
    enter hold ``fill``.

    >>> s = SlidingColumns.holding(np.array([[1, 2, 3]]), spare=2)
    >>> s.slide(1); s.columns.tolist()
    [[2, 3, 0]]
    >>> s.slide(2); s.columns.tolist()
    [[0, 0, 0]]
    """

    def __init__(self, buffer: IntArray, width: int, fill: int = 0):
        # Invariant: the buffer's columns after the window hold ``fill``.
        self.width = width
        self._buffer = buffer
        self._start = 0
        self._fill = fill

    @classmethod
    def holding(cls, columns: IntArray, spare: int, fill: int = 0) -> SlidingColumns:
        """A copy of ``columns`` with ``spare`` columns to move into."""
        buffer = np.full((*columns.shape[:-1], columns.shape[-1] + spare), fill, dtype=np.int64)
        buffer[..., : columns.shape[-1]] = columns
        return cls(buffer, columns.shape[-1], fill)

    @property
    def columns(self) -> IntArray:
        """The window: a view of the buffer (replaced by another view when it moves)."""
        view: IntArray = self._buffer[..., self._start : self._start + self.width]
        return view

    @property
    def spare(self) -> int:
        return int(self._buffer.shape[-1]) - self.width

    def slide(self, shift: int) -> None:
        """Drop the ``shift`` oldest columns and append as many holding ``fill``."""
        if shift <= 0:
            return
        if shift >= self.width:
            self._buffer[...] = self._fill
            self._start = 0
        elif self._start + self.width + shift <= self._buffer.shape[-1]:
            self._start += shift
        else:
            keep = self.width - shift
            first = self._start + shift
            self._buffer[..., :keep] = self._buffer[..., first : first + keep]
            self._buffer[..., keep:] = self._fill
            self._start = 0
