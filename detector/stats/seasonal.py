"""Seasonal volume expectation and negative-binomial lower tails (vectorised, no I/O).

A gateway's expected payments in a minute are the robust mean (the median, i.e. the mean of
the middle two of four) of the same hour of the week over the last weeks, divided by 60,
times a level factor: how the last complete hours compared with their own seasonal
expectation. Hour-to-hour noise beyond Poisson is a negative binomial with size ``r``
fitted from the history.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = ["HOURS_PER_WEEK", "negative_binomial_cdf", "negative_binomial_size", "seasonal_profile"]

FloatArray = npt.NDArray[np.float64]
HOURS_PER_WEEK = 168


def negative_binomial_cdf(
    count: npt.ArrayLike, mean: npt.ArrayLike, size: npt.ArrayLike
) -> FloatArray:
    """``P(X <= count)`` for a negative binomial of this mean and size (``var = m + m^2/r``).

    >>> round(float(negative_binomial_cdf(3, 10.0, 5.0)), 6)
    0.087944
    """
    k = np.asarray(count, dtype=np.float64)
    r = np.asarray(size, dtype=np.float64)
    p = r / (r + np.maximum(np.asarray(mean, dtype=np.float64), 0.0))
    return np.asarray(np.where(k < 0, 0.0, special.betainc(r, k + 1.0, p)), dtype=np.float64)


def seasonal_profile(
    volume: FloatArray, hours: npt.NDArray[np.int64], weeks: npt.NDArray[np.int64]
) -> FloatArray:
    """Expected volume of each hour in ``hours`` (columns of ``volume``, possibly beyond it).

    ``volume`` is (series, history hours), oldest first; ``weeks`` how many whole weeks of
    history each series has (at most 4 are used). Where a series has none the result is NaN.

    >>> v = np.array([[10.0] * 168 + [30.0] * 168 + [20.0] * 168])
    >>> seasonal_profile(v, np.array([504, 5]), np.array([3])).tolist()
    [[20.0, nan]]
    """
    lags = np.arange(1, 5) * HOURS_PER_WEEK
    index = hours[None, :, None] - lags[None, None, :]  # (1, hours, lags)
    valid = (index >= 0) & (lags[None, None, :] <= weeks[:, None, None] * HOURS_PER_WEEK)
    values = np.where(valid, volume[:, np.clip(index[0], 0, volume.shape[1] - 1)], np.inf)
    # A median over the weeks that exist: sorting moves the missing ones (inf) to the end.
    values.sort(axis=2)
    count = valid.sum(axis=2)
    low = np.take_along_axis(values, np.maximum((count - 1) // 2, 0)[..., None], axis=2)[..., 0]
    high = np.take_along_axis(values, (count // 2).clip(max=3)[..., None], axis=2)[..., 0]
    return np.asarray(np.where(count > 0, (low + high) / 2, np.nan), dtype=np.float64)


def negative_binomial_size(observed: FloatArray, expected: FloatArray) -> FloatArray:
    """Size ``r`` of each row's negative binomial from hourly counts and their expectations.

    Method of moments on ``(x - m)^2 - m`` over ``m^2``; NaN expectations are left out. Rows
    without enough history get ``r = 20`` (hour-to-hour swings of about 20%), and ``r`` is
    kept within [2, 1000].

    >>> rng = np.random.default_rng(1)
    >>> m = np.full((1, 2000), 50.0); x = rng.negative_binomial(10, 10 / 60, size=(1, 2000))
    >>> round(float(negative_binomial_size(x.astype(float), m)[0]))
    10
    """
    known = np.isfinite(expected)
    m = np.where(known, expected, 0.0)
    excess = np.where(known, (observed - m) ** 2 - m, 0.0).sum(axis=1)
    scale = (m**2).sum(axis=1)
    enough = known.sum(axis=1) >= 24
    inverse = np.divide(excess, scale, out=np.full_like(excess, 1 / 20), where=scale > 0)
    size = 1.0 / np.clip(inverse, 1e-3, 0.5)
    return np.asarray(np.where(enough, size, 20.0), dtype=np.float64)
