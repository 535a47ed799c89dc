"""What a rule concludes: a verdict for every row of a window (:class:`RuleResult`) and,
for the rows the alert lifecycle asks about, the human-readable :class:`Finding` with its
evidence.

Every rule is computed for all gateways at once with numpy; a :class:`Finding` is only
built for the gateways the alert lifecycle asks about.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

from detector.model import Evidence
from detector.stats.binomial import wilson_interval

__all__ = [
    "BoolArray",
    "Finding",
    "RuleResult",
    "SeriesRows",
    "Severity",
    "percent",
    "rate_evidence",
    "series_name",
    "source_down_finding",
]

Severity = Literal["warning", "critical"]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Finding:
    """What one rule concluded about one gateway (or the source) at one tick."""

    rule: str
    gateway: str | None
    severity: Severity
    summary: str
    since: datetime
    evidence: Evidence
    # Labels naming a series within the gateway, e.g. {"method": "card"}; none for the gateway.
    series: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict for every row of the window (a gateway or a series), in order."""

    rule: str
    gateways: list[str]  # the gateway of each row
    active: BoolArray
    build: Callable[[int], Finding]
    # How close each gateway is to alarm: statistic / threshold (1 fires), where the rule has one.
    evidence_ratio: npt.NDArray[np.float64] | None = None
    # Payments expected per minute now (volume rules; NaN without enough history).
    expected_per_minute: npt.NDArray[np.float64] | None = None
    # Labels naming each row's series within its gateway; None where rows are gateways.
    series: list[dict[str, str]] | None = None
    # Rows whose firing alert stays firing though ``active`` no longer holds (a weaker
    # condition that opens no alert); None where the rule has none.
    holding: BoolArray | None = None
    # Rows that are business volumes (``volumes:``), labelled by their series alone.
    volumes: BoolArray | None = None

    def finding(self, index: int) -> Finding:
        return self.build(index)

    def identity(self, index: int) -> dict[str, str]:
        """The labels of the alert row ``index`` would raise: rule, gateway and series."""
        gateway = {}
        if self.volumes is None or not self.volumes[index]:
            gateway = {"gateway": self.gateways[index]}
        return {"rule": self.rule, **gateway, **(self.series[index] if self.series else {})}

    def as_volumes(self, labels: list[dict[str, str]]) -> RuleResult:
        """This result with its rows as business volumes, each labelled ``labels[row]``
        (``{volume: visits, country: BR}``) instead of by a gateway."""

        def build(index: int) -> Finding:
            return replace(self.build(index), gateway=None, series=labels[index])

        return replace(
            self,
            build=build,
            series=labels,
            volumes=np.ones(len(self.gateways), dtype=bool),
        )

    def concat(self, other: RuleResult) -> RuleResult:
        """One result for the rows of both, e.g. the gateways and their dimension series."""
        first = len(self.gateways)

        def build(index: int) -> Finding:
            return self.build(index) if index < first else other.build(index - first)

        ratio = None
        if self.evidence_ratio is not None and other.evidence_ratio is not None:
            ratio = np.concatenate([self.evidence_ratio, other.evidence_ratio])
        return RuleResult(
            self.rule,
            self.gateways + other.gateways,
            np.concatenate([self.active, other.active]),
            build,
            evidence_ratio=ratio,
            series=(self.series or [{}] * first) + (other.series or [{}] * len(other.gateways)),
            holding=_joined(self.holding, other.holding, first, len(other.gateways)),
            volumes=_joined(self.volumes, other.volumes, first, len(other.gateways)),
        )


@dataclass(frozen=True)
class SeriesRows:
    """Who the rows of a dimension-series window are (``detection.sla_breach.series``)."""

    gateways: list[str]  # the gateway of each row
    labels: list[dict[str, str]]  # e.g. {"method": "card"}
    watched: BoolArray  # enough traffic to be tested (``series_min_payments``)


def _joined(
    first: BoolArray | None, second: BoolArray | None, rows: int, other_rows: int
) -> BoolArray | None:
    """Two per-row flags as one, False for the rows of a result without them."""
    if first is None and second is None:
        return None
    return np.concatenate(
        [
            np.zeros(rows, dtype=bool) if first is None else first,
            np.zeros(other_rows, dtype=bool) if second is None else second,
        ]
    )


def series_name(gateway: str, labels: Mapping[str, str]) -> str:
    """``stripe`` or ``stripe (method=card)``: how a message names a series."""
    if not labels:
        return gateway
    return f"{gateway} ({', '.join(f'{k}={v}' for k, v in sorted(labels.items()))})"


def percent(rate: float) -> str:
    """``2.0%``, ``0.05%``: a failure rate as a message quotes it.

    >>> [percent(r) for r in (0.02, 0.0005, 0.0)]
    ['2.0%', '0.05%', '0.0%']
    """
    return f"{rate:.1%}" if rate >= 0.001 or rate == 0 else f"{rate:.2%}"


def rate_evidence(
    failures: int, payments: int, baseline: float, minutes: int, p_value: float | None = None
) -> Evidence:
    """The evidence of a failure rate: ``failures`` of ``payments`` in ``minutes`` minutes,
    with its Wilson interval, against ``baseline``."""
    low, high = wilson_interval(failures, payments)
    return Evidence(
        value=failures / payments if payments else None,
        interval_low=float(low),
        interval_high=float(high),
        baseline=baseline,
        payments=payments,
        failures=failures,
        window_minutes=minutes,
        p_value=p_value,
    )


def source_down_finding(failed_ticks: int, since: datetime, error: str) -> Finding:
    """The single alert raised when the payments database cannot be read (not one per gateway)."""
    return Finding(
        "source_down",
        None,
        "critical",
        f"the payments source cannot be read ({failed_ticks} ticks in a row): {error}",
        since,
        Evidence(),
    )
