"""The weeks of payments per (gateway, quarter hour) that the volume rules learn from, kept
as numpy arrays and brought up to date by reading only the quarter hours since the last
read (and the recent ones that late rows may still change), never the whole weeks again.

An hour of it packs into a few bytes per gateway (:meth:`QuarterHourTable.pack_hour`), so
that the state store can keep it and a restarted daemon reads back its weeks instead of
aggregating them anew.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from detector.model import Counts
from detector.stats.seasonal import HISTORY_WEEKS, SLOT_MINUTES, SLOTS_PER_HOUR, SLOTS_PER_WEEK

__all__ = ["HISTORY_SLOTS", "QuarterHourRead", "QuarterHourTable", "reread_slots"]

HISTORY_SLOTS = HISTORY_WEEKS * SLOTS_PER_WEEK
# volume, payments, failures, declines, and whether the quarter hour had any row at all (a
# row of skipped payments only has none of the others, yet marks the gateway as seen).
_VALUES = 4
_FIELDS = _VALUES + 1

IntArray = npt.NDArray[np.int64]


def reread_slots(late_minutes: int) -> int:
    """Quarter hours before the end of the last read that the next read covers again: rows
    up to ``late_minutes`` late may have changed them since.

    >>> reread_slots(60), reread_slots(5), reread_slots(0)
    (4, 1, 0)
    """
    return -(-late_minutes // SLOT_MINUTES)


@dataclass(frozen=True)
class QuarterHourTable:
    """Per gateway (rows, in order of first appearance) and quarter hour (columns, the
    ``slots`` before epoch quarter hour ``end_slot``, the rules' ``HISTORY_SLOTS`` unless a
    longer chart asks for more): volume, payments, failures, declines,
    and whether any row was read. Never changed in place: an update makes a new table, so a
    :class:`~detector.rules.seasonal.VolumeHistory` built on one keeps its hour's figures."""

    end_slot: int
    gateways: tuple[str, ...]
    cells: npt.NDArray[np.int32]  # (_FIELDS, gateways, slots)

    @classmethod
    def empty(cls, end_slot: int, slots: int = HISTORY_SLOTS) -> QuarterHourTable:
        return cls(end_slot, (), np.zeros((_FIELDS, 0, slots), dtype=np.int32))

    @property
    def slots(self) -> int:
        return int(self.cells.shape[2])

    @property
    def first_slot(self) -> int:
        return self.end_slot - self.slots

    def updated(self, first_slot: int, end_slot: int, counts: Counts) -> QuarterHourTable:
        """The table moved on to ``end_slot``, its quarter hours from ``first_slot`` replaced
        by ``counts`` (a read of ``[first_slot, end_slot)`` per quarter hour; ``minute`` is
        the quarter's first minute). Quarter hours between the old end and ``first_slot``,
        if any, are left empty: only what was read is known."""
        read = QuarterHourRead(self, first_slot, end_slot)
        read.add(end_slot, counts)
        return read.table()

    def per_slot(
        self, gateways: Sequence[str]
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """(volume/payments/failures/declines, ``gateways``, slots), 0 where a quarter hour
        had no row, and the column of each gateway's first row (``slots`` if none). In the
        table's own order, a view of its cells (no copy: it is never changed in place)."""
        seen = np.full(len(gateways), self.slots, dtype=np.int64)
        if tuple(gateways) == self.gateways:  # the usual case: no gathering copy
            present = self.cells[_VALUES] > 0
            seen[:] = np.where(present.any(axis=1), present.argmax(axis=1), self.slots)
            return self.cells[:_VALUES], seen
        rows = pd.Index(self.gateways).get_indexer(list(gateways)).astype(np.int64)
        known = rows >= 0
        matrices = np.zeros((_VALUES, len(gateways), self.slots), dtype=np.int32)
        matrices[:, known] = self.cells[:_VALUES, rows[known]]
        present = self.cells[_VALUES, rows[known]] > 0
        seen[known] = np.where(present.any(axis=1), present.argmax(axis=1), self.slots)
        return matrices, seen

    # --- split and joined by partition (ha.partitions) --------------------------------------

    def only(self, gateways: Sequence[str]) -> QuarterHourTable:
        """The rows of those of ``gateways`` the table holds (in the table's order)."""
        keep = pd.Index(self.gateways).isin(list(gateways))
        return QuarterHourTable(
            self.end_slot,
            tuple(pd.Index(self.gateways)[keep]),
            self.cells[:, keep],
        )

    @classmethod
    def joined(cls, tables: Sequence[QuarterHourTable]) -> QuarterHourTable:
        """The rows of ``tables`` (of distinct gateways, as many slots each) in one table,
        ending where the earliest ends: the quarter hours after it are read again.

        >>> a = QuarterHourTable.empty(10, slots=4).only([])
        >>> QuarterHourTable.joined([a, QuarterHourTable.empty(8, slots=4)]).end_slot
        8
        """
        end = min(t.end_slot for t in tables)
        slots = tables[0].slots
        cells = np.zeros((_FIELDS, sum(len(t.gateways) for t in tables), slots), dtype=np.int32)
        row = 0
        for table in tables:  # one per partition held
            later = min(table.end_slot - end, slots)  # the columns past ``end`` are left out
            rows = len(table.gateways)
            cells[:, row : row + rows, later:] = table.cells[:, :, : slots - later]
            row += rows
        return cls(end, tuple(g for t in tables for g in t.gateways), cells)

    # --- persisted per hour ------------------------------------------------------------------

    def hours(self) -> range:
        """The epoch hours the table holds."""
        return range(self.first_slot // SLOTS_PER_HOUR, self.end_slot // SLOTS_PER_HOUR)

    def pack_hour(self, hour: int, ids: dict[str, int]) -> bytes:
        """One hour's cells of the gateways with any row in it, compressed: each gateway as
        its number in ``ids`` (which gains the gateways it lacks)."""
        start = hour * SLOTS_PER_HOUR - self.first_slot
        block = self.cells[:, :, start : start + SLOTS_PER_HOUR]
        rows = np.flatnonzero(block[_VALUES].any(axis=1))
        names = pd.Index(self.gateways)[rows]
        for name in names.difference(pd.Index(list(ids)), sort=False):  # only the new ones
            ids[name] = len(ids)
        numbers = pd.Index(list(ids)).get_indexer(names).astype(np.int32)
        payload = np.concatenate([numbers, block[:, rows].ravel()]).astype("<i4")
        return zlib.compress(payload.tobytes(), 1)

    @classmethod
    def unpack(
        cls, end_slot: int, names: Sequence[str], hours: Sequence[tuple[int, bytes]]
    ) -> QuarterHourTable:
        """The table ending at ``end_slot`` from packed hours (``pack_hour``), the gateways
        numbered as in ``names``; hours outside the table are ignored."""
        table = cls.empty(end_slot)
        packed: list[tuple[int, npt.NDArray[np.int32], npt.NDArray[np.int32]]] = []
        used = np.zeros(len(names), dtype=bool)
        for hour, blob in hours:
            start = hour * SLOTS_PER_HOUR - table.first_slot
            if not 0 <= start <= HISTORY_SLOTS - SLOTS_PER_HOUR:
                continue
            payload = np.frombuffer(zlib.decompress(blob), dtype="<i4")
            count = payload.size // (1 + _FIELDS * SLOTS_PER_HOUR)
            numbers = payload[:count]
            packed.append((start, numbers, payload[count:].reshape(_FIELDS, count, SLOTS_PER_HOUR)))
            used[numbers] = True
        # Rows in the order the gateways were numbered: first appearance, as when read.
        row_of = np.cumsum(used) - 1
        # Hour by hour into contiguous blocks, then one copy into the (gateways, slots) layout.
        hours_held = HISTORY_SLOTS // SLOTS_PER_HOUR
        grid = np.zeros((_FIELDS, hours_held, int(used.sum()), SLOTS_PER_HOUR), dtype=np.int32)
        for start, numbers, block in packed:
            grid[:, start // SLOTS_PER_HOUR, row_of[numbers]] = block
        cells = np.ascontiguousarray(grid.transpose(0, 2, 1, 3)).reshape(
            _FIELDS, grid.shape[2], HISTORY_SLOTS
        )
        gateways = tuple(name for name, u in zip(names, used, strict=True) if u)
        return cls(end_slot, gateways, cells)


class QuarterHourRead:
    """A read of the quarter hours ``[first_slot, end_slot)`` into ``base``, taken in parts
    (a day per query, oldest first), written into one table that ends at ``end_slot``: the
    weeks of a first read are allocated once, not copied again for every day they take.
    :meth:`table` gives the table of what was read so far, as if each part had updated
    ``base`` in turn."""

    def __init__(self, base: QuarterHourTable | None, first_slot: int, end_slot: int) -> None:
        self.base = base if base is not None else QuarterHourTable.empty(first_slot)
        self.first_slot, self.end_slot = first_slot, end_slot
        self.read_end = first_slot
        self.gateways = self.base.gateways
        self._cells: npt.NDArray[np.int32] | None = None  # made by the first part
        self._taken = False

    def _read_cells(self) -> npt.NDArray[np.int32]:
        if self._cells is None:
            self._cells = _moved(self.base, len(self.gateways), self.first_slot, self.end_slot)
        return self._cells

    def add(self, read_end: int, counts: Counts) -> None:
        """The next part: ``counts`` of the quarter hours from the last part's end up to
        ``read_end``."""
        if self._taken:
            raise RuntimeError("the read's table was taken: it is never changed after")
        # The new names, sorted: a hash of the rows' names first (a first read's day holds a
        # row per gateway and quarter hour; sorting them all as strings cost a second a day).
        named = pd.Index(pd.unique(counts.gateway).astype(str))
        new = named.difference(pd.Index(self.gateways))
        if len(new):
            self.gateways += tuple(new)
            if self._cells is not None:  # not on a first read's first day: nothing to grow
                grown = np.zeros((_FIELDS, len(self.gateways), self._cells.shape[2]), np.int32)
                grown[:, : self._cells.shape[1]] = self._cells
                self._cells = grown
        cells = self._read_cells()
        first = self.end_slot - cells.shape[2]
        column = counts.minute // SLOT_MINUTES - first
        # A hash lookup in C: a Python dict per row would cost more than the rest.
        rows = pd.Index(self.gateways).get_indexer(counts.gateway).astype(np.int64)
        keep = (rows >= 0) & (column >= 0) & (column < read_end - first)
        values = np.stack(
            [
                counts.volume,
                counts.payments,
                counts.failures,
                counts.declines,
                np.ones_like(counts.volume),
            ]
        )
        cells[:, rows[keep], column[keep]] = values[:, keep]
        self.read_end = read_end

    def table(self) -> QuarterHourTable:
        """The table ending where the read got to. Once the read is complete the table
        takes the read's cells, and no part may follow."""
        if self.read_end == self.end_slot:
            self._taken = True
            return QuarterHourTable(self.end_slot, self.gateways, self._read_cells())
        # A read cut short (a part failed): the base's columns up to where this table
        # starts are still its own, the read's columns come from the cells.
        cells = _moved(self.base, len(self.gateways), self.first_slot, self.read_end)
        span = self.read_end - self.first_slot
        if span > 0:
            read = self._read_cells()
            start = self.first_slot - (self.end_slot - read.shape[2])
            cells[:, :, cells.shape[2] - span :] = read[:, :, start : start + span]
        return QuarterHourTable(self.read_end, self.gateways, cells)


def _moved(
    base: QuarterHourTable, rows: int, first_slot: int, end_slot: int
) -> npt.NDArray[np.int32]:
    """``base``'s cells moved on to ``end_slot`` with ``rows`` rows (its own first), its
    columns from ``first_slot`` on left empty: a read replaces them."""
    cells = np.zeros((_FIELDS, rows, base.slots), dtype=np.int32)
    shift = end_slot - base.end_slot
    keep_end = min(first_slot, end_slot, base.end_slot) - base.first_slot
    keep_start = max(shift, 0)
    if keep_end > keep_start:
        cells[:, : len(base.gateways), keep_start - shift : keep_end - shift] = base.cells[
            :, :, keep_start:keep_end
        ]
    return cells
