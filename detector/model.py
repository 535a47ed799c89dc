"""The domain types every layer shares: payment counts, the evidence behind a verdict and
the notification a receiver gets. Plain data, no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from detector.stats.attribution import Attribution
from detector.stats.revenue import Loss

__all__ = ["Counts", "Evidence", "Notification", "grouped", "grouped_by_index"]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Counts:
    """One row per (gateway, minute) with payments in it; arrays of equal length.

    ``failures`` are the gateway's (technical) failures; ``declines`` are the final payments
    the payer or the issuer refused (``source.declines``, ``statuses.declined``), counted in
    ``payments`` but never as failures. Counts built without them have none.

    ``timed`` are the payments with a latency (``source.columns.latency_ms`` not NULL) and
    ``slow`` those of them slower than ``detection.latency.threshold``; none without the
    latency column.

    Read with dimensions, ``detail`` holds the same payments per (gateway, minute, dimension
    values): rows whose ``values`` hold one column per name in ``dimensions``.
    """

    gateway: npt.NDArray[np.object_]
    minute: IntArray  # epoch minute of the bucket
    payments: IntArray  # final payments (failed + declined + succeeded)
    failures: IntArray  # failed, declines excluded
    volume: IntArray  # every valid row, pending included: what volume rules count
    invalid: int = 0  # rows skipped: null gateway, null or unknown status
    detail: Counts | None = None
    dimensions: tuple[str, ...] = ()
    values: npt.NDArray[np.object_] | None = None  # (rows, dimensions); NULL reads "(none)"
    declines: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # The skipped rows per epoch minute that has any (minutes ascending), so that a re-read
    # minute's rows are counted once.
    invalid_minutes: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    invalid_per_minute: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # Why rows were skipped: ("status 'TIMEOUT'", rows), ("null gateway", rows), ...
    skipped: tuple[tuple[str, int], ...] = ()
    # The same per gateway, for the status values only: ("stripe", "status 'TIMEOUT'", rows).
    unlisted_values: tuple[tuple[str, str, int], ...] = ()
    timed: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    slow: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # Rows of the bucket's gateway whose status is listed under none of source.statuses
    # (skipped, so in no other count): what the unmapped_statuses alert measures.
    unlisted: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        for name in ("declines", "timed", "slow", "unlisted"):
            if not getattr(self, name).size and self.minute.size:
                object.__setattr__(self, name, np.zeros_like(self.minute))

    @classmethod
    def empty(cls) -> Counts:
        none = np.zeros(0, dtype=np.int64)
        return cls(np.zeros(0, dtype=object), none, none, none, none)

    def between(self, first_minute: int, end_minute: int) -> Counts:
        """The buckets with ``first_minute <= minute < end_minute`` (rows sorted by minute)."""
        lo, hi = np.searchsorted(self.minute, [first_minute, end_minute])
        part = slice(int(lo), int(hi))
        return Counts(
            self.gateway[part],
            self.minute[part],
            self.payments[part],
            self.failures[part],
            self.volume[part],
            detail=self.detail.between(first_minute, end_minute) if self.detail else None,
            dimensions=self.dimensions,
            values=self.values[part] if self.values is not None else None,
            declines=self.declines[part],
            timed=self.timed[part],
            slow=self.slow[part],
            unlisted=self.unlisted[part],
        )

    def latency(self) -> Counts:
        """The same rows counting slow payments as failures of the timed ones, so that
        the SLA machinery watches the latency SLA on them (``latency_breach``)."""
        return Counts(self.gateway, self.minute, self.timed, self.slow, self.timed)

    def by_hour(self) -> Counts:
        """The same payments per (gateway, hour); ``minute`` is the hour's first minute."""
        return self.by_buckets(60)

    def by_buckets(self, minutes: int) -> Counts:
        """The same payments per (gateway, ``minutes``-long bucket since the epoch);
        ``minute`` is the bucket's first minute."""
        return grouped(self.gateway, self.minute // minutes * minutes, self)


def grouped(keys: npt.NDArray[np.object_], minute: IntArray, counts: Counts) -> Counts:
    """``counts`` summed over the rows with equal (key, minute), sorted by minute.

    >>> rows = Counts(np.array(["a", "a", "b"], dtype=object), np.array([5, 5, 4]),
    ...               np.array([1, 2, 3]), np.array([0, 1, 0]), np.array([1, 2, 3]))
    >>> total = grouped(rows.gateway, rows.minute, rows)
    >>> total.gateway.tolist(), total.minute.tolist(), total.payments.tolist()
    (['b', 'a'], [4, 5], [3, 3])
    """
    if not minute.size:
        return Counts.empty()
    names, key_index = np.unique(keys.astype(str), return_inverse=True)
    return grouped_by_index(names, key_index.ravel(), minute, counts)


def grouped_by_index(
    names: npt.NDArray[Any], key_index: IntArray, minute: IntArray, counts: Counts
) -> Counts:
    """:func:`grouped` with each row's key given as its index in ``names`` (sorted, distinct)."""
    if not minute.size:
        return Counts.empty()
    first = int(minute.min())
    cells, where = np.unique((minute - first) * len(names) + key_index, return_inverse=True)
    where = where.ravel()

    def total(values: IntArray) -> IntArray:
        return np.bincount(where, weights=values, minlength=cells.size).astype(np.int64)

    return Counts(
        names[cells % len(names)].astype(object),
        cells // len(names) + first,
        total(counts.payments),
        total(counts.failures),
        total(counts.volume),
        declines=total(counts.declines),
        timed=total(counts.timed),
        slow=total(counts.slow),
        unlisted=total(counts.unlisted),
    )


@dataclass(frozen=True)
class Evidence:
    """The figures behind a verdict, as of the tick that made the transition."""

    value: float | None = None  # observed failure rate in the window (None for volume rules)
    interval_low: float | None = None  # Wilson 95% interval of the failure rate
    interval_high: float | None = None
    baseline: float | None = None  # SLA failure rate the gateway is held to
    payments: int = 0  # final payments in the window
    failures: int = 0  # failed payments in the window, declines excluded
    # Declined payments (part of ``payments``) in the same minutes: the last
    # ``window_minutes`` before the tick.
    declines: int = 0
    # decline_rate: the gateway's usual share of declines for this time of the week.
    usual_decline_rate: float | None = None
    window_minutes: int = 0
    p_value: float | None = None
    expected_payments: float | None = None  # what volume rules expected in the window
    top_error_codes: tuple[tuple[str, int], ...] = ()
    sample_payment_ids: tuple[str, ...] = ()
    # The log search of each sample payment id (source.trace_url), in the same order.
    sample_payment_urls: tuple[str, ...] = ()
    statistic: float | None = None  # sequential test statistic (CUSUM, nats) at the tick
    threshold: float | None = None  # the value of ``statistic`` that fires, from the budget
    dispersion: float | None = None  # beta-binomial rho of the gateway's failures
    magnitude: float | None = None  # estimated failure rate since the change / baseline
    # Which dimension values hold the excess failures (source.columns.dimensions).
    attribution: Attribution | None = None
    # Money failed above the SLA (or missing volume) since the alert's start, per currency
    # (source.columns.amount); most money first.
    revenue_at_risk: tuple[Loss, ...] = ()

    @property
    def decline_rate(self) -> float | None:
        """Share of the window's final payments that were declined; None without payments."""
        return self.declines / self.payments if self.payments else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Back from ``dataclasses.asdict`` after a JSON round trip (the store, the outbox)."""
        fields = dict(data)
        fields["top_error_codes"] = tuple(tuple(pair) for pair in fields["top_error_codes"])
        fields["sample_payment_ids"] = tuple(fields["sample_payment_ids"])
        fields["sample_payment_urls"] = tuple(fields["sample_payment_urls"])
        fields["revenue_at_risk"] = tuple(
            Loss.from_dict(loss) for loss in fields["revenue_at_risk"]
        )
        if fields.get("attribution") is not None:
            fields["attribution"] = Attribution.from_dict(fields["attribution"])
        return cls(**fields)


@dataclass(frozen=True)
class Notification:
    """One alert transition to deliver to one receiver; JSON round-trips through the outbox."""

    event: Literal["firing", "resolved"]
    fingerprint: str  # stable per (rule, labels)
    idempotency_key: str  # fingerprint + transition; the same for every retry of this send
    rule: str  # sla_breach, outage, no_data, volume_drop, source_down
    severity: Literal["warning", "critical"]
    labels: dict[str, str]  # at least rule, severity and (except source_down) gateway
    summary: str  # one line a person reads first
    at: str  # ISO-8601 UTC time of the tick that made this transition
    since: str  # ISO-8601 UTC time the condition started (estimated)
    repeat: bool = False  # a reminder that a firing alert is still firing
    episode: str = ""  # ISO-8601 UTC time this episode of the alert started firing
    evidence: Evidence = field(default_factory=Evidence)
    backup_gateway: str | None = None
    links: tuple[str, ...] = ()
    # The labels its route groups by (the message's group); () where the receiver does not group.
    group_by: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Notification:
        data: dict[str, Any] = json.loads(text)
        evidence = Evidence.from_dict(data.pop("evidence"))
        data["links"] = tuple(data["links"])
        data["group_by"] = tuple(data["group_by"])
        return cls(evidence=evidence, **data)
