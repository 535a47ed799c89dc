"""Rolling per-gateway, per-minute count buffers (numpy), fed by the source, read by the rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from detector.model import Counts
from detector.stats.sliding import SlidingColumns

__all__ = ["CountWindow", "shift_out"]

IntArray = npt.NDArray[np.int64]
# Payments, failures, volume and declines.
_COUNTS = 4
# Up to this many rows, a read's gateways are looked up one by one.
_FEW_ROWS = 64
# Spare minute columns: the window's counts are copied back to the start of their buffer
# once an hour of ticks instead of every tick (a sixth more memory at the default 6 hours).
_SPARE_MINUTES = 60


def shift_out(matrices: Iterable[npt.NDArray[Any]], shift: int) -> None:
    """Drop the ``shift`` oldest columns of each matrix in place, zeroing the newest ones.

    >>> m = np.array([[1, 2, 3]])
    >>> shift_out([m], 2); m.tolist()
    [[3, 0, 0]]
    """
    for matrix in matrices:
        if shift >= matrix.shape[1]:
            matrix[:] = 0
        else:
            matrix[:, :-shift] = matrix[:, shift:]
            matrix[:, -shift:] = 0


class CountWindow:
    """The last ``minutes`` minute buckets of every gateway, newest last.

    Column ``j`` of each matrix is the minute ``end_minute - minutes + j``. Re-reading a
    range replaces its buckets, so late rows and payments leaving "pending" are counted
    once and exactly.

    >>> import numpy as np
    >>> from detector.source import Counts
    >>> window = CountWindow(minutes=3, gateways=["stripe"])
    >>> window.advance(100)
    >>> one = np.array([1]); window.replace(98, 100, Counts(np.array(["stripe"], dtype=object),
    ...     np.array([99]), one * 10, one * 2, one * 10))
    >>> window.payments.tolist(), window.failures.tolist()
    ([[0, 0, 10]], [[0, 0, 2]])
    """

    def __init__(self, minutes: int, gateways: Iterable[str] = ()):
        if minutes < 1:
            raise ValueError("a window must hold at least one minute")
        self.minutes = minutes
        self.gateways: list[str] = []
        self._index: dict[str, int] = {}
        self.end_minute = 0
        self._store(np.zeros((_COUNTS, 0, minutes), dtype=np.int64))
        self._add(gateways)

    def _store(self, buckets: npt.NDArray[np.int64], spare: int = _SPARE_MINUTES) -> None:
        self._sliding = SlidingColumns.holding(buckets, spare)
        self._views()

    def _views(self) -> None:
        # One array holds the counts, so a tick moves and rewrites them in one go;
        # the names are views of it, replaced when it moves.
        buckets = self._sliding.columns
        self._buckets = buckets
        self.payments: IntArray = buckets[0]
        self.failures: IntArray = buckets[1]  # declines excluded
        self.volume: IntArray = buckets[2]
        self.declines: IntArray = buckets[3]  # part of payments

    def _add(self, gateways: Iterable[str]) -> None:
        new = [g for g in dict.fromkeys(gateways) if g not in self._index]
        if not new:
            return
        for gateway in new:
            self._index[gateway] = len(self.gateways)
            self.gateways.append(gateway)
        grow = np.zeros((_COUNTS, len(new), self.minutes), dtype=np.int64)
        self._store(np.concatenate([self._buckets, grow], axis=1))

    def advance(self, end_minute: int) -> None:
        """Move the newest bucket to ``end_minute - 1``, dropping the oldest."""
        shift = end_minute - self.end_minute
        if shift <= 0:
            return
        self._sliding.slide(shift)
        self._views()
        self.end_minute = end_minute

    def _rows_of(self, gateways: npt.NDArray[np.object_]) -> IntArray:
        """The row of each of ``gateways``, adding those the window lacks (in the order
        they first appear)."""
        if gateways.size <= _FEW_ROWS:  # a live tick's read: a dict is quicker than hashing
            self._add(gateways.tolist())
            return np.array([self._index[g] for g in gateways.tolist()], dtype=np.int64)
        codes, names = pd.factorize(gateways)  # names in the order they first appear
        self._add(names.tolist())
        rows: IntArray = np.array([self._index[g] for g in names.tolist()], dtype=np.int64)
        return np.asarray(rows[codes], dtype=np.int64)

    def replace(self, first_minute: int, end_minute: int, counts: Counts) -> None:
        """Set the buckets ``first_minute <= minute < end_minute`` to ``counts``."""
        rows = self._rows_of(counts.gateway)
        start = self.end_minute - self.minutes
        lo = max(first_minute, start) - start
        hi = min(end_minute, self.end_minute) - start
        if hi <= lo:
            return
        self._buckets[:, :, lo:hi] = 0
        column = counts.minute - start
        if not column.size:
            return
        # A tick reads exactly the minutes it replaces: then every row is kept as it is.
        inside = lo <= column.min() and column.max() < hi
        keep = slice(None) if inside else (column >= lo) & (column < hi)
        rows = rows[keep]
        if not rows.size:
            return
        # Buckets are unique per (gateway, minute), so plain assignment is exact.
        self._buckets[:, rows, column[keep]] = (
            counts.payments[keep],
            counts.failures[keep],
            counts.volume[keep],
            counts.declines[keep],
        )

    def copy(self) -> CountWindow:
        """A window of the same gateways and minutes whose counts are a copy of these."""
        twin = CountWindow(self.minutes)
        twin.gateways, twin._index, twin.end_minute = self.gateways, self._index, self.end_minute
        twin._store(self._buckets, spare=0)
        return twin

    def matches(self, other: CountWindow, offset: int) -> bool:
        """Whether ``other``, from its column ``offset`` on, holds this window's counts (its
        gateways first, in the same order; it may have more)."""
        rows = len(self.gateways)
        part = other._buckets[:, :rows, offset : offset + self.minutes]
        return (
            other.gateways[:rows] == self.gateways
            and part.shape == self._buckets.shape
            and bool((part == self._buckets).all())
        )

    def row(self, gateway: str) -> int | None:
        """The row of ``gateway`` (or series key); None if it has had no payments."""
        return self._index.get(gateway)

    def recent(self, minutes: int, offset: int = 0) -> slice:
        """Columns of the ``minutes`` buckets that end ``offset`` minutes before the newest."""
        stop = self.minutes - offset
        return slice(max(stop - minutes, 0), stop)
