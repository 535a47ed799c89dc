"""Seasonal volume expectation and the negative-binomial noise around it (vectorised, no I/O).

Volumes are payments per quarter hour (a "slot"), one row per series, oldest first, NaN
before a series' first payment (unknown, not zero). A slot's usual volume is the robust mean
(the median; with 4 weeks, the mean of the middle two) of the same slot of the week over up
to 4 earlier weeks (at the same local time, for traffic that follows a clock with DST),
averaged with its two neighbouring slots; today's level is how the last three hours compared
with their usual volume. The noise around that expectation is a negative binomial whose size
is fitted to the lower tail of the series' own history, replayed through the same
expectation.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = [
    "DAY_SLOTS",
    "DEFAULT_SIZE",
    "HISTORY_WEEKS",
    "SLOTS_PER_HOUR",
    "SLOTS_PER_WEEK",
    "SLOT_MINUTES",
    "TAIL",
    "level_factor",
    "negative_binomial_cdf",
    "same_local_slot",
    "seasonal_profile",
    "tail_matched_size",
    "updated_profile",
]

FloatArray = npt.NDArray[np.float64]
SLOT_MINUTES = 15
SLOTS_PER_HOUR = 60 // SLOT_MINUTES
SLOTS_PER_WEEK = 7 * 24 * SLOTS_PER_HOUR
HISTORY_WEEKS = 4
# Today's level is measured over the last three hours, and kept within a factor of two so
# that a drop does not become its own expectation.
LEVEL_SLOTS = 3 * SLOTS_PER_HOUR
LEVEL_RANGE = (0.5, 2.0)
# A quiet gateway's three hours hold few payments: its level is shrunk towards 1 as if this
# many payments had been seen exactly at the usual rate.
LEVEL_PRIOR_PAYMENTS = 20.0
# The size is fitted so that at most this share of the history's slots fall below their own
# quantile at this level: deep enough to be about the tail, shallow enough to be counted
# (20 slots out of 3 weeks).
TAIL = 0.01
# Sizes tried (octaves: a hair more dispersion than needed errs towards fewer alerts), and the
# size used until a day of history can be replayed (quarter-hour swings of about 22%).
SIZES = 2.0 ** np.arange(0, 11)
DEFAULT_SIZE = 20.0
DAY_SLOTS = 24 * SLOTS_PER_HOUR
# Twice the share a day of 96 slots is allowed on average.
SURPRISES_PER_DAY = 2


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


def same_local_slot(
    columns: npt.NDArray[np.int64],
    weeks_back: npt.ArrayLike,
    offsets: npt.NDArray[np.int64] | None,
) -> npt.NDArray[np.int64]:
    """The column of the same slot of the week ``weeks_back`` weeks before each of
    ``columns`` (broadcast together): the same local time of the week where ``offsets`` give
    each column's UTC offset in slots, so that across a change of the clocks it is an hour
    more or less back.

    >>> offsets = np.repeat([8, 4], [SLOTS_PER_WEEK, SLOTS_PER_WEEK])  # summer, then winter
    >>> same_local_slot(np.array([SLOTS_PER_WEEK + 10]), 1, offsets).tolist()
    [6]
    """
    index = np.asarray(columns - np.asarray(weeks_back) * SLOTS_PER_WEEK, dtype=np.int64)
    if offsets is not None:
        last = offsets.size - 1
        index = index + offsets[np.clip(columns, 0, last)] - offsets[np.clip(index, 0, last)]
    return index


def _same_slot_mean(
    volume: FloatArray, columns: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64] | None
) -> FloatArray:
    """Median of each column's same slot of the week over the up to 4 earlier weeks known
    (the same local time of the week where ``offsets`` give each column's UTC offset)."""
    shape = (volume.shape[0], columns.size)
    count, total = np.zeros(shape), np.zeros(shape)
    high, low = np.full(shape, -np.inf), np.full(shape, np.inf)
    for weeks_back in range(1, HISTORY_WEEKS + 1):
        index = same_local_slot(columns, weeks_back, offsets)
        inside = (index >= 0) & (index < volume.shape[1])
        values = volume[:, np.clip(index, 0, volume.shape[1] - 1)]
        known = inside & np.isfinite(values)
        count += known
        total += np.where(known, values, 0.0)
        np.maximum(high, np.where(known, values, -np.inf), out=high)
        np.minimum(low, np.where(known, values, np.inf), out=low)
    # The median of at most four values without sorting: with 3 or 4, drop the extremes and
    # average the rest; with 1 or 2, average them.
    trimmed = count >= 3
    extremes = np.where(trimmed, high, 0.0) + np.where(trimmed, low, 0.0)
    median = (total - extremes) / np.maximum(np.where(trimmed, count - 2, count), 1)
    return np.asarray(np.where(count > 0, median, np.nan), dtype=np.float64)


def seasonal_profile(
    volume: FloatArray,
    columns: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64] | None = None,
) -> FloatArray:
    """Usual volume of each slot in ``columns`` (columns of ``volume``, possibly beyond it).

    The median over earlier weeks, averaged with the neighbouring slots' (where known) to
    halve the noise of a quiet gateway's quarter hours. NaN where no earlier week is known.
    ``offsets``, per column of ``volume`` and beyond, the local clock's UTC offset in slots:
    the weeks are then matched at the same local time (traffic that follows a clock with
    daylight saving time).

    >>> week = np.full(672, 10.0); v = np.concatenate([week, week * 3, week * 2])[None, :]
    >>> seasonal_profile(v, np.array([2016, 5])).tolist()
    [[20.0, nan]]
    """
    needed, where = np.unique(
        np.concatenate([columns - 1, columns, columns + 1]), return_inverse=True
    )
    usual = np.empty((volume.shape[0], columns.size))
    # Series are independent: a block at a time keeps the temporaries (several times the
    # history's size) from growing with the series.
    for rows in _blocks(volume.shape[0]):
        wide = _same_slot_mean(volume[rows], needed, offsets)[:, where.reshape(3, columns.size)]
        known = np.isfinite(wide)
        mean = np.where(known, wide, 0.0).sum(axis=1) / np.maximum(known.sum(axis=1), 1)
        usual[rows] = np.where(known[:, 1], mean, np.nan)
    return usual


# The clocks move a slot's same local time of the week by at most this many slots.
_CLOCK_MARGIN = 2 * SLOTS_PER_HOUR


def updated_profile(
    volume: FloatArray,
    earlier: FloatArray,
    shift: int,
    changed: npt.NDArray[np.bool_],
    offsets: npt.NDArray[np.int64] | None = None,
) -> FloatArray:
    """``seasonal_profile(volume, np.arange(earlier.shape[1]), offsets)``, recomputing only
    the columns whose inputs differ from those of ``earlier``: the same profile of a history
    that started ``shift`` slots earlier, where ``changed`` marks the columns of ``volume``
    that differ from that history's (the new quarter hours are always changed).

    A slot's usual volume only reads its own and its neighbours' same slot of earlier weeks:
    an hour on, only the slots a week (two, three, four) after a changed or dropped quarter
    hour, and the new ones, need it again; the rest are the same numbers.

    >>> rng = np.random.default_rng(5)
    >>> v = rng.poisson(20.0, (2, 4 * SLOTS_PER_WEEK + 4)).astype(float)
    >>> full = seasonal_profile(v, np.arange(4 * SLOTS_PER_WEEK + 8))
    >>> now = v[:, 4:]; changed = np.zeros(now.shape[1], dtype=bool); changed[-4:] = True
    >>> again = updated_profile(now, full[:, :-4], 4, changed)
    >>> bool(np.array_equal(again, seasonal_profile(now, np.arange(full.shape[1] - 4)),
    ...                     equal_nan=True))
    True
    """
    columns = earlier.shape[1]
    if not 0 <= shift < volume.shape[1]:
        return seasonal_profile(volume, np.arange(columns), offsets)
    # Sources by their column, from before the dropped quarter hours to past the history.
    lead = HISTORY_WEEKS * SLOTS_PER_WEEK + shift + 2 * _CLOCK_MARGIN + 2
    stale = np.zeros(lead + volume.shape[1] + _CLOCK_MARGIN + 1, dtype=bool)
    stale[lead - shift : lead] = True  # dropped: no longer inside the history
    stale[lead : lead + _CLOCK_MARGIN] = True  # the first columns (clipped clock offsets)
    stale[lead : lead + volume.shape[1]] |= changed
    # Near a stale source, for the clocks' offsets: a running count over a 2-margin span.
    count = np.concatenate([[0], np.cumsum(stale)])
    start = np.clip(np.arange(stale.size) - _CLOCK_MARGIN, 0, stale.size)
    stop = np.clip(np.arange(stale.size) + _CLOCK_MARGIN + 1, 0, stale.size)
    near = count[stop] - count[start] > 0
    # The same-slot means of columns -1 .. columns (each column averages its neighbours').
    targets = np.arange(-1, columns + 1)
    mean_stale = np.zeros(targets.size, dtype=bool)
    for weeks_back in range(1, HISTORY_WEEKS + 1):
        mean_stale |= near[targets - weeks_back * SLOTS_PER_WEEK + lead]
    redo = mean_stale[:-2] | mean_stale[1:-1] | mean_stale[2:]
    redo[columns - shift :] = True  # beyond the earlier profile
    usual = np.empty((volume.shape[0], columns))
    usual[:, : columns - shift] = earlier[:, shift:]
    again = np.flatnonzero(redo)
    if again.size:
        usual[:, again] = seasonal_profile(volume, again, offsets)
    return usual


def level_factor(
    volume: FloatArray, usual: FloatArray, boundaries: npt.NDArray[np.int64] | None = None
) -> FloatArray:
    """Today's level at each column boundary ``t`` in ``boundaries`` (default every one, 0 ..
    columns): how the ``LEVEL_SLOTS``
    slots before ``t`` compared with their usual volume, shrunk towards 1 and clipped; but
    never above the median of the week's days' levels (the 24 hours before ``t``, ``t`` minus
    a day, ... six days back). A day far above its usual (a sale, a campaign) thus does not
    raise the expectation of the night after it, nor does any single day stand for the
    week; a level below the week's (a drop in progress, a quiet day) is kept as measured.

    >>> v = np.full((1, 24), 20.0); u = np.full((1, 24), 10.0)
    >>> level_factor(v, u)[0, [0, 12, 24]].round(3).tolist()
    [1.0, 1.857, 1.857]
    >>> sale = np.concatenate([np.full(96 * 3, 10.0), np.full(96, 30.0)])[None, :]
    >>> level_factor(sale, np.full((1, 96 * 4), 10.0))[0, -1]  # the night after the sale
    np.float64(1.0)
    """
    if boundaries is None:
        boundaries = np.arange(volume.shape[1] + 1)
    usable = np.isfinite(volume) & np.isfinite(usual)
    # Running sums from a leading 0: any window's sum is a difference of two of their columns.
    actual, expected = (
        np.concatenate(
            [np.zeros((values.shape[0], 1)), np.cumsum(np.where(usable, values, 0.0), axis=1)],
            axis=1,
        )
        for values in (volume, usual)
    )
    recent = _window_level(actual, expected, boundaries, LEVEL_SLOTS)
    days_back = np.arange(7)[:, None] * DAY_SLOTS
    boundary = boundaries[None, :] - days_back  # (7, boundaries)
    needed, where = np.unique(np.maximum(boundary, 0), return_inverse=True)
    daily = _window_level(actual, expected, needed, DAY_SLOTS)
    inside = boundary >= DAY_SLOTS  # whole days only (the first day's boundaries use it)
    inside[0] = True
    # The (series, 7, boundaries) medians are the largest arrays of the seasonal fit: they
    # are taken a block of series at a time, so memory stays flat as series grow.
    level = np.empty(recent.shape)
    for rows in _blocks(volume.shape[0]):
        past = np.where(inside[None, :, :], daily[rows][:, where.reshape(boundary.shape)], np.nan)
        level[rows] = np.minimum(recent[rows], _median_of_known(past))
    return level


def _blocks(series: int, size: int = 256) -> list[slice]:
    """Consecutive blocks of at most ``size`` rows."""
    return [slice(start, min(start + size, series)) for start in range(0, series, size)]


def _median_of_known(values: FloatArray) -> FloatArray:
    """The median over axis 1 of the finite values, NaN where there is none: what
    ``np.nanmedian`` gives, without its per-column masked-array path (a hundred times slower
    on the 7 days of every slot boundary).

    >>> _median_of_known(np.array([[[1.0, 5.0], [np.nan, 2.0], [3.0, np.nan]]]))
    array([[2. , 3.5]])
    """
    ordered = np.sort(values, axis=1)  # NaN sorts last
    count = np.isfinite(values).sum(axis=1)
    last = values.shape[1] - 1
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[:, None, :], axis=1)
    high = np.take_along_axis(ordered, np.minimum(count // 2, last)[:, None, :], axis=1)
    middle = (low[:, 0] + high[:, 0]) / 2
    return np.asarray(np.where(count > 0, middle, np.nan), dtype=np.float64)


def _window_level(
    actual: FloatArray, expected: FloatArray, boundaries: npt.NDArray[np.int64], slots: int
) -> FloatArray:
    """At each of ``boundaries``: the ``slots`` slots before it against their usual volume
    (from running sums of both over the usable slots), shrunk towards 1 by
    ``LEVEL_PRIOR_PAYMENTS`` and clipped to ``LEVEL_RANGE``."""
    start = np.maximum(boundaries - slots, 0)  # the running sums start at 0
    seen = actual[:, boundaries] - actual[:, start]
    usual = expected[:, boundaries] - expected[:, start]
    level = (seen + LEVEL_PRIOR_PAYMENTS) / (usual + LEVEL_PRIOR_PAYMENTS)
    return np.asarray(np.clip(level, *LEVEL_RANGE), dtype=np.float64)


def tail_matched_size(observed: FloatArray, expected: FloatArray) -> FloatArray:
    """Per row, the largest negative-binomial size (in ``SIZES``) under which at most a
    ``TAIL`` share of the row's slots have ``P(X <= observed) < TAIL``.

    The variance alone would let a few deep dips hide among many ordinary swings; matching
    the lower tail, the side a drop is tested on, does not. Each day (96 slots counted back
    from the newest) counts at most ``SURPRISES_PER_DAY`` surprising slots, so that one bad
    day (a holiday, an incident, the one in progress) does not teach the rule that every day
    is bad. NaN expectations are left out; rows with less than a day of slots get
    ``DEFAULT_SIZE``.

    >>> rng = np.random.default_rng(3)
    >>> m = np.full((1, 2000), 60.0); x = rng.negative_binomial(8, 8 / 68, size=(1, 2000))
    >>> tail_matched_size(x.astype(float), m).tolist()
    [8.0]
    """
    series, columns = observed.shape
    usable = np.isfinite(observed) & np.isfinite(expected) & (expected > 0)
    slots = usable.sum(axis=1)
    allowed = np.floor(TAIL * slots)
    # Only slots 1.5 Poisson standard deviations below their expectation can fall in the 1%
    # tail of any negative binomial of that mean: the others are never counted.
    mean = np.where(usable, expected, 0.0)
    rows, where = np.nonzero(usable & (observed < mean - 1.5 * np.sqrt(mean)))
    x, m = observed[rows, where], expected[rows, where]
    # Nor can those outside the tail at the largest size (the thinnest tail) at any other.
    deep = negative_binomial_cdf(x, m, SIZES[-1]) < TAIL
    rows, where, x, m = rows[deep], where[deep], x[deep], m[deep]
    days = -(-columns // DAY_SLOTS)
    row_day = rows * days + (columns - 1 - where) // DAY_SLOTS
    # Surprising slots only grow in number as the size (the confidence in the expectation)
    # grows: bisect for the largest size whose count stays within the allowance.
    low = np.zeros(series, dtype=np.int64)
    high = np.full(series, SIZES.size - 1)
    while (open_ := low < high).any():
        middle = (low + high + 1) // 2
        surprising = negative_binomial_cdf(x, m, SIZES[middle[rows]]) < TAIL
        per_day = np.bincount(row_day, weights=surprising, minlength=series * days)
        count = np.minimum(per_day, SURPRISES_PER_DAY).reshape(series, days).sum(axis=1)
        ok = count <= allowed
        low = np.where(open_ & ok, middle, low)
        high = np.where(open_ & ~ok, middle - 1, high)
    return np.asarray(np.where(slots >= DAY_SLOTS, SIZES[low], DEFAULT_SIZE), dtype=np.float64)
