"""Declared special days: the ``calendar:`` section (sale days, holidays, campaigns).

A declared day runs from its local midnight to the next in ``calendar.timezone``. With a
``volume`` the volume rules expect that multiple of the usual traffic; without one its
effect is unknown and they open no alert that day. Either way the day is left out of what
later days learn from.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Self
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationInfo, field_validator, model_validator

from detector.config.base import FrozenModel, TimeZone

__all__ = ["CalendarConfig", "CalendarDay", "DeclaredSpan"]


class CalendarDay(FrozenModel):
    """One declared day (``date:``) or run of days (``from:`` .. ``to:``, both included).

    >>> CalendarDay.model_validate({"name": "Christmas", "date": "2026-12-25", "volume": 0.3}).first
    datetime.date(2026, 12, 25)
    """

    name: str = ""
    on: date | None = Field(default=None, alias="date")
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None
    # Expected volume as a multiple of the usual; None: unknown, the volume rules hold off.
    volume: float | None = Field(default=None, gt=0)

    @field_validator("from_")
    @classmethod
    def _not_with_date(cls, value: date | None, info: ValidationInfo) -> date | None:
        if value is not None and info.data.get("on") is not None:
            raise ValueError("give either date: or from: and to:, not both")
        return value

    @field_validator("to")
    @classmethod
    def _after_from(cls, value: date | None, info: ValidationInfo) -> date | None:
        if "from_" not in info.data:
            return value  # from: itself is wrong, and reported
        start = info.data["from_"]
        if value is not None and start is None:
            raise ValueError("to: needs from: (or write one day as date:)")
        if value is not None and start is not None and value < start:
            raise ValueError(f"{value} comes before from: {start}")
        return value

    @model_validator(mode="after")
    def _one_span(self) -> Self:
        if self.on is None and self.from_ is None:
            raise ValueError("give date: (one day) or from: and to: (a run of days)")
        if self.from_ is not None and self.to is None:
            raise ValueError("from: needs to: as well (the last day, included)")
        return self

    @property
    def first(self) -> date:
        return self.on if self.on is not None else self.from_  # type: ignore[return-value]

    @property
    def last(self) -> date:
        return self.on if self.on is not None else self.to  # type: ignore[return-value]


class DeclaredSpan(FrozenModel):
    """A declared day's time in UTC: ``[start, end)``, and its volume factor (None: unknown)."""

    name: str
    start: datetime
    end: datetime
    volume: float | None


class CalendarConfig(FrozenModel):
    """The declared days and the time zone of their dates."""

    timezone: TimeZone = "UTC"
    days: tuple[CalendarDay, ...] = ()

    def spans(self) -> tuple[DeclaredSpan, ...]:
        """Each declared day's local midnight to midnight, in UTC.

        >>> c = CalendarConfig.model_validate(
        ...     {"timezone": "Europe/Berlin", "days": [{"date": "2026-12-25", "volume": 0.3}]}
        ... )
        >>> span = c.spans()[0]
        >>> span.start.isoformat(), span.end.isoformat()
        ('2026-12-24T23:00:00+00:00', '2026-12-25T23:00:00+00:00')
        """
        zone = ZoneInfo(self.timezone)

        def midnight(day: date) -> datetime:
            return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)

        return tuple(
            DeclaredSpan(
                name=day.name,
                start=midnight(day.first),
                end=midnight(day.last + timedelta(days=1)),
                volume=day.volume,
            )
            for day in self.days
        )
