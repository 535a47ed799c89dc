"""The figures of the ``/volumes`` page: each business volume (``volumes:``) per day and per
hour over the last weeks, and the band the volume rules expect.

The counts come from one quarter-hourly ``GROUP BY`` per volume, read once an hour; the
expectation is the volume rules' own (:class:`~detector.rules.VolumeHistory`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from detector.alerts import Alert
from detector.config import VOLUME_LABEL, CalendarConfig
from detector.rules import VolumeHistory, series_name
from detector.rules.seasonal import local_offsets
from detector.service.history import BAND, band_quantile
from detector.stats.seasonal import SLOTS_PER_HOUR
from detector.timeutil import minute_start
from detector.volume_source import VolumeSource, volume_dimensions

__all__ = ["CHART_WEEKS", "VolumeCharts", "firing_volumes", "read_volume_charts"]

FloatArray = npt.NDArray[np.float64]

# How far back the page's charts reach.
CHART_WEEKS = 8
_HOURS = CHART_WEEKS * 7 * 24


@dataclass(frozen=True)
class VolumeCharts:
    """Per series of every volume: its events in each whole hour of the last
    ``CHART_WEEKS`` weeks from epoch hour ``first_hour``, and the band expected."""

    names: list[str]  # "sales", "visits (country=BR)"
    first_hour: int
    hourly: FloatArray  # (series, hours)
    low: FloatArray  # (series, hours): the band's quantiles; NaN without a week before
    high: FloatArray
    daily: FloatArray  # (series, days): whole local days (calendar.timezone) ending last
    daily_low: FloatArray
    daily_high: FloatArray
    last_day: datetime  # the start of the last whole day charted, UTC

    @property
    def end_hour(self) -> int:
        """The epoch hour the charts end before (the hour they were read in)."""
        return self.first_hour + int(self.hourly.shape[1])


def read_volume_charts(
    source: VolumeSource, calendar: CalendarConfig, end_hour: int
) -> VolumeCharts:
    """The charts' figures for the whole hours before epoch hour ``end_hour``: one read of
    ``CHART_WEEKS`` weeks and the week before them (the first hours' expectation learns
    from it). Raises SourceError."""
    weeks = CHART_WEEKS + 1
    start = (end_hour - weeks * 7 * 24) * 60
    counts = source.quarter_hourly(minute_start(start), minute_start(end_hour * 60))
    names = sorted(set(counts.gateway.tolist()))
    history = VolumeHistory(end_hour, counts, calendar, weeks=weeks)
    first_hour = end_hour - _HOURS
    expected, size = history.expected_hours(names, first_hour)
    expected = expected[:, :_HOURS]  # the current hour is not charted yet
    hourly = np.zeros((len(names), _HOURS))
    rows = pd.Index(names).get_indexer(counts.gateway)
    column = counts.minute // 60 - first_hour
    keep = (column >= 0) & (column < _HOURS)
    np.add.at(hourly, (rows[keep], column[keep]), counts.volume[keep])
    low, high = (band_quantile(q, expected, size[:, None]) for q in BAND)
    # Whole local days: the calendar's offset now, in hours, decides where a day begins.
    offset = int(local_offsets(calendar, end_hour * SLOTS_PER_HOUR, 1)[0]) // SLOTS_PER_HOUR
    skip = (first_hour + offset) % 24 and 24 - (first_hour + offset) % 24
    days = (_HOURS - skip) // 24
    whole = slice(skip, skip + days * 24)

    def per_day(values: FloatArray) -> FloatArray:
        day: FloatArray = values[:, whole].reshape(len(names), days, 24).sum(axis=2)
        return day

    day_expected = per_day(expected)  # NaN where any hour of the day has no expectation
    # A day's count as negative binomial with the hours' size summed (exact when the
    # hours share one success probability, close enough for a band).
    daily_low, daily_high = (band_quantile(q, day_expected, 24 * size[:, None]) for q in BAND)
    last_day = minute_start((first_hour + skip + (days - 1) * 24) * 60)
    return VolumeCharts(
        names,
        first_hour,
        hourly,
        low,
        high,
        per_day(hourly),
        daily_low,
        daily_high,
        last_day,
    )


def firing_volumes(alerts: list[Alert]) -> dict[str, str]:
    """Per volume series with firing alerts (named as the charts name it): their rules.

    >>> from datetime import UTC, datetime
    >>> from detector.model import Evidence
    >>> now = datetime(2026, 11, 20, tzinfo=UTC)
    >>> labels = [{"rule": r, "volume": "visits", "country": "BR"} for r in ("volume_drop",
    ...           "no_data")]
    >>> firing_volumes([Alert(r["rule"], r, "firing", "warning", "", now, now, now, Evidence())
    ...                 for r in labels])
    {'visits (country=BR)': 'no_data, volume_drop'}
    """
    rules: dict[str, list[str]] = {}
    for alert in alerts:
        if alert.state == "firing" and VOLUME_LABEL in alert.labels:
            by = {k: v for k, v in volume_dimensions(alert.labels).items() if k != "rule"}
            rules.setdefault(series_name(alert.labels[VOLUME_LABEL], by), []).append(alert.rule)
    return {name: ", ".join(sorted(found)) for name, found in rules.items()}
