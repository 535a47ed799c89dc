"""Binomial and Poisson figures used by the rules and shown in messages (vectorised, no I/O)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = [
    "binomial_upper_tail",
    "p_value_clause",
    "p_value_text",
    "poisson_zero_probability",
    "wilson_interval",
]

# Below this a float64 tail probability is rounding, not a figure: 0.0e+00 would claim
# certainty.
P_FLOOR = 1e-300

FloatArray = npt.NDArray[np.float64]
Z_95 = 1.959963984540054


def wilson_interval(
    failures: npt.ArrayLike, payments: npt.ArrayLike, z: float = Z_95
) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval of a failure rate; ``(0, 1)`` where there are no payments.

    >>> low, high = wilson_interval(5, 100)
    >>> round(float(low), 4), round(float(high), 4)
    (0.0215, 0.1118)
    """
    k = np.asarray(failures, dtype=np.float64)
    n = np.asarray(payments, dtype=np.float64)
    safe_n = np.where(n > 0, n, 1.0)
    rate = k / safe_n
    z2 = z * z
    centre = (rate + z2 / (2 * safe_n)) / (1 + z2 / safe_n)
    half = z * np.sqrt(rate * (1 - rate) / safe_n + z2 / (4 * safe_n**2)) / (1 + z2 / safe_n)
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return low, high


def binomial_upper_tail(
    failures: npt.ArrayLike, payments: npt.ArrayLike, baseline: npt.ArrayLike
) -> FloatArray:
    """Exact one-sided p-value ``P(X >= failures)`` for ``X ~ Binomial(payments, baseline)``.

    >>> float(binomial_upper_tail(0, 50, 0.02))
    1.0
    >>> f"{float(binomial_upper_tail(10, 100, 0.02)):.2e}"
    '3.44e-05'
    """
    k = np.asarray(failures, dtype=np.float64)
    n = np.asarray(payments, dtype=np.float64)
    # P(X >= k) = I_p(k, n - k + 1), the regularised incomplete beta: the bare ufunc costs
    # less than scipy.stats' wrapper at one call per tick, and, unlike the integer-n binomial
    # kernel, it takes counts beyond 2**31.
    safe_k = np.maximum(k, 1.0)
    tail = special.betainc(safe_k, np.maximum(n - safe_k + 1, 1.0), baseline)
    return np.asarray(np.where(k <= 0, 1.0, np.where(k > n, 0.0, tail)), dtype=np.float64)


def poisson_zero_probability(expected: npt.ArrayLike) -> FloatArray:
    """Chance of seeing no payment at all when ``expected`` are due (Poisson).

    >>> round(float(poisson_zero_probability(10.0)), 6)
    4.5e-05
    """
    return np.exp(-np.asarray(expected, dtype=np.float64))


def p_value_text(p: float) -> str:
    """A p-value as messages show it.

    >>> p_value_text(3.2e-7), p_value_text(0.0), p_value_text(1e-320)
    ('3.2e-07', '< 1e-300', '< 1e-300')
    """
    return f"< {P_FLOOR:.0e}" if p < P_FLOOR else f"{p:.1e}"


def p_value_clause(p: float) -> str:
    """``p = 3.2e-07``, or ``p < 1e-300`` where the tail is below what a float holds.

    >>> p_value_clause(0.0)
    'p < 1e-300'
    """
    text = p_value_text(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"
