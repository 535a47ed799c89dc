"""Traffic shaped by a local calendar: the day and week in a time zone with DST, growth from
week to week, and special days (sale days, holidays) that multiply a whole local day.

Without :class:`Seasons` the simulator keeps its UTC shape (see :mod:`detector.simulate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

__all__ = ["Seasons"]

_MINUTES_PER_DAY = 1440
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class Seasons:
    """The shape of each gateway's traffic in local time.

    Parameters
    ----------
    timezone : str
        IANA zone whose local clock the day's curve and the week follow (DST included).
    weekdays : tuple of 7 floats
        Volume of each local weekday, Monday first, against ``per_minute``.
    growth_per_week : float
        Relative growth of the volume a week (0.02: 2%), compounded from ``origin``.
    origin : datetime
        Naive UTC instant at which the growth factor is 1.
    special_days : tuple of (date, float)
        Local dates whose whole day's volume is multiplied by the factor.

    >>> s = Seasons("Europe/Berlin", special_days=((date(2026, 11, 27), 3.0),))
    >>> curve = np.ones(1440)
    >>> day = s.day_shape(datetime(2026, 11, 27), curve)
    >>> # 00:00 UTC is 01:00 on the sale day in Berlin; 23:00 UTC is Saturday there
    >>> float(day[0]), float(day[23 * 60])
    (3.0, 0.8)
    """

    timezone: str = "UTC"
    weekdays: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.8)
    growth_per_week: float = 0.0
    origin: datetime = _EPOCH
    special_days: tuple[tuple[date, float], ...] = field(default=())

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # an unknown zone fails here, not on the first day drawn
        if len(self.weekdays) != 7 or min(self.weekdays) < 0:
            raise ValueError("weekdays: give 7 non-negative factors, Monday first")
        if self.growth_per_week <= -1:
            raise ValueError("growth_per_week must be above -1")
        if any(factor < 0 for _, factor in self.special_days):
            raise ValueError("special_days: factors must be non-negative")

    def day_shape(self, day: datetime, curve: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Relative volume of each minute of the UTC day starting at naive ``day``: the
        daily ``curve`` (1440 values) read at the local minute, times the local weekday's
        factor, the growth and the special day's factor."""
        zone = ZoneInfo(self.timezone)
        # Offsets change only on the hour: one look-up per UTC hour.
        offsets = np.array(
            [
                (
                    zone.utcoffset((day + timedelta(hours=h)).replace(tzinfo=UTC).astimezone(zone))
                    or timedelta(0)
                )
                // timedelta(minutes=1)
                for h in range(24)
            ]
        )
        local = np.arange(_MINUTES_PER_DAY) + np.repeat(offsets, 60)
        local_day = np.floor_divide(local, _MINUTES_PER_DAY)  # -1, 0 or 1: which local date
        minute_of_day = local - local_day * _MINUTES_PER_DAY
        dates = [day.date() + timedelta(days=int(d)) for d in (-1, 0, 1)]
        weekday = np.array([self.weekdays[d.weekday()] for d in dates])[local_day + 1]
        special = dict(self.special_days)
        factor = np.array([special.get(d, 1.0) for d in dates])[local_day + 1]
        minutes = (day - self.origin) / timedelta(minutes=1) + np.arange(_MINUTES_PER_DAY)
        growth = (1.0 + self.growth_per_week) ** (minutes / (7 * _MINUTES_PER_DAY))
        shape: npt.NDArray[np.float64] = curve[minute_of_day] * weekday * factor * growth
        return shape
