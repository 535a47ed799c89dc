"""What the volume rules (``no_data``, ``volume_drop``) share: their per-tick significance
level and the expectation from the traffic just before, used until a gateway has a week
of history."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detector.config import Config
from detector.rules.calibration import budget_shares

__all__ = ["mean_before", "rate_before", "volume_alpha"]


def volume_alpha(config: Config) -> float:
    """Each tick is one chance of a false alert: a volume rule's (or ``decline_rate``'s)
    share of the budget per tick."""
    return (
        config.detection.false_alerts
        / budget_shares(config)
        * (config.schedule.interval.total_seconds() / 60)
    )


def mean_before(
    counts: npt.NDArray[np.int64],
    stop: npt.NDArray[np.int64],
    lengths: tuple[int, ...],
    first: npt.ArrayLike = 0,
) -> npt.NDArray[np.float64]:
    """(lengths, *stop.shape): per row (the last axis of ``stop``), the mean count a minute
    over each length of columns before column ``stop``, none before column ``first`` (the
    window's beginning; fewer there, 0 where there are none)."""
    total = np.zeros((counts.shape[0], counts.shape[1] + 1))
    np.cumsum(counts, axis=1, out=total[:, 1:])
    start = np.maximum(stop[None, ...] - np.array(lengths).reshape(-1, *[1] * stop.ndim), first)
    rows = np.arange(counts.shape[0])
    span = stop[None, ...] - start
    sums = total[rows, stop][None, ...] - total[rows, start]
    means: npt.NDArray[np.float64] = np.divide(sums, span, out=np.zeros(span.shape), where=span > 0)
    return means


def rate_before(
    volume: npt.NDArray[np.int64],
    stop: npt.NDArray[np.int64],
    history: int,
    span: int,
    first: npt.ArrayLike = 0,
) -> npt.NDArray[np.float64]:
    """Per row, the payments a minute the volume rules expect without a week of history:
    the lower of the mean rates over the ``history`` and over the ``2 * span`` minutes
    before column ``stop`` (none before column ``first``, the window's beginning). Traffic
    falling into the night has its latest rate lower than its long one, so the evening
    decline does not look like a drop or a silence; traffic rising in the morning has its
    long rate lower, which errs towards a later alert."""
    lower: npt.NDArray[np.float64] = mean_before(
        volume, stop, (history, min(history, 2 * span)), first
    ).min(axis=0)
    return lower
