"""When simulated payments reach the table: late failed rows and batched inserts.

Production tables are not written at each payment's ``created_at``: a timeout reaper writes
failed rows minutes later, a job copies rows in batches every few minutes, successes stay
``pending`` until the payment settles. These functions give each row of a
:func:`~detector.simulate.generate` frame its insert time (or settle time), and
:class:`Arrivals` writes the rows as a simulated clock passes their insert times and
updates pending rows to their final status as it passes their settle times, so that the
detector's ticks read what production would show them.

>>> from datetime import datetime
>>> from detector.simulate import generate
>>> frame = generate(datetime(2026, 11, 20, 18), datetime(2026, 11, 20, 18, 30), seed=1)
>>> at = batched(frame, every_minutes=10, offset_minutes=3)
>>> sorted({str(t)[11:16] for t in at})
['18:03', '18:13', '18:23', '18:33']
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from detector.simulate.database import write
from detector.simulate.schema import payments_table
from detector.timeutil import naive_utc

__all__ = ["Arrivals", "Times", "batched", "failed_late", "settled_late", "trickled"]

Times = npt.NDArray[np.datetime64]
Seen = TypeVar("Seen")
_MINUTE_US = 60_000_000


def failed_late(frame: pd.DataFrame, low_minutes: float, high_minutes: float, seed: int) -> Times:
    """Insert times where failed rows are written ``low``-``high`` minutes (uniform) after
    their ``created_at`` and every other row at once."""
    created = frame["created_at"].to_numpy(dtype="datetime64[us]")
    rng = np.random.default_rng(seed)
    delay_us = rng.uniform(low_minutes, high_minutes, len(frame)) * _MINUTE_US
    failed = (frame["status"] == "failed").to_numpy()
    late: Times = created + np.where(failed, delay_us, 0).astype("timedelta64[us]")
    return late


def trickled(
    frame: pd.DataFrame, share: float, low_minutes: float, high_minutes: float, seed: int
) -> Times:
    """Insert times where a random ``share`` of the rows, whatever their status, is written
    ``low``-``high`` minutes (uniform) after its ``created_at`` and the others at once (an
    asynchronous pipeline whose rows trickle in)."""
    created = frame["created_at"].to_numpy(dtype="datetime64[us]")
    rng = np.random.default_rng(seed)
    delay_us = rng.uniform(low_minutes, high_minutes, len(frame)) * _MINUTE_US
    late = rng.random(len(frame)) < share
    at: Times = created + np.where(late, delay_us, 0).astype("timedelta64[us]")
    return at


def batched(frame: pd.DataFrame, every_minutes: int, offset_minutes: int = 0) -> Times:
    """Insert times where a job copies rows every ``every_minutes`` minutes (at minutes
    ``offset_minutes`` past each multiple): each row at the first run after its creation."""
    created = frame["created_at"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    period, offset = every_minutes * _MINUTE_US, offset_minutes * _MINUTE_US
    runs = (created - offset) // period * period + offset + period
    at: Times = runs.astype("datetime64[us]")
    return at


def settled_late(frame: pd.DataFrame, median_minutes: float, seed: int) -> Times:
    """Settle times where succeeded rows stay ``pending`` for an exponential time of median
    ``median_minutes`` after their ``created_at``, and every other row is final at once."""
    created = frame["created_at"].to_numpy(dtype="datetime64[us]")
    rng = np.random.default_rng(seed)
    delay_us = rng.exponential(median_minutes / np.log(2), len(frame)) * _MINUTE_US
    succeeded = (frame["status"] == "succeeded").to_numpy()
    settled: Times = created + np.where(succeeded, delay_us, 0).astype("timedelta64[us]")
    return settled


class Arrivals:
    """The rows of ``frame``, written to ``table`` as their insert times ``at`` pass; with
    ``settled``, a row inserted before its settle time is written ``pending`` and updated to
    its status once that time passes."""

    def __init__(
        self,
        engine: Engine,
        table: str,
        frame: pd.DataFrame,
        at: Times,
        settled: Times | None = None,
    ) -> None:
        order = np.argsort(at, kind="stable")
        self.engine, self.table = engine, table
        self._frame = frame.iloc[order].reset_index(drop=True)
        self._at = at[order]
        self._written = 0
        # Rows to update to their final status, by settle time: (settle time, id, status).
        self._settles: list[tuple[np.datetime64, str, str]] = []
        self._settled_at = None if settled is None else settled[order]

    def until(self, moment: datetime) -> int:
        """Write every row inserted before ``moment`` not written yet, and settle the
        pending rows whose settle time has passed; how many rows were written."""
        limit = np.datetime64(naive_utc(moment), "us")
        end = int(np.searchsorted(self._at, limit))
        rows = self._frame.iloc[self._written : end]
        if self._settled_at is not None and len(rows):
            settle = self._settled_at[self._written : end]
            pending = settle > self._at[self._written : end]
            rows = rows.copy()
            self._settles += zip(
                settle[pending], rows["id"][pending], rows["status"][pending], strict=True
            )
            self._settles.sort(key=lambda item: item[0])
            rows.loc[pending, "status"] = "pending"
        self._written = max(self._written, end)
        written = write(self.engine, rows, self.table) if len(rows) else 0
        self._settle(limit)
        return written

    def _settle(self, limit: np.datetime64) -> None:
        due = sum(1 for at, _, _ in self._settles if at < limit)  # they are sorted
        done, self._settles = self._settles[:due], self._settles[due:]
        if not done:
            return
        table = payments_table(self.table)
        update = (
            table.update()
            .where(table.c.id == sa.bindparam("row_id"))
            .values(status=sa.bindparam("final"))
        )
        with self.engine.begin() as connection:
            connection.execute(update, [{"row_id": i, "final": status} for _, i, status in done])

    def ticked(
        self,
        tick: Callable[[datetime], list[Seen]],
        begin: datetime,
        end: datetime,
        started: timedelta = timedelta(0),
    ) -> list[Seen]:
        """Call ``tick`` every minute from ``begin - started`` to ``end``, each time after
        writing the rows inserted by then; what it returned from ``begin`` on (a daemon
        started ``started`` before it)."""
        now, seen = begin - started, []
        while now <= end:
            self.until(now)
            returned = tick(now)
            if now >= begin:
                seen += returned
            now += timedelta(minutes=1)
        return seen
