"""Binomial CUSUM bank on per-minute counts, computed statelessly from a window (no I/O).

Each series (row) is tested against its baseline ``p0`` by several CUSUMs, one per
post-change rate ``p1`` (the bank). Minute ``t`` with ``k`` failures out of ``n`` payments
adds the log-likelihood ratio ``k ln(p1/p0) + (n - k) ln((1 - p1)/(1 - p0))``, divided by
the minute's dispersion factor ``phi = 1 + (n - 1) rho`` (quasi-likelihood for
beta-binomial, i.e. bursty, failures).

The statistic at a tick is a function of the window's counts alone: the CUSUM started at
the window's first minute, ``S_t = C_t - min_{j <= t} C_j`` on the cumulative sum ``C``,
capped at ``threshold + recovery`` so that once the failures stop, the alert clears after
``recovery`` nats of evidence instead of after the whole excess is paid back. A series may
be restarted at a later column (``first``: where its alert last resolved), so that evidence
an alert already reported is never counted again. Nothing but the counts (and those
columns) is needed, so a restarted daemon and a backtest compute the same numbers.

Increments are counted in whole units of ``2**-24`` nats (fixed point). Integer sums are
exact in any order, so the statistic of a window is the same number bit for bit whether it
is computed for that window alone (a live tick) or among the windows of a whole hour at
once (a backtest, see ``ends``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.stats.sliding import SlidingColumns

__all__ = [
    "CusumBank",
    "LiveIncrements",
    "cusum_bank",
    "dispersion_factor",
    "excursions_reaching",
    "log_likelihood_weights",
    "member_weights",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# One unit of the fixed-point statistic, in nats: far below anything a threshold resolves.
UNIT = 2.0**-24
# A minute's evidence is clipped to +-2**20 nats, and so is a ceiling: a statistic capped
# at or below the clip cannot tell the difference, and a year of minutes sums within int64.
_CLIP_NATS = 2.0**20
_NO_CAP = 2**62  # the ceiling of unused members: the increments can never reach it


def log_likelihood_weights(p0: npt.ArrayLike, p1: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Per-failure and per-success log-likelihood ratios ``ln(p1/p0)`` and ``ln((1-p1)/(1-p0))``.

    >>> a, b = log_likelihood_weights(0.02, 0.04)
    >>> round(float(a), 4), round(float(b), 4)
    (0.6931, -0.0206)
    """
    q0 = np.asarray(p0, dtype=np.float64)
    q1 = np.asarray(p1, dtype=np.float64)
    return np.log(q1 / q0), np.log1p(-q1) - np.log1p(-q0)


def dispersion_factor(payments: npt.ArrayLike, rho: npt.ArrayLike) -> FloatArray:
    """Variance inflation ``1 + (n - 1) rho`` of a beta-binomial minute of ``n`` payments.

    >>> float(dispersion_factor(201, 0.005))
    2.0
    """
    n = np.asarray(payments, dtype=np.float64)
    return np.asarray(1.0 + np.maximum(n - 1.0, 0.0) * np.asarray(rho, dtype=np.float64))


class CusumBank:
    """The bank's statistics for each (series, member) at the newest minute of some windows.

    By default there is one window, all the columns given. With ``window`` and ``ends``,
    there is one window of ``window`` minutes ending before each column in ``ends`` (the
    windows of consecutive ticks, computed together). ``statistics[j]`` is computed for every
    series at once; the start of the current excursion (the change-point estimate) only for
    the series a message is written about. ``first`` (series,): the first column each
    series counts; the minutes before it add nothing (every window restarts there).
    """

    def __init__(
        self,
        failures: npt.NDArray[np.int64],
        payments: npt.NDArray[np.int64],
        rho: FloatArray,
        weights: tuple[FloatArray, FloatArray],
        cap: FloatArray,
        window: int | None = None,
        ends: Sequence[int] | IntArray | None = None,
        first: IntArray | None = None,
        increments: IntArray | None = None,
    ):
        columns = failures.shape[1]
        self.window = columns if window is None else window
        self.ends = np.array([columns] if ends is None else ends, dtype=np.int64)
        if increments is None:
            increments = _fixed_increments(failures, payments, rho, weights)
        elif first is not None and first.max(initial=0) > 0:
            increments = increments.copy()  # the caller's are kept for the next tick
        if first is not None and first.max(initial=0) > 0:
            before = np.arange(columns)[None, :] < first[:, None]
            increments[np.broadcast_to(before[:, None, :], increments.shape)] = 0
        self._increments = increments
        ceiling = np.floor(np.minimum(cap, _CLIP_NATS) / UNIT)
        self._cap = np.where(np.isfinite(cap), ceiling, _NO_CAP).astype(np.int64)
        # C[s, m, t]: the cumulative sum from a leading 0. Without its ceiling, the window's
        # statistic is C at its end minus the least C within it.
        total = np.zeros((*increments.shape[:2], columns + 1), dtype=np.int64)
        np.cumsum(increments, axis=2, out=total[:, :, 1:])
        lowest = np.minimum.accumulate(total, axis=2)
        if self.ends.max() <= self.window:  # every window starts at the first column
            floor = lowest[:, :, self.ends]
        else:
            floor = _window_minima(total, self.window, self.ends)
        fixed = np.moveaxis(total[:, :, self.ends] - floor, 2, 0)
        # The ceiling only matters where the statistic ever rose that far: rare, in incidents.
        # A window starting later than the first column never stands higher than the
        # statistic started there, so one test on that path clears every window.
        self._capped = (total - lowest).max(axis=2) > self._cap
        for s, m in zip(*np.nonzero(self._capped), strict=True):
            # Leading zeros leave a CUSUM at 0: windows cut short by the first column are
            # padded to full length, and every window is one row of a single scan.
            padded = np.concatenate([np.zeros(self.window, np.int64), self._increments[s, m]])
            rows = np.lib.stride_tricks.sliding_window_view(padded, self.window)[self.ends]
            fixed[:, s, m] = _clamped_scan(rows, np.full(len(rows), self._cap[s, m]))[:, -1]
        self.statistics: FloatArray = fixed * UNIT  # (ends, series, members)

    @property
    def statistic(self) -> FloatArray:
        """(series, members): the statistic of the last window."""
        last: FloatArray = self.statistics[-1]
        return last

    def _path(self, j: int, s: int, m: int) -> IntArray:
        """The whole fixed-point statistic path of one window, series and member."""
        end = int(self.ends[j])
        increments = self._increments[s, m, max(end - self.window, 0) : end]
        path: IntArray = _clamped_scan(increments[None, :], self._cap[s, m][None])[0]
        return path

    def start(self, series: int, member: int, end: int = -1) -> int:
        """First column of the window's current excursion: after the last minute at 0."""
        at_zero = np.flatnonzero(self._path(end % self.ends.size, series, member) <= 0)
        return int(at_zero[-1]) + 1 if at_zero.size else 0


class LiveIncrements:
    """A live window's fixed-point increments, kept from tick to tick.

    Each minute's increments are a function of its counts (and the hour's weights) alone,
    so a tick computes only those of the minutes whose counts changed, the new minutes and
    the re-read ones, and gets the same numbers as the whole window computed afresh. The
    columns move on with spare columns (:class:`SlidingColumns`), so a tick costs its new
    minutes, not a copy of the window.
    """

    # Counts of a column that has not been computed: no count is negative.
    _UNKNOWN = -1

    def __init__(self, spare: int = 60) -> None:
        self._spare = spare
        self._key: tuple[object, ...] = (None, None, None)
        self._end = 0
        self._counts: SlidingColumns | None = None  # (2, series, minutes): failures, payments
        self._increments: SlidingColumns | None = None  # (series, members, minutes)

    def of(
        self,
        failures: npt.NDArray[np.int64],
        payments: npt.NDArray[np.int64],
        rho: FloatArray,
        weights: tuple[FloatArray, FloatArray],
        end: int,
    ) -> IntArray:
        """(series, members, minutes): the increments of the counts of the window that ends
        before the epoch minute ``end``. Not to be changed by the caller."""
        # The weights and dispersion are the same objects for an hour (``Thresholds``).
        key = (rho, weights[0], weights[1])
        shift = end - self._end
        counts, increments = self._counts, self._increments
        if (
            counts is None
            or increments is None
            or any(a is not b for a, b in zip(key, self._key, strict=True))
            or counts.columns.shape[1:] != failures.shape
            or shift < 0
        ):
            both = np.stack([failures, payments])
            counts = SlidingColumns.holding(both, self._spare, self._UNKNOWN)
            increments = SlidingColumns.holding(
                _fixed_increments(failures, payments, rho, weights), self._spare
            )
            self._counts, self._increments, self._key = counts, increments, key
        else:
            counts.slide(shift)
            increments.slide(shift)
            known = counts.columns
            changed = ((known[0] != failures) | (known[1] != payments)).any(axis=0)
            if changed.any():
                lo = int(np.argmax(changed))
                increments.columns[:, :, lo:] = _fixed_increments(
                    failures[:, lo:], payments[:, lo:], rho, weights
                )
                known[0, :, lo:] = failures[:, lo:]
                known[1, :, lo:] = payments[:, lo:]
        self._end = end
        return increments.columns


def _fixed_increments(
    failures: npt.NDArray[np.signedinteger[Any]],
    payments: npt.NDArray[np.signedinteger[Any]],
    rho: FloatArray,
    weights: tuple[FloatArray, FloatArray],
) -> IntArray:
    """(series, members, minutes): each minute's log-likelihood ratio in fixed point."""
    k: npt.NDArray[np.float64 | np.signedinteger[Any]] = failures[:, None, :]
    n: npt.NDArray[np.float64 | np.signedinteger[Any]] = payments[:, None, :]
    if rho.any():
        scale = 1.0 / dispersion_factor(payments, rho[:, None])[:, None, :]
        k, n = k * scale, n * scale
    a, b = weights
    nats = k * ((a - b) / UNIT)[:, :, None] + n * (b / UNIT)[:, :, None]
    return np.rint(np.clip(nats, -_CLIP_NATS / UNIT, _CLIP_NATS / UNIT)).astype(np.int64)


def _window_minima(total: IntArray, window: int, ends: IntArray) -> IntArray:
    """``min(total[..., e - window : e + 1])`` for each ``e`` in ``ends`` (van Herk/Gil-Werman).

    Blocks of ``window + 1`` columns: a window spans the tail of one block and the head of
    the next, so its minimum is that of a suffix and a prefix minimum.
    """
    span = window + 1
    first = max(int(ends.min()) - window, 0)
    part = total[:, :, first : int(ends.max()) + 1]
    # Windows that would start before the first column start there instead.
    lead = max(window - int(ends.min()), 0)
    blocks = -(-(lead + part.shape[2]) // span)
    padded = np.full((*part.shape[:2], blocks * span), np.iinfo(np.int64).max)
    padded[:, :, lead : lead + part.shape[2]] = part
    grouped = padded.reshape(*part.shape[:2], blocks, span)
    prefix = np.minimum.accumulate(grouped, axis=3).reshape(padded.shape)
    suffix = np.minimum.accumulate(grouped[:, :, :, ::-1], axis=3)[:, :, :, ::-1]
    suffix = suffix.reshape(padded.shape)
    stop = ends - first + lead
    return np.minimum(suffix[:, :, stop - window], prefix[:, :, stop])


def _clamped_scan(increments: IntArray, cap: IntArray) -> IntArray:
    """``S_t = min(max(S_{t-1} + z_t, 0), cap)`` from ``S = 0``, for every row at once.

    Clamps compose into clamps (``x -> min(max(x + a, lo), hi)``), so the recursion is an
    associative scan done by doubling: log2(minutes) vectorised steps, not one per minute.
    """
    shift = increments.copy()
    lo = np.zeros_like(increments)
    hi = np.broadcast_to(cap[:, None], increments.shape).copy()
    step = 1
    width = increments.shape[1]
    while step < width:
        # Compose "first the maps up to t - step, then the maps (t - step, t]".
        a1, lo1, hi1 = shift[:, :-step], lo[:, :-step], hi[:, :-step]
        a2, lo2, hi2 = shift[:, step:], lo[:, step:], hi[:, step:]
        new_hi = np.minimum(np.maximum(hi1 + a2, lo2), hi2)
        new_lo = np.minimum(np.maximum(lo1 + a2, lo2), new_hi)
        shift[:, step:] = a1 + a2
        lo[:, step:] = new_lo
        hi[:, step:] = new_hi
        step *= 2
    return np.minimum(np.maximum(shift, lo), hi)  # the composite map at S = 0


def cusum_bank(
    failures: npt.NDArray[np.int64],
    payments: npt.NDArray[np.int64],
    p0: FloatArray,
    p1: FloatArray,
    rho: FloatArray,
    cap: FloatArray,
    window: int | None = None,
    ends: Sequence[int] | IntArray | None = None,
) -> CusumBank:
    """Window-limited binomial CUSUMs of every series against every bank member.

    Parameters
    ----------
    failures, payments : (series, minutes) int arrays
        Per-minute counts, oldest first.
    p0 : (series,) float array
        Baseline failure rate of each series.
    p1 : (series, members) float array
        Post-change rate of each member; a member with ``p1 <= p0`` is left at 0.
    rho : (series,) float array
        Beta-binomial intra-minute correlation; 0 for plain binomial counts.
    cap : (series, members) float array
        Ceiling of each statistic (threshold plus recovery).
    window : int, optional
        Minutes in a window; all of them by default.
    ends : ints, optional
        The column after the newest minute of each window; one window ending at the last
        column by default.

    >>> k = np.array([[0, 0, 3, 4, 5]]); n = np.array([[50, 50, 50, 50, 50]])
    >>> bank = cusum_bank(k, n, np.array([0.02]), np.array([[0.04, 0.5]]), np.zeros(1),
    ...                   np.full((1, 2), 100.0))
    >>> np.round(bank.statistic, 2).tolist(), bank.start(0, 0), bank.start(0, 1)
    ([[5.47, 0.0]], 2, 5)
    """
    return CusumBank(failures, payments, rho, member_weights(p0, p1), cap, window, ends)


def excursions_reaching(
    failures: npt.NDArray[np.signedinteger[Any]],
    payments: npt.NDArray[np.signedinteger[Any]],
    rho: FloatArray,
    weights: tuple[FloatArray, FloatArray],
    levels: FloatArray,
    block: int = 256,
) -> npt.NDArray[np.bool_]:
    """(series, columns): after which columns some member's CUSUM, started at 0 at the first
    column with no window and no ceiling, stands at its ``levels`` (series, members) or more.

    The statistics of every column of :class:`CusumBank` (``ends`` at every column), without
    holding them: a block of series at a time, so memory does not grow with the series.

    >>> k = np.array([[0, 0, 3, 4, 5]]); n = np.array([[50, 50, 50, 50, 50]])
    >>> w = member_weights(np.array([0.02]), np.array([[0.04]]))
    >>> excursions_reaching(k, n, np.zeros(1), w, np.array([[2.0]])).tolist()
    [[False, False, False, True, True]]
    """
    reached = np.zeros(failures.shape, dtype=bool)
    for start in range(0, failures.shape[0], block):
        rows = slice(start, start + block)
        increments = _fixed_increments(
            failures[rows], payments[rows], rho[rows], (weights[0][rows], weights[1][rows])
        )
        total = np.cumsum(increments, axis=2)
        lowest = np.minimum(np.minimum.accumulate(total, axis=2), 0)  # from a leading 0
        statistics = (total - lowest) * UNIT
        reached[rows] = (statistics >= levels[rows][:, :, None]).any(axis=1)
    return reached


def member_weights(p0: FloatArray, p1: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-failure and per-success weights of each (series, member); 0 where ``p1 <= p0``."""
    usable = p1 > p0[:, None]
    # Any rate between p0 and 1 stands in for the unused members (an SLA of 50% or more
    # has no 2x); their weights are discarded.
    a, b = log_likelihood_weights(p0[:, None], np.where(usable, p1, (1 + p0[:, None]) / 2))
    return np.where(usable, a, 0.0), np.where(usable, b, 0.0)
