"""The rows a read skipped (a status listed under none of ``source.statuses``, or no
gateway), per minute, so that the look-back's re-reads count each of them once."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["InvalidRows"]

IntArray = npt.NDArray[np.int64]


class InvalidRows:
    """The skipped rows of each minute a later tick may re-read, so that a row is counted
    once however often the look-back re-reads its minute."""

    def __init__(self) -> None:
        self.minutes = np.zeros(0, dtype=np.int64)  # ascending; only minutes with rows
        self.rows = np.zeros(0, dtype=np.int64)

    def observe(self, first_minute: int, end_minute: int, minutes: IntArray, rows: IntArray) -> int:
        """Take a read of ``[first_minute, end_minute)`` whose skipped rows are ``rows`` in
        ``minutes`` (ascending); the rows no earlier read of those minutes had."""
        at = np.searchsorted(self.minutes, minutes)
        known = at < self.minutes.size
        known[known] = self.minutes[at[known]] == minutes[known]
        before = np.zeros_like(rows)
        before[known] = self.rows[at[known]]
        # A read minute replaces what was known of it, as in the window: a row fixed
        # since is forgotten, and a bad row arriving later counts again.
        outside = (self.minutes < first_minute) | (self.minutes >= end_minute)
        self.minutes = np.concatenate([self.minutes[outside], minutes])
        self.rows = np.concatenate([self.rows[outside], rows])
        order = np.argsort(self.minutes, kind="stable")
        self.minutes, self.rows = self.minutes[order], self.rows[order]
        return int(np.maximum(rows - before, 0).sum())

    def forget_before(self, minute: int) -> None:
        """Drop the minutes no read reaches back to any more."""
        keep = self.minutes >= minute
        self.minutes, self.rows = self.minutes[keep], self.rows[keep]
