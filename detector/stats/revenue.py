"""Revenue at risk: the money behind an alert, per currency (pure numpy, no I/O).

*Above the SLA* (``sla_breach``, ``outage``): of the failed amount since the breach began,
what the SLA does not allow, ``max(failed amount - SLA x amount of all final payments, 0)``
per currency; its payments are likewise the failures above the SLA,
``failures - SLA x payments`` rounded. A gateway at its SLA puts nothing at risk.

*Short of the expected volume* (``volume_drop``): the payments missing since the drop began
(expected minus observed) valued at the gateway's average payment, shared among the
currencies as its payments usually are: currency ``c`` gets ``missing x amount_c /
payments`` of money and ``missing x payments_c / payments`` of payments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Loss", "above_sla", "short_of_volume"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Loss:
    """Money at risk in one currency ("" where the payments table has no currency column)."""

    currency: str
    amount: float  # in the currency's units, rounded to cents
    payments: int  # the failed (or missing) payments it is in

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Loss:
        return cls(str(data["currency"]), float(data["amount"]), int(data["payments"]))


def _per_currency(
    currency: npt.NDArray[np.object_], *columns: FloatArray
) -> tuple[npt.NDArray[np.str_], list[FloatArray]]:
    """Each column summed per currency (sorted by currency)."""
    names, where = np.unique(currency.astype(str), return_inverse=True)
    where = where.ravel()
    sums = [np.bincount(where, weights=c, minlength=names.size).astype(np.float64) for c in columns]
    return names, sums


def _losses(
    names: npt.NDArray[np.str_], amount: FloatArray, payments: FloatArray
) -> tuple[Loss, ...]:
    """The currencies with money at risk, most money first."""
    amount = np.round(np.maximum(amount, 0.0), 2).astype(np.float64)
    count = np.rint(np.maximum(payments, 0.0)).astype(np.int64)
    keep = (amount > 0) | (count > 0)
    order = np.lexsort((names[keep], -amount[keep]))
    return tuple(
        Loss(str(name), float(value), int(n))
        for name, value, n in zip(
            names[keep][order], amount[keep][order], count[keep][order], strict=True
        )
    )


def above_sla(
    currency: npt.NDArray[np.object_],
    failures: FloatArray,
    failed_amount: FloatArray,
    payments: FloatArray,
    amount: FloatArray,
    sla: float,
) -> tuple[Loss, ...]:
    """The failed money above the SLA per currency; a row per currency (or several, summed).

    >>> above_sla(np.array(["EUR", "EUR", "USD"], dtype=object), np.array([10.0, 5.0, 1.0]),
    ...           np.array([500.0, 250.0, 20.0]), np.array([100.0, 50.0, 50.0]),
    ...           np.array([5000.0, 2500.0, 1000.0]), 0.02)
    (Loss(currency='EUR', amount=600.0, payments=12),)
    """
    names, (k, k_amount, n, n_amount) = _per_currency(
        currency, failures, failed_amount, payments, amount
    )
    return _losses(names, k_amount - sla * n_amount, k - sla * n)


def short_of_volume(
    currency: npt.NDArray[np.object_], payments: FloatArray, amount: FloatArray, missing: float
) -> tuple[Loss, ...]:
    """``missing`` payments valued at the average payment of the rows (usual traffic).

    >>> short_of_volume(np.array(["EUR", "USD"], dtype=object), np.array([30.0, 10.0]),
    ...                 np.array([600.0, 100.0]), 20.0)
    (Loss(currency='EUR', amount=300.0, payments=15), Loss(currency='USD', amount=50.0, payments=5))
    """
    names, (n, n_amount) = _per_currency(currency, payments, amount)
    total = float(n.sum())
    if total <= 0 or missing <= 0:
        return ()
    return _losses(names, missing * n_amount / total, missing * n / total)
