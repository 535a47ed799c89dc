"""The volume rules' history: payments per quarter hour of the last weeks, per gateway, and
what it says about the volume each tick should see (see :mod:`detector.stats.seasonal`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from detector.config import CalendarConfig
from detector.model import Counts
from detector.rules.quarter_hours import QuarterHourTable
from detector.rules.verdict import BoolArray
from detector.stats.seasonal import (
    HISTORY_WEEKS,
    SLOT_MINUTES,
    SLOTS_PER_HOUR,
    SLOTS_PER_WEEK,
    level_factor,
    same_local_slot,
    seasonal_profile,
    tail_matched_size,
    updated_profile,
)
from detector.timeutil import epoch_minute

__all__ = [
    "DISPERSION_HISTORY_DAYS",
    "DeclineBaseline",
    "Expectation",
    "HourlyExpectation",
    "QuarterHours",
    "Season",
    "VolumeHistory",
    "declared_scale",
    "local_offsets",
]


def declared_scale(
    calendar: CalendarConfig, first_slot: int, slots: int
) -> npt.NDArray[np.float64]:
    """Per quarter hour from epoch quarter hour ``first_slot``: the expected volume's factor
    (1 on an ordinary day, ``volume`` on a declared day, NaN on a declared day of unknown
    effect). Where declared days overlap, an unknown effect wins and factors multiply.

    >>> c = CalendarConfig.model_validate({"days": [{"date": "1970-01-02", "volume": 3}]})
    >>> declared_scale(c, 95, 3).tolist()
    [1.0, 3.0, 3.0]
    """
    scale = np.ones(slots)
    starts = (first_slot + np.arange(slots)) * SLOT_MINUTES
    for span in calendar.spans():
        inside = (starts >= epoch_minute(span.start)) & (starts < epoch_minute(span.end))
        scale[inside] *= np.nan if span.volume is None else span.volume
    return scale


def local_offsets(calendar: CalendarConfig, first_slot: int, slots: int) -> npt.NDArray[np.int64]:
    """Per quarter hour from epoch quarter hour ``first_slot``: the UTC offset of
    ``calendar.timezone`` in quarter hours (Europe/Berlin: 4 in winter, 8 in summer).

    >>> c = CalendarConfig.model_validate({"timezone": "Europe/Berlin"})
    >>> first = epoch_minute(datetime(2026, 10, 25, tzinfo=UTC)) // SLOT_MINUTES
    >>> local_offsets(c, first, 8).tolist()  # the clocks go back at 01:00 UTC
    [8, 8, 8, 8, 4, 4, 4, 4]
    """
    zone = ZoneInfo(calendar.timezone)
    # Offsets change on the hour (or the quarter hour in a few zones): one look-up per hour.
    hours = range((first_slot - 1) // SLOTS_PER_HOUR, (first_slot + slots) // SLOTS_PER_HOUR + 1)
    per_hour = np.array(
        [
            (
                zone.utcoffset(datetime.fromtimestamp(hour * 3600, UTC).astimezone(zone))
                or timedelta(0)
            )
            // timedelta(minutes=SLOT_MINUTES)
            for hour in hours
        ],
        dtype=np.int64,
    )
    hour_of_slot = (first_slot + np.arange(slots)) // SLOTS_PER_HOUR - hours.start
    offsets: npt.NDArray[np.int64] = per_hour[hour_of_slot]
    return offsets


@dataclass(frozen=True)
class Season:
    """What the volume history says about each gateway, computed once per hour."""

    first_slot: int  # epoch quarter hour of ``usual``'s first column
    usual: npt.NDArray[np.float64]  # (gateways, slots): usual payments per quarter hour
    level: npt.NDArray[np.float64]  # today's level against the usual
    size: npt.NDArray[np.float64]  # negative-binomial size of the quarter-hour noise
    weeks: npt.NDArray[np.int64]  # whole weeks of history
    levels: npt.NDArray[np.float64]  # the level at the start of every hour of the history
    seen: npt.NDArray[np.int64]  # column of each gateway's first known slot
    # Per column of ``usual``: the declared days' factor (1 ordinary, NaN unknown effect).
    scale: npt.NDArray[np.float64]


# Fewer days of quarter hours than this add little to the count window's minutes (at equal
# volume 300 quarter hours weigh as much as 300 minutes) and overlap them: the dispersion
# of such a gateway comes from its minutes alone.
DISPERSION_HISTORY_DAYS = 3


@dataclass(frozen=True)
class QuarterHours:
    """Final payments and failures per (gateway, quarter hour) of the history (views of the
    history's 32-bit cells: a quarter hour's count fits, and no copy is held)."""

    payments: npt.NDArray[np.int32]
    failures: npt.NDArray[np.int32]
    enough: BoolArray  # at least DISPERSION_HISTORY_DAYS of history


@dataclass(frozen=True)
class Expectation:
    """Seasonal expectation of the volume in each tick's last minutes, per gateway."""

    expected: npt.NDArray[np.float64]  # (ticks, gateways): payments expected; NaN without history
    size: npt.NDArray[np.float64]  # negative-binomial size
    weeks: npt.NDArray[np.int64]
    declared: BoolArray  # (ticks, gateways): the span touches a declared day
    held: BoolArray  # (ticks, gateways): ... one of unknown effect (no seasonal expectation)


@dataclass(frozen=True)
class DeclineBaseline:
    """Each gateway's usual decline share for the quarter hours of the current hour and of
    the hour before (:meth:`VolumeHistory.decline_baseline`)."""

    first_slot: int  # epoch quarter hour of ``usual``'s first column
    usual: npt.NDArray[np.float64]  # (gateways, 2 * SLOTS_PER_HOUR); NaN without a usable week
    seen: BoolArray  # the gateway had any decline in the weeks of history


# Counts up to this are exact in float32 (its 24-bit significand).
_FLOAT32_EXACT = 2**24
# Gateways fitted at once (about 150 KB of temporaries each with four weeks).
_SEASON_BLOCK = 256


# A quarter hour of the week is compared with the same quarter hours of the past weeks and
# this many either side of them: over 75 minutes the diurnal swing of the share is small,
# and a gateway of a few payments a minute has a few hundred of them a week to go on.
DECLINE_NEIGHBOURS = 2
# A past week with fewer final payments around the quarter hour says too little of its share.
DECLINE_MIN_WEEK_PAYMENTS = 30


OffsetArray = npt.NDArray[np.int64]

# Per gateway and hour the payments expected, and per gateway the negative-binomial size.
HourlyExpectation = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


class VolumeHistory:
    """Payment volume per quarter hour of the weeks before ``end_hour`` (aggregated by the
    database), and what the rules derive from it, each computed once for the hour.

    Parameters
    ----------
    end_hour
        The first epoch hour not included: the current, incomplete one.
    quarters
        The weeks of quarter hours before ``end_hour``, or the counts of them per (gateway,
        quarter hour; ``minute`` is the quarter's first minute).
    calendar
        The declared days: their expected volume is scaled (or unknown), and they are left
        out of what the other days learn from.
    weeks
        With counts, how many weeks to hold: the rules' ``HISTORY_WEEKS``, more for a longer
        chart (a table holds its own).
    previous
        The history of an earlier hour: the usual volume of the quarter hours whose weeks
        before did not change since is taken from it rather than computed again.
    """

    # Per gateway list: the history's first slot, the calendar's time zone, the ordinary
    # days' volume and the usual volume it gave (what the next hour's history starts from).
    _Profile = tuple[int, str, npt.NDArray[np.float32 | np.float64], npt.NDArray[np.float64]]

    def __init__(
        self,
        end_hour: int,
        quarters: QuarterHourTable | Counts,
        calendar: CalendarConfig | None = None,
        weeks: int = HISTORY_WEEKS,
        previous: VolumeHistory | None = None,
    ) -> None:
        self.end_hour = end_hour
        end_slot = end_hour * SLOTS_PER_HOUR
        if isinstance(quarters, Counts):
            slots = weeks * SLOTS_PER_WEEK
            quarters = QuarterHourTable.empty(end_slot, slots).updated(
                end_slot - slots, end_slot, quarters
            )
        if quarters.end_slot != end_slot:
            raise ValueError(f"the quarter hours end at {quarters.end_slot}, not {end_slot}")
        self.table = quarters
        self.weeks = quarters.slots // SLOTS_PER_WEEK
        self.calendar = calendar or CalendarConfig()
        self._seasons: dict[tuple[str, ...], Season] = {}
        self._profiles: dict[tuple[str, ...], VolumeHistory._Profile] = {}
        # Only the earlier hour's profiles are kept, never that history: no chain of hours.
        self._earlier = {} if previous is None else previous._profiles
        self._outcomes: dict[tuple[str, ...], QuarterHours] = {}
        self._slots: dict[tuple[str, ...], tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]] = {}
        self._expected: dict[tuple[tuple[str, ...], int], HourlyExpectation] = {}
        self._declines: dict[tuple[str, ...], DeclineBaseline] = {}
        self._calendar_columns: tuple[npt.NDArray[np.float64], OffsetArray | None] | None = None
        # no_data and volume_drop usually look at the same span (15 min): computed once a tick.
        self._last_span: tuple[tuple[object, ...], Expectation] | None = None

    @classmethod
    def hours_needed(cls) -> int:
        return HISTORY_WEEKS * SLOTS_PER_WEEK // SLOTS_PER_HOUR

    def season(self, gateways: list[str]) -> Season:
        key = tuple(gateways)
        if key not in self._seasons:
            self._seasons[key] = self._season(gateways)
        return self._seasons[key]

    def outcomes(self, gateways: list[str]) -> QuarterHours:
        """Each gateway's final payments and failures per quarter hour (for its dispersion)."""
        key = tuple(gateways)
        if key not in self._outcomes:
            matrices, seen = self._per_slot(gateways)
            payments, failures = matrices[1], matrices[2]
            days = (payments.shape[1] - seen) / (24 * SLOTS_PER_HOUR)
            self._outcomes[key] = QuarterHours(payments, failures, days >= DISPERSION_HISTORY_DAYS)
        return self._outcomes[key]

    def decline_baseline(self, gateways: list[str]) -> DeclineBaseline:
        """Each gateway's usual decline share for each quarter hour of the current hour and
        the hour before: per past week, the share of its final payments declined over the
        same quarter hour of the week (local time, ``calendar.timezone``) and the
        ``DECLINE_NEIGHBOURS`` either side; then the median over the weeks, so that one
        week's wave does not lift the usual share. The declared days' quarter hours are left
        out of every week, so that a sale day's declines do not become the usual share."""
        key = tuple(gateways)
        if key not in self._declines:
            matrices, _ = self._per_slot(gateways)
            payments, declines = matrices[1], matrices[3]
            slots = payments.shape[1]
            scale, offsets = self._calendar()
            first_slot = self.end_hour * SLOTS_PER_HOUR - SLOTS_PER_HOUR
            # (quarter hours, weeks, neighbours): the history's columns of each comparison.
            own = slots - SLOTS_PER_HOUR + np.arange(2 * SLOTS_PER_HOUR)
            weeks = np.arange(1, max(self.weeks, 1) + 1)
            same = same_local_slot(own[:, None], weeks[None, :], offsets)
            near = np.arange(-DECLINE_NEIGHBOURS, DECLINE_NEIGHBOURS + 1)
            columns = same[:, :, None] + near[None, None, :]
            clipped = np.clip(columns, 0, max(slots - 1, 0))
            ordinary = scale[:slots] == 1.0  # NaN (a day of unknown effect) is not 1 either
            inside = (columns >= 0) & (columns < slots) & ordinary[clipped]
            week_payments = np.where(inside, payments[:, clipped], 0.0).sum(axis=3)
            week_declines = np.where(inside, declines[:, clipped], 0.0).sum(axis=3)
            usable = week_payments >= DECLINE_MIN_WEEK_PAYMENTS
            shares = np.where(usable, week_declines / np.maximum(week_payments, 1.0), np.nan)
            usual = np.full(shares.shape[:2], np.nan)
            known = usable.any(axis=2)
            usual[known] = np.nanmedian(shares[known], axis=1)
            self._declines[key] = DeclineBaseline(
                first_slot, usual, np.asarray(declines.sum(axis=1) > 0, dtype=bool)
            )
        return self._declines[key]

    def _calendar(self) -> tuple[npt.NDArray[np.float64], OffsetArray | None]:
        """Per column of the history, of the current hour and one beyond: the declared days'
        factor (:func:`declared_scale`) and the local clock's UTC offset
        (:func:`local_offsets`; None in UTC, where the weeks are matched as they are)."""
        if self._calendar_columns is None:
            slots = self.table.slots
            first, columns = self.end_hour * SLOTS_PER_HOUR - slots, slots + SLOTS_PER_HOUR + 1
            offsets = None
            if self.calendar.timezone != "UTC":
                offsets = local_offsets(self.calendar, first, columns)
            self._calendar_columns = (declared_scale(self.calendar, first, columns), offsets)
        return self._calendar_columns

    def span_expectation(
        self, gateways: list[str], end: npt.NDArray[np.int64], minutes: int
    ) -> Expectation:
        """Per tick and gateway: the payments expected in the ``minutes`` before each epoch
        minute of ``end`` (the ticks' window ends)."""
        key = (tuple(gateways), end.tobytes(), minutes)
        if self._last_span is None or self._last_span[0] != key:
            self._last_span = (key, self._span_expectation(gateways, end, minutes))
        return self._last_span[1]

    def _span_expectation(
        self, gateways: list[str], end: npt.NDArray[np.int64], minutes: int
    ) -> Expectation:
        season = self.season(gateways)
        first = end - minutes
        first_slot = first // SLOT_MINUTES
        slots = (end - 1) // SLOT_MINUTES - first_slot + 1  # quarter hours each span touches
        usual = np.zeros((end.size, len(gateways)))
        declared = np.zeros(end.size, dtype=bool)
        held = np.zeros(end.size, dtype=bool)
        last_column = season.usual.shape[1] - 1
        for j in range(int(slots.max())):
            # Each quarter hour the span touches adds its usual volume times its share of the
            # span, one term at a time: an hour of ticks sums in the same order as one tick.
            slot = first_slot + j
            overlap = np.minimum((slot + 1) * SLOT_MINUTES, end) - np.maximum(
                slot * SLOT_MINUTES, first
            )
            column = np.minimum(np.maximum(slot - season.first_slot, 0), last_column)
            scale = season.scale[column]
            share = (season.usual[:, column] * scale).T * (overlap / SLOT_MINUTES)[:, None]
            touched = j < slots
            if j >= slots.min():  # some spans touch fewer quarter hours: they add nothing
                share = np.where(touched[:, None], share, 0.0)
            usual = usual + share
            declared |= touched & (scale != 1.0)
            held |= touched & np.isnan(scale)
        expected = usual * season.level
        known = (season.weeks >= 1) & np.isfinite(expected)
        shape = expected.shape
        return Expectation(
            np.where(known, expected, np.nan),
            season.size,
            season.weeks,
            np.broadcast_to(declared[:, None], shape),
            np.broadcast_to(held[:, None], shape),
        )

    def _per_slot(self, gateways: list[str]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """(volume/payments/failures, gateways, slots) over the history, 0 where a quarter
        hour had no row, and the column of each gateway's first row (for the hour)."""
        key = tuple(gateways)
        if key not in self._slots:
            self._slots[key] = self.table.per_slot(gateways)
        return self._slots[key]

    def _season(self, gateways: list[str]) -> Season:
        slots = self.weeks * SLOTS_PER_WEEK
        first = self.end_hour * SLOTS_PER_HOUR - slots
        matrices, seen = self._per_slot(gateways)
        weeks = (slots - seen) // SLOTS_PER_WEEK
        scale, offsets = self._calendar()
        scale = scale[: slots + SLOTS_PER_HOUR]
        key = tuple(gateways)
        earlier = self._earlier.get(key)
        self._earlier = {}  # used once: the earlier hour's arrays are not held beyond it
        if earlier is not None and (
            earlier[1] != self.calendar.timezone or not 0 <= first - earlier[0] < slots
        ):
            earlier = None
        # What the next hour compares its volume with: float32 where every count is exact in
        # it (it then compares equal exactly where float64 does), at half the bytes.
        exact = matrices[0].max(initial=0) < _FLOAT32_EXACT
        held = np.empty((len(gateways), slots), dtype=np.float32 if exact else np.float64)
        usual = np.empty((len(gateways), slots + SLOTS_PER_HOUR))
        hour_starts = np.arange(0, slots + 1, SLOTS_PER_HOUR)
        level = np.empty((len(gateways), hour_starts.size))
        size = np.empty(len(gateways))
        # Each gateway's fit is its own: a block of gateways at a time keeps the fit's float
        # copies of the weeks (several per gateway) from growing with the gateways.
        for start in range(0, len(gateways), _SEASON_BLOCK):
            rows = slice(start, start + _SEASON_BLOCK)
            volume = matrices[0, rows].astype(np.float64)
            # Before a gateway's first payment its volume is unknown, not zero.
            volume[np.arange(slots)[None, :] < seen[rows, None]] = np.nan
            # Declared days teach the other days nothing: the profile, the level and the
            # noise are learnt on the ordinary days alone.
            ordinary = np.where(scale[:slots] == 1.0, volume, np.nan)
            # The usual volume of every slot of the history and of the current hour.
            usual[rows] = self._profile(first, ordinary, offsets, earlier, rows)
            # The level is measured at the start of each hour: what the rules use during it.
            block_level = level_factor(ordinary, usual[rows, :slots], hour_starts)
            if self.calendar.days:
                # Within a declared day of known effect the level also counts the day's own
                # hours against the scaled expectation, so that a factor declared too high
                # or too low is corrected within hours; the next day does not see them.
                own = level_factor(volume / scale[:slots], usual[rows, :slots], hour_starts)
                before = np.concatenate([[1.0], scale[:slots]])[hour_starts]
                within = np.isfinite(before) & (before != 1.0) & (scale[hour_starts] == before)
                block_level = np.where(within[None, :], own, block_level)
            level[rows] = block_level
            # The noise: every past slot against the expectation the rule had for it then
            # (each hour's level is the one measured at its start), fitted on the lower tail.
            replayed = usual[rows, :slots] * np.repeat(block_level[:, :-1], SLOTS_PER_HOUR, axis=1)
            size[rows] = tail_matched_size(ordinary, replayed)
            held[rows] = ordinary
        self._profiles[key] = (first, self.calendar.timezone, held, usual)
        return Season(first, usual, level[:, -1], size, weeks, level, seen, scale)

    def _profile(
        self,
        first: int,
        ordinary: npt.NDArray[np.float64],
        offsets: npt.NDArray[np.int64] | None,
        earlier: VolumeHistory._Profile | None,
        rows: slice,
    ) -> npt.NDArray[np.float64]:
        """The usual volume of every slot of the history and of the current hour of the
        gateways ``rows``, from the earlier hour's (``earlier``, of the same gateways) where
        given: only what changed is computed."""
        slots = ordinary.shape[1]
        if earlier is None:
            return seasonal_profile(ordinary, np.arange(slots + SLOTS_PER_HOUR), offsets)
        shift = first - earlier[0]
        before = earlier[2][rows, shift:]
        kept = before.shape[1]
        same = (ordinary[:, :kept] == before) | (np.isnan(ordinary[:, :kept]) & np.isnan(before))
        changed = np.ones(slots, dtype=bool)
        changed[:kept] = ~same.all(axis=0)
        return updated_profile(ordinary, earlier[3][rows], shift, changed, offsets)

    # --- for the status page's expected band ------------------------------------------------

    def expected_hours(self, gateways: list[str], first_hour: int) -> HourlyExpectation:
        """Payments the volume rules expected in each hour from ``first_hour`` (epoch hours,
        at most a week back) to the current one, as they expected them during that hour:
        the usual volume of its quarter hours (scaled on declared days) times the level
        measured at its start. NaN where a gateway had less than a week of history then, or
        on a declared day of unknown effect. Also each gateway's
        negative-binomial size.

        The current hour's value is what the rules use now. (An earlier hour sees at most
        the weeks before it that this history holds.)
        """
        key = (tuple(gateways), first_hour)
        if key not in self._expected:
            self._expected[key] = self._expected_hours(gateways, first_hour)
        return self._expected[key]

    def _expected_hours(self, gateways: list[str], first_hour: int) -> HourlyExpectation:
        season = self.season(gateways)
        # Column of each hour's first slot, from first_hour to the current hour.
        start = np.arange(first_hour, self.end_hour + 1) * SLOTS_PER_HOUR - season.first_slot
        slots = start[:, None] + np.arange(SLOTS_PER_HOUR)
        # During an hour the rule expected its slots' usual volume times the level measured
        # at the hour's start (as the noise fit replays it), once it had a week of history.
        scaled = season.usual[:, slots] * season.scale[slots]
        expected = scaled.sum(axis=2) * season.levels[:, start // SLOTS_PER_HOUR]
        week_then = start[None, :] - season.seen[:, None] >= SLOTS_PER_WEEK
        return np.where(week_then, expected, np.nan), season.size
