"""Which dimension values hold a gateway's excess failures (pure numpy, no I/O).

Given failures and final payments per combination of dimension values (method x country,
...), the *excess* of a combination is its failures above the SLA, ``max(k - p0 n, 0)``:
combinations at or below the SLA hold none. A *segment* is one value of one dimension
(``method=card``) or a combination of values of several (``method=card, country=BR``).
The segment reported is the one whose share of the excess most exceeds its share of the
payments: the whole gateway explains 100% of the excess with 100% of the payments (no
information), ``method=card`` holding 100% of it with 70% of the payments says something,
``method=card, country=BR`` holding 82% with 9% says more.

Only segments that stand out are candidates: their failures must be very unlikely
(p < ``MAX_P_VALUE``, exact binomial) at the failure rate of the other payments (or the SLA,
if higher). With dozens of segments, the first minutes of an incident that hits every
payment alike always make one look concentrated by chance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.stats.binomial import binomial_upper_tail

__all__ = ["MAX_P_VALUE", "MIN_CONCENTRATION", "Attribution", "attribute"]

# Below this lead of excess share over payment share no segment stands out: the excess is
# spread over the dimensions in proportion to the payments.
MIN_CONCENTRATION = 0.1
# A segment must fail this improbably often for the rest of the gateway's rate to be named.
MAX_P_VALUE = 1e-4


@dataclass(frozen=True)
class Attribution:
    """The segment that holds most of the excess failures for its share of the payments."""

    dimensions: tuple[str, ...]  # the dimensions looked at
    segment: tuple[tuple[str, str], ...]  # ((name, value), ...); () when none stands out
    excess_share: float  # share of the excess failures in the segment
    payments_share: float  # share of the final payments in the segment
    excess_failures: float  # failures above the SLA, summed over the combinations above it

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attribution:
        """Back from ``dataclasses.asdict`` after a JSON round trip."""
        return cls(
            dimensions=tuple(data["dimensions"]),
            segment=tuple((str(k), str(v)) for k, v in data["segment"]),
            excess_share=float(data["excess_share"]),
            payments_share=float(data["payments_share"]),
            excess_failures=float(data["excess_failures"]),
        )


def attribute(
    dimensions: tuple[str, ...],
    values: npt.NDArray[np.object_],
    payments: npt.ArrayLike,
    failures: npt.ArrayLike,
    baseline: float,
) -> Attribution | None:
    """The segment of the excess failures over ``baseline``, or None without any excess.

    ``values`` holds one row per combination and one column per dimension; ``payments``
    and ``failures`` the final payments and the failed ones of each row.

    >>> values = np.array([["card", "BR"], ["card", "US"], ["wallet", "BR"]], dtype=object)
    >>> a = attribute(("method", "country"), values, [100, 300, 100], [22, 6, 2], 0.02)
    >>> a.segment, a.excess_share, a.payments_share
    ((('method', 'card'), ('country', 'BR')), 1.0, 0.2)
    """
    n = np.asarray(payments, dtype=np.float64)
    k = np.asarray(failures, dtype=np.float64)
    total = float(n.sum())
    if not dimensions or total <= 0 or float(k.sum()) - baseline * total <= 0:
        return None
    excess = np.maximum(k - baseline * n, 0.0)
    held = float(excess.sum())
    best: tuple[float, tuple[tuple[str, str], ...], float, float] = (-np.inf, (), 1.0, 1.0)
    # Fewer dimensions first: a wider segment wins a tie with a narrower one.
    for size in range(1, len(dimensions) + 1):
        for chosen in combinations(range(len(dimensions)), size):
            keys = values[:, list(chosen)].astype(str)
            segments, where = np.unique(keys, axis=0, return_inverse=True)
            where = where.ravel()
            excess_share = np.bincount(where, weights=excess) / held
            payments_share = np.bincount(where, weights=n) / total
            segment_n, segment_k = np.bincount(where, weights=n), np.bincount(where, weights=k)
            rest_n, rest_k = total - segment_n, k.sum() - segment_k
            rest_rate = np.divide(rest_k, rest_n, out=np.zeros_like(rest_n), where=rest_n > 0)
            p_value = binomial_upper_tail(segment_k, segment_n, np.maximum(rest_rate, baseline))
            lead = np.where(p_value < MAX_P_VALUE, excess_share - payments_share, -np.inf)
            top = int(np.argmax(lead))
            if lead[top] > best[0] + 1e-12:  # a float tie keeps the wider segment
                segment = tuple(
                    (dimensions[d], str(v)) for d, v in zip(chosen, segments[top], strict=True)
                )
                best = (
                    float(lead[top]),
                    segment,
                    float(excess_share[top]),
                    float(payments_share[top]),
                )
    if best[0] < MIN_CONCENTRATION:
        return Attribution(dimensions, (), 1.0, 1.0, held)
    return Attribution(dimensions, best[1], best[2], best[3], held)
