"""The last 24 hours per gateway in 5-minute buckets, for the status page's charts.

The count window only spans what the rules need (a few hours), so the service keeps this
coarser ring beside it: filled once from the database at start-up (aggregated there) and
refreshed from the window after every tick. Each bucket also remembers whether an alert
was firing for the gateway, which the charts shade, and a snapshot can say what volume
the seasonal rules expected in each bucket (the band behind the volume chart).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from detector.model import Counts
from detector.rules import VolumeHistory
from detector.window import CountWindow, shift_out

__all__ = ["BAND", "BUCKET_MINUTES", "History", "HistorySnapshot", "band_quantile"]

BUCKET_MINUTES = 5
BAND = (0.05, 0.95)  # the quantiles of the expected volume the charts shade
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class HistorySnapshot:
    """A copy for readers in other threads; column ``j`` starts at ``first_minute + 5 j``."""

    gateways: list[str]
    first_minute: int
    end_minute: int  # exclusive: the newest bucket may be partly filled
    payments: IntArray
    failures: IntArray
    volume: IntArray
    alerting: BoolArray
    seasonal: VolumeHistory | None = None  # the volume rules' history of weeks, if read yet
    # When the counts were read, in epoch minutes with the fraction: the newest minute is
    # complete only up to then. None: every minute before end_minute is complete.
    read_at: float | None = None

    def row(self, gateway: str) -> int | None:
        return self._rows.get(gateway)

    @cached_property
    def _rows(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.gateways)}

    def select(self, gateways: Iterable[str]) -> HistorySnapshot:
        """The rows of these gateways (those in the history), in this order: a page draws
        the charts of the gateways it shows, not of every one."""
        rows = [r for g in gateways if (r := self.row(g)) is not None]
        return replace(
            self,
            gateways=[self.gateways[r] for r in rows],
            payments=self.payments[rows],
            failures=self.failures[rows],
            volume=self.volume[rows],
            alerting=self.alerting[rows],
        )

    def minutes_per_bucket(self) -> npt.NDArray[np.float64]:
        """Minutes each bucket covers so far: the newest may be partly filled, and is NaN
        while it holds less than a minute (a rate over a few seconds is no figure to draw).

        >>> snap = HistorySnapshot([], 0, 11, *np.zeros((3, 0, 3), dtype=np.int64),
        ...                        np.zeros((0, 3), dtype=bool), read_at=10.5)
        >>> snap.minutes_per_bucket().tolist()
        [5.0, 5.0, nan]
        >>> replace(snap, read_at=12.5).minutes_per_bucket().tolist()
        [5.0, 5.0, 2.5]
        """
        minutes = np.full(self.payments.shape[1], float(BUCKET_MINUTES))
        if minutes.size:
            newest_start = self.first_minute + (minutes.size - 1) * BUCKET_MINUTES
            read = self.end_minute if self.read_at is None else self.read_at
            covered = min(BUCKET_MINUTES, read - newest_start)
            minutes[-1] = covered if covered >= 1 else np.nan
        return minutes

    def expected_band(self) -> tuple[FloatArray, FloatArray] | None:
        """Per gateway and bucket, the payments per minute the volume rules expected, as the
        5% and 95% quantiles of a 5-minute bucket's count; NaN where a gateway had less
        than a week of history then. ``None`` until the volume history has been read.

        A bucket's count is negative binomial around its hour's expectation (what
        ``volume_drop`` expected during that hour) with the size the rules fitted.
        """
        if self.seasonal is None:
            return None
        first_hour = self.first_minute // 60
        quantiles = _hourly_band(self.seasonal, tuple(self.gateways), first_hour)
        # Each bucket lies in one hour; an hour past the volume history (its hourly read
        # failed) has no expectation.
        starts = self.first_minute + BUCKET_MINUTES * np.arange(self.payments.shape[1])
        hour = starts // 60 - first_hour
        known = hour < quantiles[0].shape[1]
        column = np.minimum(hour, quantiles[0].shape[1] - 1)
        low, high = (np.where(known, q[:, column], np.nan) for q in quantiles)
        return low, high


def band_quantile(q: float, mean: FloatArray, size: FloatArray) -> FloatArray:
    """The ``q`` quantile of a negative binomial of this mean and size (the parametrisation
    of the volume rules' ``negative_binomial_cdf``: ``var = m + m^2 / r``); NaN where the
    mean is.

    >>> band_quantile(0.95, np.array([10.0, 0.0, np.nan]), np.array(5.0)).tolist()
    [20.0, 0.0, nan]
    """
    m = np.maximum(mean, 0.0)
    return np.asarray(stats.nbinom.ppf(q, size, size / (size + m)), dtype=np.float64)


# The band changes once an hour (with the volume history), not with every snapshot.
_band_cache: list[tuple[VolumeHistory, tuple[str, ...], int, list[FloatArray]]] = []


def _hourly_band(
    seasonal: VolumeHistory, gateways: tuple[str, ...], first_hour: int
) -> list[FloatArray]:
    """Per gateway and hour from ``first_hour``: the band's quantiles in payments a minute."""
    for cached, *key, band in _band_cache:
        if cached is seasonal and key == [gateways, first_hour]:
            return band
    expected, size = seasonal.expected_hours(list(gateways), first_hour)
    mean = expected * (BUCKET_MINUTES / 60)
    band = [band_quantile(q, mean, size[:, None]) / BUCKET_MINUTES for q in BAND]
    _band_cache[:] = [(seasonal, gateways, first_hour, band)]
    return band


class History:
    """``buckets`` 5-minute buckets per gateway ending at the newest complete-or-current one.

    >>> import numpy as np
    >>> from detector.window import CountWindow, shift_out
    >>> window = CountWindow(minutes=10, gateways=["stripe"])
    >>> window.advance(20)
    >>> window.payments[:] = 1
    >>> history = History(buckets=3)
    >>> history.update(window, firing=["stripe"])
    >>> snap = history.snapshot()
    >>> snap.first_minute, snap.payments.tolist(), snap.alerting.tolist()
    (5, [[0, 5, 5]], [[False, False, True]])
    """

    def __init__(self, buckets: int = 24 * 60 // BUCKET_MINUTES):
        self.buckets = buckets
        self.gateways: list[str] = []
        self._index: dict[str, int] = {}  # gateway -> row
        self._last_asked: list[str] = []
        self._last_rows: IntArray = np.zeros(0, dtype=np.int64)
        self.end_bucket = 0  # exclusive: the newest bucket is end_bucket - 1
        self.end_minute = 0
        empty = np.zeros((0, buckets), dtype=np.int64)
        self.payments, self.failures, self.volume = empty, empty.copy(), empty.copy()
        self.alerting = np.zeros((0, buckets), dtype=np.bool_)

    def _rows(self, gateways: list[str]) -> IntArray:
        """Each gateway's row (see ``_lookup``) for a list the window gives every tick.

        The window lists its gateways in the order it first read them, which need not be
        the order of the rows here (the start-up backfill adds them as the database lists
        them): the last answer is kept, so a tick with the same gateways as the one before
        costs one list comparison.
        """
        if gateways == self.gateways:  # the usual case: the same gateways, tick after tick
            return np.arange(len(gateways), dtype=np.int64)
        if gateways != self._last_asked:
            self._last_asked, self._last_rows = list(gateways), self._lookup(gateways)
        return self._last_rows

    def _lookup(self, gateways: list[str]) -> IntArray:
        """Each gateway's row, adding rows for gateways not seen yet."""
        new = [g for g in dict.fromkeys(gateways) if g not in self._index]
        if new:
            self._index.update((g, len(self.gateways) + i) for i, g in enumerate(new))
            self.gateways += new
            grow = np.zeros((len(new), self.buckets), dtype=np.int64)
            self.payments = np.vstack([self.payments, grow])
            self.failures = np.vstack([self.failures, grow])
            self.volume = np.vstack([self.volume, grow])
            self.alerting = np.vstack([self.alerting, grow.astype(np.bool_)])
        return np.fromiter(map(self._index.__getitem__, gateways), np.int64, len(gateways))

    def _advance(self, end_bucket: int) -> None:
        shift = end_bucket - self.end_bucket
        if shift <= 0:
            return
        shift_out((self.payments, self.failures, self.volume, self.alerting), shift)
        self.end_bucket = end_bucket

    def _set(
        self,
        rows: IntArray,
        minutes: IntArray,
        payments: IntArray,
        failures: IntArray,
        volume: IntArray,
    ) -> None:
        """Replace whole buckets with the sum of the given per-minute counts."""
        column = minutes // BUCKET_MINUTES - (self.end_bucket - self.buckets)
        keep = (column >= 0) & (column < self.buckets)
        rows, column = rows[keep], column[keep]
        if rows.size == 0:
            return
        for matrix, values in zip(
            (self.payments, self.failures, self.volume), (payments, failures, volume), strict=True
        ):
            matrix[rows, column] = 0
            np.add.at(matrix, (rows, column), values[keep])

    def backfill(self, counts: Counts, end_minute: int) -> None:
        """Load per-minute counts (e.g. the last 24 h read from the database at start-up)."""
        self._advance(-(-end_minute // BUCKET_MINUTES))
        self.end_minute = max(self.end_minute, end_minute)
        # One lookup per gateway, not per row: the rows are many minutes of each gateway.
        codes, names = pd.factorize(counts.gateway)
        rows = self._lookup(names.tolist())[codes] if codes.size else codes.astype(np.int64)
        self._set(rows, counts.minute, counts.payments, counts.failures, counts.volume)

    def update(self, window: CountWindow, firing: Iterable[str] = ()) -> None:
        """Refresh the buckets the window covers; mark the newest for gateways with alerts."""
        self._advance(-(-window.end_minute // BUCKET_MINUTES))
        self.end_minute = max(self.end_minute, window.end_minute)
        rows = self._rows(window.gateways)
        # Only whole buckets inside the window, so a partly covered old bucket keeps its sum.
        start = window.end_minute - window.minutes
        first = -(-start // BUCKET_MINUTES)
        buckets = -(-(window.end_minute - first * BUCKET_MINUTES) // BUCKET_MINUTES)
        column = first - (self.end_bucket - self.buckets)
        skip = max(-column, 0)  # buckets older than the history
        minutes = slice(first * BUCKET_MINUTES - start + skip * BUCKET_MINUTES, window.minutes)
        pad = (buckets - skip) * BUCKET_MINUTES - (minutes.stop - minutes.start)
        target = (rows[:, None], np.arange(column + skip, column + buckets))
        counted = (
            (self.payments, window.payments),
            (self.failures, window.failures),
            (self.volume, window.volume),
        )
        for matrix, counts in counted if buckets > skip else ():
            # The newest bucket may be partly filled: zero-pad it to whole buckets and sum.
            padded = np.pad(counts[:, minutes], ((0, 0), (0, pad)))
            matrix[target] = padded.reshape(len(rows), buckets - skip, BUCKET_MINUTES).sum(axis=2)
        alerting = self._lookup(list(firing))
        self.alerting[alerting, -1] = True

    def mark_alerting(self, gateway: str, first_minute: int, end_minute: int) -> None:
        """Shade the buckets that overlap ``first_minute <= minute < end_minute``."""
        (row,) = self._lookup([gateway])
        start = self.end_bucket - self.buckets
        lo = max(first_minute // BUCKET_MINUTES - start, 0)
        hi = min(-(-end_minute // BUCKET_MINUTES) - start, self.buckets)
        if lo < hi:
            self.alerting[row, lo:hi] = True

    def snapshot(
        self, seasonal: VolumeHistory | None = None, read_at: datetime | None = None
    ) -> HistorySnapshot:
        """A copy; ``seasonal`` (the engine's volume history of weeks) gives the charts their
        expected band; ``read_at``: when the newest counts were read."""
        return HistorySnapshot(
            list(self.gateways),
            (self.end_bucket - self.buckets) * BUCKET_MINUTES,
            self.end_minute,
            self.payments.copy(),
            self.failures.copy(),
            self.volume.copy(),
            self.alerting.copy(),
            seasonal,
            None if read_at is None else read_at.timestamp() / 60,
        )
