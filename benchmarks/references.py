"""Reference detectors the detection benchmark runs on exactly the counts our detector sees.

Every detector here takes per-minute count matrices, row ``g`` a series and column ``t`` a
minute, and returns a boolean matrix of the same shape: ``True`` where an alert *starts*
after the detector has seen minute ``t`` (so it would be raised by the tick at ``t + 1``).
All but river's detectors are vectorised with numpy across series (and, where the recursion
allows, across time).

>>> import numpy as np
>>> payments = np.full((1, 30), 50)
>>> failures = np.zeros((1, 30), dtype=int); failures[0, 20:] = 20
>>> int(np.argmax(fixed_rule_alerts(payments, failures)))  # 40 of 750 in the last 15 min
21
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "SRE_WINDOWS",
    "BurnRateWindow",
    "alert_starts",
    "burn_rate_alerts",
    "calibrate_cusum",
    "cusum_alerts",
    "cusum_increments",
    "first_passage_maxima",
    "fixed_rule_alerts",
    "payment_outcomes",
    "river_alerts",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Keeps the log-likelihood ratio of an outage (p1 = 1) finite: a success then costs ~14 nats.
_MAX_RATE = 1 - 1e-6


def alert_starts(firing: BoolArray) -> BoolArray:
    """Minutes where a firing condition begins: one alert per episode, as an alert lifecycle sends.

    >>> alert_starts(np.array([[False, True, True, False, True]])).tolist()
    [[False, True, False, False, True]]
    """
    previous = np.zeros_like(firing)
    previous[:, 1:] = firing[:, :-1]
    return np.asarray(firing & ~previous)


# --- 1. the oracle: a binomial CUSUM that knows the post-change rate --------------------------


def cusum_increments(payments: IntArray, failures: IntArray, p0: float, p1: float) -> FloatArray:
    """Per-minute log-likelihood ratio of rate ``p1`` against ``p0`` for binomial counts.

    ``k ln(p1/p0) + (n - k) ln((1 - p1)/(1 - p0))`` handles any volume, zero included.

    >>> cusum_increments(np.array([10]), np.array([1]), 0.02, 0.04).round(4).tolist()
    [0.5076]
    """
    p1 = min(p1, _MAX_RATE)
    successes = payments - failures
    return np.asarray(
        failures * np.log(p1 / p0) + successes * np.log((1 - p1) / (1 - p0)), dtype=np.float64
    )


def cusum_alerts(increments: FloatArray, threshold: FloatArray | float) -> BoolArray:
    """Page's CUSUM ``S = max(0, S + x)`` of each row, restarted at 0 after every alert.

    The restart makes the recursion sequential in time; it runs vectorised across rows.
    ``threshold`` is a number or one per row.
    """
    rows, minutes = increments.shape
    limit = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (rows,))
    statistic = np.zeros(rows)
    alerts = np.zeros((rows, minutes), dtype=bool)
    for t in range(minutes):
        statistic = np.maximum(statistic + increments[:, t], 0.0)
        fired = statistic >= limit
        alerts[:, t] = fired
        statistic[fired] = 0.0
    return alerts


def first_passage_maxima(increments: FloatArray) -> FloatArray:
    """Running maximum of each row's CUSUM started at 0 and never restarted.

    Without restarts the CUSUM is the random walk minus its running minimum (the Lindley
    recursion solved in closed form), so this is fully vectorised; the first minute at which
    the result reaches ``h`` is when a CUSUM with threshold ``h`` raises its first alert.

    >>> first_passage_maxima(np.array([[1.0, -3.0, 2.0, 0.5]])).tolist()
    [[1.0, 1.0, 2.0, 2.5]]
    """
    walk = np.cumsum(increments, axis=1)
    floor = np.minimum(np.minimum.accumulate(walk, axis=1), 0.0)
    return np.asarray(np.maximum.accumulate(walk - floor, axis=1))


def calibrate_cusum(maxima: FloatArray, minutes_per_alert: float) -> float:
    """The CUSUM threshold whose false alerts come once per ``minutes_per_alert`` on average.

    ``maxima`` is `first_passage_maxima` of increments simulated at exactly ``p0``, one row
    per independent stream. With threshold ``h`` a stream raises its first alert at the first
    minute its maximum reaches ``h`` or runs to its end without one; the alert rate is
    alerts / minutes observed (the maximum-likelihood rate of the roughly exponential run
    length, censored at the stream's end). The rate falls as ``h`` rises, so bisection finds
    the lowest ``h`` within budget. Precision needs about 20 or more alerts in the streams,
    i.e. ``maxima.size`` of 20 x ``minutes_per_alert`` or more.
    """
    if minutes_per_alert <= 0:
        raise ValueError("minutes_per_alert must be positive")
    length = maxima.shape[1]
    final = maxima[:, -1]

    def rate(h: float) -> float:
        alerted = final >= h
        observed = np.where(alerted, (maxima < h).sum(axis=1) + 1, length).sum()
        return float(alerted.sum() / observed)

    low, high = 0.0, float(final.max()) + 1e-9
    for _ in range(50):
        middle = (low + high) / 2
        if rate(middle) > 1 / minutes_per_alert:
            low = middle
        else:
            high = middle
    return high


# --- 2. Google SRE workbook: multi-window, multi-burn-rate alerts -----------------------------


@dataclass(frozen=True)
class BurnRateWindow:
    """Alert when both the long and the short window burn the error budget this fast."""

    long_minutes: int
    short_minutes: int
    burn_rate: float


# The SRE workbook's recommendation (chapter "Alerting on SLOs", table 5-8 / 5-9).
SRE_WINDOWS = (
    BurnRateWindow(60, 5, 14.4),
    BurnRateWindow(360, 30, 6.0),
    BurnRateWindow(3 * 1440, 360, 1.0),
)


def _window_sums(matrix: IntArray, minutes: int) -> IntArray:
    """Sum over the ``minutes`` minutes ending at each column (fewer at the series' start)."""
    total = np.zeros((matrix.shape[0], matrix.shape[1] + 1), dtype=np.int64)
    np.cumsum(matrix, axis=1, out=total[:, 1:])
    start = np.maximum(np.arange(matrix.shape[1]) + 1 - minutes, 0)
    return np.asarray(total[:, 1:] - total[:, start])


def _rate_above(payments: IntArray, failures: IntArray, minutes: int, rate: float) -> BoolArray:
    n, k = _window_sums(payments, minutes), _window_sums(failures, minutes)
    return np.asarray((n > 0) & (k > rate * n))


def burn_rate_alerts(
    payments: IntArray,
    failures: IntArray,
    budget: float = 0.02,
    windows: tuple[BurnRateWindow, ...] = SRE_WINDOWS,
) -> BoolArray:
    """Starts of the SRE workbook's multi-window multi-burn-rate alert (any window pair).

    >>> payments = np.full((1, 1000), 10); failures = np.zeros((1, 1000), dtype=int)
    >>> failures[0, 800:] = 5  # 50% failures from minute 800: 25 x the 2% budget
    >>> int(np.argmax(burn_rate_alerts(payments, failures, windows=SRE_WINDOWS[:1])))
    834
    >>> int(np.argmax(burn_rate_alerts(payments, failures)))  # the 3d/6h pair at 1x is first
    833
    """
    firing = np.zeros(payments.shape, dtype=bool)
    for window in windows:
        rate = window.burn_rate * budget
        firing |= _rate_above(payments, failures, window.long_minutes, rate) & _rate_above(
            payments, failures, window.short_minutes, rate
        )
    return alert_starts(firing)


# --- 3. a fixed rule as teams write it ---------------------------------------------------------


def fixed_rule_alerts(
    payments: IntArray,
    failures: IntArray,
    minutes: int = 15,
    rate: float = 0.04,
    min_payments: int = 20,
) -> BoolArray:
    """Starts of "the last ``minutes`` minutes failed above ``rate`` with ``min_payments``"."""
    n = _window_sums(payments, minutes)
    firing = (n >= min_payments) & (_window_sums(failures, minutes) > rate * n)
    return alert_starts(np.asarray(firing))


# --- 4. river's drift detectors, fed one payment at a time -------------------------------------


class _DriftDetector(Protocol):
    drift_detected: bool

    def update(self, x: Any) -> Any: ...


def payment_outcomes(
    payments: IntArray, failures: IntArray, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """One series' payments in time order as 0 (succeeded) / 1 (failed), with their minute.

    Within a minute the failures are placed at random among the payments.

    >>> outcome, minute = payment_outcomes(np.array([2, 0, 3]), np.array([1, 0, 3]),
    ...                                    np.random.default_rng(0))
    >>> minute.tolist(), int(outcome[:2].sum()), outcome[2:].tolist()
    ([0, 0, 2, 2, 2], 1, [1, 1, 1])
    """
    minute = np.repeat(np.arange(payments.size), payments)
    rank = np.arange(minute.size) - np.repeat(np.cumsum(payments) - payments, payments)
    outcome = (rank < np.repeat(failures, payments)).astype(np.int64)
    order = np.lexsort((rng.random(minute.size), minute))
    return outcome[order], minute[order]


def river_alerts(
    payments: IntArray,
    failures: IntArray,
    make_detector: Callable[[], _DriftDetector],
    rng: np.random.Generator,
) -> BoolArray:
    """Starts of alerts from a river drift detector fed every payment of every row.

    A minute in which the detector reports a drift is firing; consecutive such minutes are
    one alert. Costs a Python call per payment: keep the volumes and spans it sees bounded.
    """
    firing = np.zeros(payments.shape, dtype=bool)
    for row in range(payments.shape[0]):
        detector = make_detector()
        outcome, minute = payment_outcomes(payments[row], failures[row], rng)
        for value, at in zip(outcome.tolist(), minute.tolist(), strict=True):
            detector.update(value)
            if detector.drift_detected:
                firing[row, at] = True
    return alert_starts(firing)
