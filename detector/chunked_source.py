"""A replay's reads served from the payments a day at a time, with the weeks before per
quarter hour.

A replay's ticks read in time order, and each read reaches back at most a window (plus the
hour a replay computes at once) before the newest minute read so far. So the minutes are read
one chunk at a time (one ``GROUP BY gateway, minute`` each), and a chunk is dropped once no
read can reach back to it: memory holds the counts of the series over a chunk and the
look-back, whatever the range. The weeks before the range that only the seasonal volume
history needs are read per quarter hour, its grain, instead of per minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from detector.buckets import QUARTER_HOUR
from detector.model import Counts
from detector.source import Source
from detector.source_details import Amounts, Breakdown
from detector.timeutil import ceil_minute, epoch_minute, minute_start

__all__ = ["CHUNK_MINUTES", "ChunkedSource", "joined"]

log = logging.getLogger(__name__)

CHUNK_MINUTES = 24 * 60

Derivation = Callable[[Counts], Counts]

# The row-wise arrays of Counts, concatenated chunk after chunk.
_ROW_ARRAYS = (
    "gateway",
    "minute",
    "payments",
    "failures",
    "volume",
    "declines",
    "timed",
    "slow",
    "unlisted",
)


def joined(parts: list[Counts]) -> Counts:
    """Counts of consecutive, non-overlapping spans of minutes, as one (sorted by minute).

    >>> one = np.ones(1, dtype=np.int64)
    >>> a = Counts(np.array(["a"], dtype=object), one * 5, one, one * 0, one)
    >>> b = Counts(np.array(["b"], dtype=object), one * 7, one * 2, one, one * 2)
    >>> both = joined([a, Counts.empty(), b])
    >>> both.gateway.tolist(), both.minute.tolist(), both.failures.tolist()
    (['a', 'b'], [5, 7], [0, 1])
    """
    full = [part for part in parts if part.minute.size]
    if len(full) <= 1:
        return full[0] if full else (parts[0] if parts else Counts.empty())
    arrays: dict[str, Any] = {
        name: np.concatenate([getattr(part, name) for part in full]) for name in _ROW_ARRAYS
    }
    values = None
    if all(part.values is not None for part in full):
        values = np.concatenate([part.values for part in full if part.values is not None])
    details = [part.detail for part in full]
    detail = joined([d for d in details if d is not None]) if all(details) else None
    return Counts(**arrays, dimensions=full[0].dimensions, values=values, detail=detail)


@dataclass
class _Chunk:
    first: int  # epoch minutes [first, end)
    end: int
    counts: Counts
    derived: dict[Derivation, Counts] = field(default_factory=dict)


class ChunkedSource(Source):
    """The counts of ``[first_minute, end)`` read from ``source`` a chunk at a time, and the
    quarter hours of ``[quarters_from, first_minute)`` read once.

    Parameters
    ----------
    dimensions
        What each chunk is grouped by besides gateway and minute (the dimension series').
    keep_minutes
        How far before the newest minute asked for any read may reach: older chunks are
        dropped. A read reaching further back still gets its counts, read anew from
        ``source``.
    """

    def __init__(
        self,
        source: Source,
        dimensions: tuple[str, ...],
        quarters_from: int,
        first_minute: int,
        end: datetime,
        keep_minutes: int,
        chunk_minutes: int | None = None,
    ):
        self.source = source
        self.dimensions = dimensions
        self.quarters_from = quarters_from
        self.first_minute = first_minute
        self.end = end
        self.keep_minutes = keep_minutes
        self.chunk_minutes = chunk_minutes or CHUNK_MINUTES
        self._chunks: list[_Chunk] = []
        self._loaded_end = first_minute
        self._last = ceil_minute(end)  # after the range's last (maybe partial) minute
        self._quarters: Counts | None = None
        self.chunks_read = 0
        self.peak_rows = 0  # the most rows held at once, detail included

    # --- the minutes --------------------------------------------------------------------

    def derived(self, derive: Derivation) -> DerivedCounts:
        """The counts ``derive`` makes from this source's, row-wise per minute (the latency
        counts, the dimension series'), made once per chunk."""
        return DerivedCounts(self, derive)

    def between(
        self, first_minute: int, end_minute: int, derive: Derivation | None = None
    ) -> Counts:
        """The counts of ``[first_minute, end_minute)``, through ``derive`` if given."""
        self._load_until(end_minute)
        held = self._chunks[0].first if self._chunks else self._loaded_end
        parts = []
        if first_minute < min(held, end_minute):
            # Before what is held (a chunk dropped already, or before the range): read anew.
            parts.append(self._read_anew(first_minute, min(held, end_minute), derive))
        for chunk in self._chunks:
            if chunk.end > first_minute and chunk.first < end_minute:
                counts = chunk.counts
                if derive is not None:
                    if derive not in chunk.derived:
                        chunk.derived[derive] = derive(counts)
                    counts = chunk.derived[derive]
                parts.append(counts.between(first_minute, end_minute))
        return joined(parts)

    def _read_anew(self, first_minute: int, end_minute: int, derive: Derivation | None) -> Counts:
        log.debug("re-reading the minutes from %s", minute_start(first_minute))
        read = self.source.read(
            minute_start(first_minute), minute_start(end_minute), self.dimensions
        )
        counts = read.between(first_minute, end_minute)  # without the skipped rows, as chunks
        return counts if derive is None else derive(counts)

    def _load_until(self, end_minute: int) -> None:
        last = self._last
        target = min(end_minute, last)
        if self._loaded_end >= target:
            return
        while self._loaded_end < target:
            first = self._loaded_end
            stop = min(first + self.chunk_minutes, last)
            # The last chunk ends where the range does, even within a minute.
            until = self.end if stop == last else minute_start(stop)
            counts = self.source.read(minute_start(first), until, self.dimensions)
            # Served without the skipped rows: they are the live reads' business.
            self._chunks.append(_Chunk(first, stop, counts.between(first, stop)))
            self._loaded_end = stop
            self.chunks_read += 1
        oldest = target - self.keep_minutes
        self._chunks = [chunk for chunk in self._chunks if chunk.end > oldest]
        held = sum(
            c.counts.minute.size + (c.counts.detail.minute.size if c.counts.detail else 0)
            for c in self._chunks
        )
        self.peak_rows = max(self.peak_rows, held)

    # --- Source -------------------------------------------------------------------------

    def read(self, start: datetime, end: datetime, dimensions: tuple[str, ...] = ()) -> Counts:
        counts = self.between(epoch_minute(start), epoch_minute(end))
        if counts.detail is not None and counts.detail.dimensions != dimensions:
            return replace(counts, detail=None)  # aggregated for other dimensions
        return counts

    def quarter_hourly(self, start: datetime, end: datetime) -> Counts:
        first, stop = epoch_minute(start), epoch_minute(end)
        parts = []
        if first < self.first_minute:
            if self._quarters is None:  # the weeks before the range: read once
                self._quarters = self.source.quarter_hourly(
                    minute_start(self.quarters_from), minute_start(self.first_minute)
                )
            parts.append(self._quarters.between(first, min(stop, self.first_minute)))
        if stop > self.first_minute:
            minutes = self.between(max(first, self.first_minute), stop)
            parts.append(minutes.by_buckets(QUARTER_HOUR))
        return joined(parts)

    def evidence(
        self,
        gateway: str,
        start: datetime,
        end: datetime,
        limit: int = 5,
        series: Mapping[str, str] | None = None,
    ) -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
        return self.source.evidence(gateway, start, end, limit, series)

    def breakdown(self, gateway: str, start: datetime, end: datetime) -> Breakdown | None:
        return self.source.breakdown(gateway, start, end)

    def amounts(
        self,
        gateway: str,
        start: datetime,
        end: datetime,
        series: Mapping[str, str] | None = None,
    ) -> Amounts | None:
        return self.source.amounts(gateway, start, end, series)


@dataclass(frozen=True)
class DerivedCounts:
    """Counts derived from a :class:`ChunkedSource`'s, served like them."""

    source: ChunkedSource
    derive: Derivation

    def between(self, first_minute: int, end_minute: int) -> Counts:
        return self.source.between(first_minute, end_minute, self.derive)

    def derived(self, derive: Derivation) -> DerivedCounts:
        outer = self.derive
        return DerivedCounts(self.source, lambda counts: derive(outer(counts)))
