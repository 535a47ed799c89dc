"""CUSUM thresholds from a false-alarm budget: Brook & Evans Markov-chain ARL (no I/O).

A series' traffic is summarised by its mean payments per minute ``m`` and its failure
dispersion ``rho``. In control, a minute carries ``N ~ Poisson(m)`` payments of which
``K ~ BetaBinomial(N, p0, rho)`` fail; the CUSUM adds the dispersion-scaled log-likelihood
ratio of ``(N, K)``. Discretising the statistic on ``[0, h)`` into ``states`` cells turns
the CUSUM into a Markov chain whose expected absorption time from 0 is the average run
length (ARL, in minutes) before a false alarm; the threshold ``h`` is the smallest whose
ARL meets the budget. Callers pass quantised inputs (the rules round ``m`` and ``rho`` up
to whole octaves with :func:`quantise_up`) so that a few cached thresholds serve every
gateway; rounding up errs towards fewer false alarms.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import linalg, stats
from threadpoolctl import ThreadpoolController

from detector.stats.cusum import dispersion_factor, log_likelihood_weights

__all__ = [
    "MIN_THRESHOLD",
    "average_run_length",
    "estimate_dispersion",
    "increment_distribution",
    "quantise_up",
    "threshold_for",
]

FloatArray = npt.NDArray[np.float64]
_THREADS = ThreadpoolController()
_TAIL = 1e-12  # probability mass left out of the increment distribution
_MIN_RHO = 5e-4  # below this, dispersion changes thresholds by less than the quantisation
_MIN_STATES, _MAX_STATES = 200, 1_000
# No threshold below this (odds of 7 to 1): where a single in-control minute can almost never
# raise the statistic, the budget alone would allow any tiny evidence to alarm.
MIN_THRESHOLD = 2.0
_BLOCK_SERIES = 256  # rows of a dispersion estimate computed together


def quantise_up(value: float, steps_per_octave: int, smallest: float) -> float:
    """``value`` rounded up to the grid ``smallest * 2**(i / steps_per_octave)``; 0 stays 0.

    >>> quantise_up(3.0, 4, 1 / 64)
    3.363585661014858
    >>> quantise_up(0.0, 4, 1 / 64), quantise_up(1e-9, 2, 1e-4)
    (0.0, 0.0001)
    """
    if value <= 0:
        return 0.0
    steps = math.ceil(steps_per_octave * math.log2(max(value, smallest) / smallest) - 1e-9)
    return float(smallest * 2.0 ** (steps / steps_per_octave))


def increment_distribution(
    p0: float, p1: float, rho: float, mean_payments: float
) -> tuple[FloatArray, FloatArray]:
    """Values and probabilities of one in-control minute's CUSUM increment.

    >>> values, probs = increment_distribution(0.02, 0.04, 0.0, 1.0)
    >>> round(float(probs.sum()), 9), round(float(values @ probs), 4)  # mean: -m KL(p0 || p1)
    (1.0, -0.0063)
    """
    n_max = int(stats.poisson.isf(_TAIL, mean_payments)) + 1 if mean_payments > 0 else 0
    n = np.arange(n_max + 1)
    p_n = stats.poisson.pmf(n, mean_payments) if mean_payments > 0 else np.ones(1)
    if rho > 0:
        shape = (1 - rho) / rho
        failures = stats.betabinom(n_max, p0 * shape, (1 - p0) * shape)
    else:
        failures = stats.binom(n_max, p0)
    # The most failures worth tabulating: the tail beyond is below _TAIL even at n_max.
    k_max = min(n_max, int(failures.isf(_TAIL)) + 1)
    k = np.arange(k_max + 1)
    nn, kk = np.meshgrid(n, k, indexing="ij")
    valid = kk <= nn
    if rho > 0:
        p_k = stats.betabinom.pmf(kk, nn, p0 * shape, (1 - p0) * shape)
    else:
        p_k = stats.binom.pmf(kk, nn, p0)
    a, b = log_likelihood_weights(p0, p1)
    values = (kk * a + (nn - kk) * b) / dispersion_factor(nn, rho)
    probs = np.where(valid, p_k * p_n[:, None], 0.0)
    keep = probs > 0
    values, probs = values[keep], probs[keep]
    return np.asarray(values, dtype=np.float64), np.asarray(probs / probs.sum(), dtype=np.float64)


def _grid_step(threshold: float, success_weight: float, mean_payments: float) -> float:
    """Cell width of the chain: fine enough for the small downward step of one payment.

    At low volume most minutes move the statistic by one payment's small negative weight;
    a coarser grid would round those steps away and misjudge the ARL by orders of magnitude.
    At higher volume a minute moves it by many such steps and ``threshold / 200`` suffices.
    """
    return min(threshold / _MIN_STATES, abs(success_weight) * max(1.0, mean_payments / 4))


def average_run_length(
    values: FloatArray, probs: FloatArray, threshold: float, step: float | None = None
) -> float:
    """Expected minutes until a CUSUM started at 0 reaches ``threshold`` (Brook & Evans).

    >>> values, probs = np.array([1.0, -1.0]), np.array([0.5, 0.5])
    >>> round(average_run_length(values, probs, 3.0, step=1.0), 6)  # symmetric walk: (h + 1) h
    12.0
    """
    wanted = threshold / _MIN_STATES if step is None else min(step, threshold)
    states = min(max(math.ceil(threshold / wanted - 1e-9), 1), _MAX_STATES)
    step = threshold / states
    # An increment between two cells moves to either, in the proportion that keeps its mean:
    # rounding instead would bias the drift, a small difference of large per-payment terms,
    # and the ARL with it (by a third at one payment a minute).
    cells = values / step
    floor = np.floor(cells)
    share_up = cells - floor
    offsets = np.concatenate([floor, floor + 1]).astype(np.int64)
    low = int(offsets.min())
    pmf = np.bincount(
        offsets - low, weights=np.concatenate([probs * (1 - share_up), probs * share_up])
    )
    below = max(-low, 0)  # lower bandwidth: how far one minute can move the statistic down
    above = max(min(int(offsets.max()), states - 1), 0)
    # P[i, j] = P(i + d = j) for j >= 1 and P[i, 0] = P(i + d <= 0); i + d >= states alarms.
    # The matrix is banded (one minute moves the statistic by at most ``below`` cells down
    # and ``above`` up); LAPACK's band solver pays off when the band is narrow.
    lower_cells, upper_cells = min(below, states - 1), above
    cdf = np.cumsum(pmf)
    reach = np.arange(lower_cells + 1)
    floor_index = -reach - low
    to_floor = np.where(floor_index >= 0, cdf[np.clip(floor_index, 0, cdf.size - 1)], 0.0)
    diagonals = np.arange(-lower_cells, upper_cells + 1)  # j - i
    d_index = diagonals - low
    weight = np.where(
        (d_index >= 0) & (d_index < pmf.size), pmf[np.clip(d_index, 0, pmf.size - 1)], 0.0
    )
    try:
        with warnings.catch_warnings():
            # Ill-conditioned means the chain almost never leaves 0: an ARL beyond any budget.
            warnings.simplefilter("error", linalg.LinAlgWarning)
            if 4 * (lower_cells + upper_cells) < states:
                rows = np.arange(states)
                band = np.where(
                    (rows[None, :] - diagonals[::-1, None] >= 0)
                    & (rows[None, :] - diagonals[::-1, None] < states),
                    -weight[::-1, None],
                    0.0,
                )
                band[upper_cells + reach, 0] = -to_floor
                band[upper_cells, :] += 1.0
                lengths = linalg.solve_banded(
                    (lower_cells, upper_cells), band, np.ones(states), check_finite=False
                )
            else:
                i = np.arange(states)
                jump = i[None, :] - i[:, None]
                inside = (jump >= -lower_cells) & (jump <= upper_cells)
                chain = np.where(
                    inside, weight[np.clip(jump + lower_cells, 0, weight.size - 1)], 0.0
                )
                chain[: lower_cells + 1, 0] = to_floor
                chain[lower_cells + 1 :, 0] = 0.0
                lengths = linalg.solve(np.eye(states) - chain, np.ones(states), check_finite=False)
    except (linalg.LinAlgError, linalg.LinAlgWarning, ValueError):
        return math.inf  # the statistic can never leave 0: no false alarm, ever
    first = float(lengths[0])
    return first if math.isfinite(first) and first > 0 else math.inf


@lru_cache(maxsize=4096)
def threshold_for(
    p0: float, p1: float, rho: float, mean_payments: float, target_minutes: float
) -> float:
    """The smallest threshold (at least ``MIN_THRESHOLD``) whose in-control ARL is at least
    ``target_minutes``, within about 0.05 nats.

    Inputs should already be quantised (see :func:`quantise_up`) so that the cache is hit as
    traffic drifts.

    >>> round(threshold_for(0.02, 0.04, 0.0, 20.0, 518_400.0), 1)
    10.6
    """
    # The chains are small: BLAS threads cost far more in start-up and contention than they
    # save (ten times slower on a busy two-core machine).
    with _THREADS.limit(limits=1, user_api="blas"):
        return _search_threshold(p0, p1, rho, mean_payments, target_minutes)


def _search_threshold(
    p0: float, p1: float, rho: float, mean_payments: float, target_minutes: float
) -> float:
    values, probs = increment_distribution(p0, p1, rho, mean_payments)
    if not (values > 0).any():
        return MIN_THRESHOLD  # nothing in control can raise the statistic

    success_weight = float(log_likelihood_weights(p0, p1)[1])

    def log_arl(h: float) -> float:
        step = _grid_step(h, success_weight, mean_payments)
        return math.log(average_run_length(values, probs, h, step))

    goal = math.log(target_minutes)
    points = [(h, log_arl(h)) for h in (MIN_THRESHOLD, 2 * MIN_THRESHOLD)]
    if points[0][1] >= goal:
        return MIN_THRESHOLD
    # log ARL is nearly linear in h (Siegmund): secant steps land within a few percent of
    # the budget in three or four solves; the answer errs upwards (fewer false alarms).
    for _ in range(8):
        (h1, v1), (h2, v2) = points[-2], points[-1]
        slope = (v2 - v1) / (h2 - h1) if h2 != h1 and v2 > v1 else 1.0
        guess = min(max(h2 + (goal - v2) / slope, MIN_THRESHOLD), 2 * h2) + 0.02
        points.append((guess, log_arl(guess)))
        if 0 <= points[-1][1] - goal < 0.05:
            return guess
    # Large per-minute jumps (a 50% member) make the ARL a staircase in h, where secant
    # steps overshoot: bisect between the highest h below the goal and the lowest above it
    # (the ARL never falls as h rises), for the smallest threshold that meets the budget.
    high = min((h for h, value in points if value >= goal), default=None)
    for _ in range(20):
        if high is not None:
            break
        guess = 2 * max(h for h, _ in points)
        points.append((guess, log_arl(guess)))
        high = guess if points[-1][1] >= goal else None
    if high is None:
        return max(h for h, _ in points)  # unreachable budget: the highest threshold tried
    low = max((h for h, value in points if value < goal and h < high), default=MIN_THRESHOLD)
    while high - low > 0.05:
        middle = (low + high) / 2
        low, high = (low, middle) if log_arl(middle) >= goal else (middle, high)
    return high


def estimate_dispersion(
    failures: npt.NDArray[np.signedinteger[Any]],
    payments: npt.NDArray[np.signedinteger[Any]],
    exclude: npt.NDArray[np.bool_] | None = None,
    minutes_per_bin: int = 1,
    min_z: float = 1.0,
) -> FloatArray:
    """Beta-binomial ``rho`` of each row's per-minute failures (method of moments, robust),
    from counts per bin of ``minutes_per_bin`` minutes (minutes, or quarter hours).

    With independent beta-binomial minutes, a bin of ``N`` payments spread over ``B``
    minutes has ``Var(K) = N p q (1 + (N - 1) rho / B)`` (``E[sum n_i (n_i - 1)] =
    N (N - 1) / B``): the same excess over the binomial variance identifies the per-minute
    ``rho`` from quarter hours (``B = 15``). Bursts lasting several minutes show up larger
    there, which errs towards fewer false alerts from a CUSUM summing minutes.

    Bins marked in ``exclude`` (a detected breach) are left out; so are bins whose failures
    stand more than 4 standard deviations above the fitted model, from a second fit. Where
    Tarone's test does not find overdispersion at z >= ``min_z`` the row gets 0: the moment
    estimate of a low-volume series is mostly noise, and thresholds would follow that
    noise. (A stricter gate, z >= 3, zeroed half the hours of a gateway at 50 payments a
    minute with rho 0.005, and those hours gave false alerts: benchmarks/dispersion.py.)

    >>> rng = np.random.default_rng(0)
    >>> n = np.full((1, 5000), 100); p = rng.beta(0.02 * 199, 0.98 * 199, size=(1, 5000))
    >>> k = rng.binomial(n, p)
    >>> round(float(estimate_dispersion(k, n)[0]), 3)
    0.004
    >>> def bins(counts): return counts.reshape(1, 1000, 5).sum(axis=2)  # five minutes a bin
    >>> round(float(estimate_dispersion(bins(k), bins(n), minutes_per_bin=5)[0]), 3)
    0.004
    """
    if failures.shape[0] > _BLOCK_SERIES:
        # Each row's estimate is its own: a block of rows at a time keeps the temporaries
        # (several float copies of four weeks of quarter hours) from growing with the rows.
        return np.concatenate(
            [
                estimate_dispersion(
                    failures[start : start + _BLOCK_SERIES],
                    payments[start : start + _BLOCK_SERIES],
                    None if exclude is None else exclude[start : start + _BLOCK_SERIES],
                    minutes_per_bin,
                    min_z,
                )
                for start in range(0, failures.shape[0], _BLOCK_SERIES)
            ]
        )
    usable = (payments > 0) if exclude is None else (payments > 0) & ~exclude
    include = usable
    rho = np.zeros(failures.shape[0])
    tarone = np.zeros(failures.shape[0])
    all_n, all_k = payments.astype(np.float64), failures.astype(np.float64)
    for _ in range(2):
        n, k = all_n * include, all_k * include
        rate = k.sum(axis=1) / np.maximum(n.sum(axis=1), 1.0)
        spread = rate * (1 - rate)
        excess = ((k - n * rate[:, None]) ** 2).sum(axis=1) - (n * spread[:, None]).sum(axis=1)
        pair_count = (n * np.maximum(n - 1, 0)).sum(axis=1)
        pairs = spread * pair_count / minutes_per_bin
        rho = np.clip(np.divide(excess, pairs, out=np.zeros_like(excess), where=pairs > 0), 0, 0.5)
        # Under binomial counts the excess has variance 2 (p q)^2 sum n (n - 1), per bin.
        scale = spread * np.sqrt(2 * pair_count)
        tarone = np.divide(excess, scale, out=np.zeros_like(excess), where=scale > 0)
        bin_rho = rho[:, None] / minutes_per_bin
        sd = np.sqrt(all_n * spread[:, None] * dispersion_factor(all_n, bin_rho))
        outlier = all_k - all_n * rate[:, None] > 4 * np.maximum(sd, 1e-12)
        include = usable & ~outlier
    return np.asarray(np.where((rho < _MIN_RHO) | (tarone < min_z), 0.0, rho), dtype=np.float64)
