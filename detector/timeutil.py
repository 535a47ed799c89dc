"""Small time helpers shared by every layer: epoch minutes, UTC conversions, ISO text.

Everything inside the detector is timezone-aware UTC; databases get naive UTC (every
session is pinned to UTC) and people get ``YYYY-MM-DD HH:MM``.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = [
    "aware_utc",
    "ceil_minute",
    "epoch_minute",
    "floor_minute",
    "iso_z",
    "minute_start",
    "naive_utc",
    "short_utc",
]


def epoch_minute(moment: datetime) -> int:
    """Minutes since 1970-01-01 UTC, the bucket a timestamp falls in.

    >>> epoch_minute(datetime(1970, 1, 1, 0, 2, 59, tzinfo=UTC))
    2
    """
    return int(moment.timestamp() // 60)


def ceil_minute(moment: datetime) -> int:
    """The first minute bucket that starts at or after ``moment``.

    >>> ceil_minute(datetime(1970, 1, 1, 0, 2, 1, tzinfo=UTC))
    3
    """
    return -int(-moment.timestamp() // 60)


def minute_start(minute: int) -> datetime:
    """The aware UTC start of epoch minute ``minute``."""
    return datetime.fromtimestamp(minute * 60, tz=UTC)


def floor_minute(moment: datetime) -> datetime:
    """``moment`` truncated to the start of its minute (aware UTC)."""
    return minute_start(epoch_minute(moment))


def naive_utc(moment: datetime) -> datetime:
    """Naive UTC, as the databases store it; a naive ``moment`` is taken to be UTC already."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def aware_utc(moment: datetime) -> datetime:
    """Aware UTC from a naive UTC value read back from a database (aware ones converted)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_z(moment: datetime) -> str:
    """ISO-8601 with ``Z`` for UTC, as the JSON documents and receivers carry times.

    >>> iso_z(datetime(2024, 5, 1, 10, 0, tzinfo=UTC))
    '2024-05-01T10:00:00Z'
    """
    return moment.isoformat().replace("+00:00", "Z")


def short_utc(moment: datetime) -> str:
    """``2024-05-01 10:00``: a time for people (tables, pages), in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
