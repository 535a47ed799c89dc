"""Binomial CUSUM bank on per-minute counts, computed statelessly from a window (no I/O).

Each series (row) is tested against its baseline ``p0`` by several CUSUMs, one per
post-change rate ``p1`` (the bank). Minute ``t`` with ``k`` failures out of ``n`` payments
adds the log-likelihood ratio ``k ln(p1/p0) + (n - k) ln((1 - p1)/(1 - p0))``, divided by
the minute's dispersion factor ``phi = 1 + (n - 1) rho`` (quasi-likelihood for
beta-binomial, i.e. bursty, failures).

The statistic is recomputed from the count window at every tick: the CUSUM started at the
window's first minute, ``S_t = C_t - min_{j <= t} C_j`` on the cumulative sum ``C``, capped at
``threshold + recovery`` so that once the failures stop, the alert clears after
``recovery`` nats of evidence instead of after the whole excess is paid back. Nothing but
the counts is needed, so a restarted daemon and a backtest compute the same numbers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "CusumBank",
    "cusum_bank",
    "dispersion_factor",
    "log_likelihood_weights",
    "member_weights",
]

FloatArray = npt.NDArray[np.float64]


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
    """The bank's statistics for each (series, member) at the window's newest minute.

    ``statistic`` is computed for every series at once; the start of the current excursion
    (the change-point estimate) only for the series a message is written about.
    """

    def __init__(
        self,
        failures: npt.NDArray[np.int64],
        payments: npt.NDArray[np.int64],
        rho: FloatArray,
        weights: tuple[FloatArray, FloatArray],
        cap: FloatArray,
    ):
        weighted_failures: npt.NDArray[np.float64 | np.int64] = failures
        weighted_payments: npt.NDArray[np.float64 | np.int64] = payments
        if rho.any():
            scale = 1.0 / dispersion_factor(payments, rho[:, None])
            weighted_failures, weighted_payments = failures * scale, payments * scale
        self._weighted = (weighted_failures, weighted_payments)
        a, b = weights
        self._a, self._b, self._cap = a, b, cap
        # C[s, m, t] = (a - b) cumsum(k w) + b cumsum(n w), from a leading 0: two running sums
        # serve every member (one batched matrix product). The CUSUM is C minus its running
        # minimum.
        sums = np.zeros((weighted_failures.shape[0], 2, weighted_failures.shape[1] + 1))
        np.cumsum(weighted_failures, axis=1, out=sums[:, 0, 1:])
        np.cumsum(weighted_payments, axis=1, out=sums[:, 1, 1:])
        path = np.stack([a - b, b], axis=2) @ sums
        free = (path - np.minimum.accumulate(path, axis=2))[:, :, 1:]
        self.uncapped: FloatArray = free  # (series, members, minutes): S without its ceiling
        self.statistic: FloatArray = free[:, :, -1].copy()
        # The ceiling only matters where the statistic ever rose that far: rare, in incidents.
        self._capped = free.max(axis=2) > cap
        for s, m in zip(*np.nonzero(self._capped), strict=True):
            self.statistic[s, m] = self._exact(int(s), int(m))[-1]

    def _exact(self, s: int, m: int) -> FloatArray:
        """The whole statistic path of one series and member (capped where it must be)."""
        if not self._capped[s, m]:
            return self.uncapped[s, m]
        k, n = self._weighted[0][s], self._weighted[1][s]
        increments = k * (self._a[s, m] - self._b[s, m]) + n * self._b[s, m]
        return _clamped_scan(increments[None, :], self._cap[s, m][None])[0]

    def start(self, series: int, member: int) -> int:
        """First column of the current excursion: after the last minute the statistic was 0."""
        at_zero = np.flatnonzero(self._exact(series, member) <= 0.0)
        return int(at_zero[-1]) + 1 if at_zero.size else 0


def _clamped_scan(increments: FloatArray, cap: FloatArray) -> FloatArray:
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

    >>> k = np.array([[0, 0, 3, 4, 5]]); n = np.array([[50, 50, 50, 50, 50]])
    >>> bank = cusum_bank(k, n, np.array([0.02]), np.array([[0.04, 0.5]]), np.zeros(1),
    ...                   np.full((1, 2), 100.0))
    >>> np.round(bank.statistic, 2).tolist(), bank.start(0, 0), bank.start(0, 1)
    ([[5.47, 0.0]], 2, 5)
    """
    return CusumBank(failures, payments, rho, member_weights(p0, p1), cap)


def member_weights(p0: FloatArray, p1: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-failure and per-success weights of each (series, member); 0 where ``p1 <= p0``."""
    usable = p1 > p0[:, None]
    a, b = log_likelihood_weights(p0[:, None], np.where(usable, p1, 2 * p0[:, None]))
    return np.where(usable, a, 0.0), np.where(usable, b, 0.0)
