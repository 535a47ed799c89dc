"""How fast each gateway's pending payments settle, learnt from the ticks' own re-reads.

A gateway whose successes stay ``pending`` for minutes while its failures are final at once
shows a failure rate of its newest minutes far above its true one: their failures are
counted, most of their successes not yet. Every read shows, per minute, how many rows are
still pending at that minute's age (minutes since it ended); every re-read shows how many
pending rows of a minute read before turned final, and how many of those failed. From
these, per gateway:

- the *settle age*: the age from which a minute holds no more pending rows than its oldest
  minutes do (within :data:`SETTLED_SHARE` of its rows); minutes that old are judged as
  they stand, like the final table;
- the *pending failure share*: of the rows that left ``pending``, the share that failed.

A minute younger than its settle age is judged on all its rows, its pending ones counted
as failing at the pending failure share (:meth:`Settlement.judged`): a healthy gateway's
newest minutes then show its true rate, and a total outage (failures final at once, no
success pending) shows at once.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detector.lateness import DecayingPerGateway, pack_state, unpack_state
from detector.window import CountWindow

__all__ = ["MIN_ROWS", "SETTLED_SHARE", "SIGNIFICANT", "Settlement"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# A minute is settled once its pending share is within this much of the share that never
# settles (the oldest minutes'): 1% of the rows pending leaves the failure rate within 1%
# of its final value (1.5% reads at most 1.515%).
SETTLED_SHARE = 0.01
# An age is judged by its pending share once this many rows (decayed) were seen at it, so
# a few pending rows of a quiet gateway do not make every minute look unsettled.
MIN_ROWS = 30.0
# How many standard deviations (Poisson) more pending rows than a settled minute holds make
# an age unsettled.
SIGNIFICANT = 3.0


class Settlement(DecayingPerGateway):
    """Per gateway, decaying sums of rows and pending rows by age, and of the rows seen
    leaving ``pending`` and those of them that failed.

    Examples
    --------
    Nine of ten rows pending in the newest minute, one in the minute before, none older;
    of the eight seen leaving ``pending``, none failed:

    >>> s = Settlement(cap=3)
    >>> s.observe(["stripe"], 103, 100, 102,
    ...     payments=(np.array([[10, 9, 1]]), np.array([[10, 9, 1]])),
    ...     failures=(np.array([[0, 0, 0]]), np.array([[0, 0, 0]])),
    ...     volume=(np.array([[10, 10, 10]]), np.array([[10, 10, 10]])), weight=10)
    >>> s.settle_ages(["stripe", "adyen"]).tolist()
    [2, 0]
    """

    _ARRAYS = ("_rows", "_pending", "_settled", "_failed")

    def __init__(self, cap: int) -> None:
        super().__init__(cap)
        self._rows = np.zeros((0, cap + 1))  # (gateways, age 0..cap)
        self._pending = np.zeros((0, cap + 1))
        self._settled = np.zeros(0)  # rows seen leaving pending
        self._failed = np.zeros(0)  # of those, the failed ones

    def observe(
        self,
        gateways: list[str],
        end_minute: int,
        first_minute: int,
        read_before: int | None,
        payments: tuple[IntArray, IntArray],
        failures: tuple[IntArray, IntArray],
        volume: tuple[IntArray, IntArray],
        weight: float = 1.0,
    ) -> None:
        """Record one read of the minutes ``first_minute <= m < end_minute``.

        ``payments`` and ``failures`` are (gateways, minutes) counts before and after the
        read, and so are ``volume``'s rows; ``read_before`` is the end of the previous
        tick's read (None for a first read: nothing is seen settling). ``weight``: how many
        ticks of observations this read stands for (a first read's ages are seen once, but
        stand for the ticks no one watched).
        """
        rows = self._advance(gateways, end_minute)
        age = np.minimum(end_minute - 1 - np.arange(first_minute, end_minute), self.cap)
        pending = np.clip(volume[1] - payments[1], 0, None)
        np.add.at(self._rows, (rows[:, None], age[None, :]), volume[1] * weight)
        np.add.at(self._pending, (rows[:, None], age[None, :]), pending * weight)
        if read_before is None:
            return
        reread = np.arange(first_minute, end_minute) < read_before
        # Rows that turned final are at most the rows that were pending: rows arriving late
        # already final are not counted as settling.
        was_pending = np.clip(volume[0] - payments[0], 0, None)[:, reread]
        became_final = np.clip(payments[1] - payments[0], 0, None)[:, reread]
        became_final = np.minimum(became_final, was_pending)
        failed = np.minimum(np.clip(failures[1] - failures[0], 0, None)[:, reread], became_final)
        np.add.at(self._settled, rows, became_final.sum(axis=1))
        np.add.at(self._failed, rows, failed.sum(axis=1))

    def settle_ages(self, gateways: list[str]) -> IntArray:
        """Per gateway: the age in minutes from which its minutes are settled (0 for a
        gateway whose rows are final at once, or not seen)."""
        ages = np.zeros(len(gateways), dtype=np.int64)
        known, index = self._known(gateways)
        if not known.size:
            return ages
        rows, pending = self._rows[index], self._pending[index]
        seen = rows >= MIN_ROWS
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(seen, pending / np.maximum(rows, 1e-12), np.nan)
        # The share that never settles: the lowest seen at any age (abandoned payments).
        floor = np.nanmin(np.where(seen.any(axis=1, keepdims=True), share, 0.0), axis=1)
        # Significantly so: a few pending rows more at one age of a quiet gateway are noise.
        allowed = (floor[:, None] + SETTLED_SHARE) * rows
        unsettled = seen & (pending - allowed > SIGNIFICANT * np.sqrt(allowed + 1))
        last = share.shape[1] - np.argmax(unsettled[:, ::-1], axis=1)
        ages[known] = np.where(unsettled.any(axis=1), np.minimum(last, self.cap), 0)
        return ages

    def failing_share(self, gateways: list[str]) -> FloatArray:
        """Per gateway: of its rows seen leaving ``pending``, the share that failed (0 where
        none were seen)."""
        share = np.zeros(len(gateways))
        known, rows = self._known(gateways)
        settled = self._settled[rows]
        share[known] = np.where(settled >= 1, self._failed[rows] / np.maximum(settled, 1), 0.0)
        return share

    def judged(self, window: CountWindow, gateways: list[str] | None = None) -> CountWindow:
        """The window the failure-rate rules judge: each row's minutes younger than its
        gateway's settle age with their pending rows counted, as failing at the gateway's
        pending failure share; the window itself where no row has unsettled minutes.

        ``gateways`` names each row's gateway where the rows are not gateways (dimension
        series): a segment's minutes settle as its gateway's do, which is what the re-reads
        can learn with enough rows.
        """
        names = window.gateways if gateways is None else gateways
        ages = self.settle_ages(names)
        newest = min(int(ages.max(initial=0)), window.minutes)
        if newest == 0:
            return window
        columns = slice(window.minutes - newest, window.minutes)
        age = np.arange(newest)[::-1]  # of each of those columns
        young = age[None, :] < ages[:, None]
        payments, failures = window.payments[:, columns], window.failures[:, columns]
        pending = np.where(young, np.clip(window.volume[:, columns] - payments, 0, None), 0)
        share = self.failing_share(names)
        judged = window.copy()
        judged.payments[:, columns] = payments + pending
        judged.failures[:, columns] = failures + np.rint(pending * share[:, None]).astype(np.int64)
        return judged

    def to_text(self) -> str:
        """The estimate as a short text for the state store (decimals enough for it)."""
        return pack_state(
            {
                "cap": self.cap,
                "end": self._end_minute,
                "gateways": self.gateways,
                "rows": self._rows,
                "pending": self._pending,
                "settled": self._settled,
                "failed": self._failed,
            }
        )

    @classmethod
    def from_text(cls, text: str, cap: int) -> Settlement | None:
        """The estimate :meth:`to_text` wrote, if it was learnt with the same cap."""
        data = unpack_state(text)
        if data is None or data.get("cap") != cap:
            return None
        settlement = cls(cap)
        settlement._grow(list(data["gateways"]))
        settlement._rows = np.array(data["rows"], dtype=float).reshape(-1, cap + 1)
        settlement._pending = np.array(data["pending"], dtype=float).reshape(-1, cap + 1)
        settlement._settled = np.array(data["settled"], dtype=float)
        settlement._failed = np.array(data["failed"], dtype=float)
        settlement._end_minute = data["end"]
        return settlement
