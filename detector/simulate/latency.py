"""How long simulated payments take: log-normal latencies, slower during an incident.

A healthy gateway's payments take a median of 300 ms (p95 about 680 ms); an incident with
``latency=P`` sets the p95 to ``P`` ms with the same spread (a slow checkout).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = ["HEALTHY_P95_MS", "LATENCY_SIGMA", "draw_latencies", "slow_share"]

# The spread of ln(latency): p95 / median = exp(1.645 sigma), about 2.3.
LATENCY_SIGMA = 0.5
_Z_95 = float(stats.norm.ppf(0.95))
HEALTHY_P95_MS = 300.0 * math.exp(_Z_95 * LATENCY_SIGMA)


def slow_share(threshold_ms: float, p95_ms: float = HEALTHY_P95_MS) -> float:
    """The share of payments slower than ``threshold_ms`` when the p95 is ``p95_ms``.

    >>> round(slow_share(2000), 6), round(slow_share(2000, p95_ms=3000), 3)
    (7.4e-05, 0.202)
    """
    median = p95_ms / math.exp(_Z_95 * LATENCY_SIGMA)
    return float(stats.norm.sf(math.log(threshold_ms / median) / LATENCY_SIGMA))


def draw_latencies(
    rng: np.random.Generator, p95_ms: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """One latency in whole milliseconds per payment, whose minute has the p95 ``p95_ms``."""
    median = p95_ms / math.exp(_Z_95 * LATENCY_SIGMA)
    return np.round(median * np.exp(LATENCY_SIGMA * rng.standard_normal(p95_ms.size)))
