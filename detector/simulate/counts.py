"""Per-minute counts of simulated traffic, without a row per payment."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from detector.model import Counts
from detector.simulate.gateways import DEFAULT_GATEWAYS, GatewayProfile
from detector.simulate.incidents import Incident
from detector.simulate.seasons import Seasons
from detector.simulate.traffic import (
    US_PER_DAY,
    US_PER_MINUTE,
    checked_arguments,
    days_touched,
    draw_day_counts,
    epoch_us,
)

__all__ = ["MinuteCounts", "minute_counts"]


@dataclass(frozen=True)
class MinuteCounts:
    """Simulated per-minute counts of each gateway, without materialising the payments.

    Row ``g`` of each matrix is ``gateways[g]``; column ``j`` is the UTC minute that starts
    ``j`` minutes after ``start``.
    """

    gateways: tuple[str, ...]
    start: datetime  # naive UTC, a whole minute
    payments: npt.NDArray[np.int64]  # final payments: failed + declined + succeeded
    failures: npt.NDArray[np.int64]  # declines excluded
    pending: npt.NDArray[np.int64]
    declines: npt.NDArray[np.int64]
    # The p95 latency (ms) of each minute's payments: the share slower than a threshold is
    # simulate.latency.slow_share(threshold, p95).
    latency_p95: npt.NDArray[np.float64]

    def to_counts(self, slow: npt.NDArray[np.int64] | None = None) -> Counts:
        """The rows a payments source returns for these minutes: sorted by minute, none empty.

        ``slow``: the final payments of each minute slower than a latency threshold (see
        ``latency_p95``); every final payment has a latency.

        >>> counts = minute_counts(datetime(2026, 11, 20, 18), datetime(2026, 11, 20, 18, 5))
        >>> rows = counts.to_counts()
        >>> int(rows.payments.sum()) == int(counts.payments.sum())
        True
        >>> bool((rows.minute[1:] >= rows.minute[:-1]).all())
        True
        """
        volume = self.payments + self.pending
        minute, row = np.nonzero(volume.T)
        first = epoch_us(self.start) // US_PER_MINUTE
        return Counts(
            np.array(self.gateways, dtype=object)[row],
            minute.astype(np.int64) + first,
            self.payments[row, minute],
            self.failures[row, minute],
            volume[row, minute],
            declines=self.declines[row, minute],
            timed=self.payments[row, minute] if slow is not None else np.zeros(0, np.int64),
            slow=slow[row, minute] if slow is not None else np.zeros(0, np.int64),
        )


def minute_counts(
    start: datetime,
    end: datetime,
    gateways: Sequence[GatewayProfile] = DEFAULT_GATEWAYS,
    incidents: Iterable[Incident] = (),
    seed: int = 0,
    pending_share: float = 0.002,
    seasons: Seasons | None = None,
) -> MinuteCounts:
    """Per-minute payments, failures, pending payments and declines of the minutes starting in
    ``[start, end)``: the counts of the payments `generate` draws with the same arguments.

    Costs what the number of minutes costs, not the number of payments, so months of
    busy gateways fit in memory (benchmarks/detection.py replays them this way).
    ``seasons`` shapes the traffic by a local calendar (DST, growth, special days) instead
    of the UTC day and week.

    >>> counts = minute_counts(datetime(2026, 11, 20), datetime(2026, 11, 21), seed=1)
    >>> counts.gateways[0], counts.payments.shape
    ('stripe', (5, 1440))
    """
    start, end, traffic = checked_arguments(
        start, end, gateways, incidents, seed, pending_share, seasons
    )
    first = -(-epoch_us(start) // US_PER_MINUTE)
    stop = max(-(-epoch_us(end) // US_PER_MINUTE), first)
    start_us, end_us = first * US_PER_MINUTE, stop * US_PER_MINUTE
    parts: list[list[npt.NDArray[np.int64]]] = [[], [], [], []]
    latency: list[npt.NDArray[np.float64]] = []
    for day_us in days_touched(start_us, end_us):
        draw = draw_day_counts(day_us, traffic)
        lo = max(start_us - day_us, 0) // US_PER_MINUTE
        hi = min(end_us - day_us, US_PER_DAY) // US_PER_MINUTE
        matrices = (draw.payments, draw.failures, draw.pending, draw.declines)
        for part, matrix in zip(parts, matrices, strict=True):
            part.append(matrix[:, lo:hi])
        latency.append(draw.latency_p95[:, lo:hi])
    payments, failures, pending, declines = (
        np.concatenate(part, axis=1)
        if part
        else np.zeros((len(traffic.gateways), 0), dtype=np.int64)
        for part in parts
    )
    return MinuteCounts(
        tuple(g.name for g in traffic.gateways),
        datetime(1970, 1, 1) + timedelta(microseconds=start_us),
        payments,
        failures,
        pending,
        declines,
        np.concatenate(latency, axis=1)
        if latency
        else np.zeros((len(traffic.gateways), 0), dtype=np.float64),
    )
