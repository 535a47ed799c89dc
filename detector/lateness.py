"""How late each gateway's rows arrive, learnt from the ticks' own re-reads.

Every tick re-reads the minutes it read before, so the rows a minute gained since its last
read are rows that arrived late. A row first seen by the tick ending at epoch minute ``end``
in a minute ``m`` the previous tick had already read arrived at most ``end - m - 1`` minutes
after its minute ended; rows of minutes no tick could read yet count as on time. The
estimate is a high quantile of those lateness figures over the last hours, per gateway: the
read reaches back that far (so the failed rows of a late outage are still read), and the
rules judge the minutes it says are complete.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Collection, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "FIRST_START_HOLD",
    "HALF_LIFE_MINUTES",
    "PROBE_EVERY",
    "QUANTILE",
    "DecayingPerGateway",
    "Lateness",
    "pack_state",
    "unpack_state",
]

IntArray = npt.NDArray[np.int64]

# Rows later than the current re-read are only seen by a wider one: every this many minutes
# a tick re-reads up to the cap. Their lateness is counted as the time since their minute
# ended, an upper bound, so the re-read is wide enough the next time.
PROBE_EVERY = 10
# Share of a gateway's rows the estimate says have arrived: 1.5% of rows (the failures of a
# healthy gateway) written by a timeout reaper must still be covered.
QUANTILE = 0.999
# Observations lose half their weight in this many minutes: the estimate follows a reaper
# or a batch job that changes within hours, and one stray row does not widen it for long.
HALF_LIFE_MINUTES = 180.0
# A daemon with nothing learnt (a first start on an empty state store) cannot tell rows not
# written yet from missing traffic: for its first this many minutes the volume rules leave out
# at least the newest minutes, as many as are left of it (40 at the first tick, 39 a minute
# later, ...), while the re-reads and probes see how late rows arrive. The minutes judged are
# then at least as old as the ticks before have watched: a job copying rows every 10-15
# minutes is learnt before its batches are judged, and a drop at the start is seen at most
# about half of it later (the judged window reaches the drop when twice the minutes since the
# start exceed the hold).
FIRST_START_HOLD = 40


class DecayingPerGateway:
    """Per gateway (rows, in order of first appearance), arrays of observations that lose
    half their weight every ``HALF_LIFE_MINUTES``: what :class:`Lateness` and
    :class:`~detector.settlement.Settlement` both learn from the ticks' re-reads. A subclass
    names its arrays (gateways first) in ``_ARRAYS``."""

    _ARRAYS: tuple[str, ...] = ()

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("the cap must be at least one minute")
        self.cap = cap
        self.gateways: list[str] = []
        self._index: dict[str, int] = {}
        self._end_minute: int | None = None  # the end of the last tick's read

    def _advance(self, gateways: list[str], end_minute: int) -> IntArray:
        """Decay the observations to the tick ending at ``end_minute``; the rows of
        ``gateways``, added where new."""
        self._grow(gateways)
        if self._end_minute is not None:
            decay = 0.5 ** (max(end_minute - self._end_minute, 0) / HALF_LIFE_MINUTES)
            for name in self._ARRAYS:
                weights = getattr(self, name)
                weights *= decay
        self._end_minute = end_minute
        return np.array([self._index[g] for g in gateways], dtype=np.int64)

    def _known(self, gateways: list[str]) -> tuple[IntArray, IntArray]:
        """The positions in ``gateways`` of those seen before, and their rows."""
        rows = np.array([self._index.get(g, -1) for g in gateways], dtype=np.int64)
        positions = np.flatnonzero(rows >= 0)
        return positions, rows[positions]

    def only(self, gateways: Collection[str]) -> Self:
        """The observations of those of ``gateways`` seen (with ``ha.partitions``, a
        partition's share of what a replica learnt)."""
        keep = np.flatnonzero(pd.Index(self.gateways).isin(list(gateways)))
        part = self._like()
        part._grow([self.gateways[i] for i in keep])
        for name in self._ARRAYS:
            setattr(part, name, getattr(self, name)[keep])
        return part

    @classmethod
    def joined(cls, parts: Sequence[Self]) -> Self:
        """The observations of ``parts`` (of distinct gateways, the same cap) in one, as of
        the latest tick of theirs."""
        whole = parts[0]._like()
        whole._grow([g for part in parts for g in part.gateways])
        for name in cls._ARRAYS:
            setattr(whole, name, np.concatenate([getattr(part, name) for part in parts]))
        ends = [part._end_minute for part in parts if part._end_minute is not None]
        whole._end_minute = max(ends) if ends else None
        return whole

    def _like(self) -> Self:
        """An empty estimate of the same cap, ended where this one is."""
        empty = type(self)(self.cap)
        empty._end_minute = self._end_minute
        return empty

    def _grow(self, gateways: list[str]) -> None:
        new = [g for g in dict.fromkeys(gateways) if g not in self._index]
        for gateway in new:
            self._index[gateway] = len(self.gateways)
            self.gateways.append(gateway)
        if new:
            for name in self._ARRAYS:
                weights = getattr(self, name)
                more = np.zeros((len(new), *weights.shape[1:]))
                setattr(self, name, np.concatenate([weights, more]))


class Lateness(DecayingPerGateway):
    """Per gateway, a decaying histogram of rows by the minutes they arrived late.

    Parameters
    ----------
    cap
        The most minutes of lateness recorded and estimated (``source.max_late_arrival``):
        rows later than that are counted as that late.

    Examples
    --------
    Ten rows a minute on time, and one minute re-read at the next tick with 8 more rows:

    >>> import numpy as np
    >>> lateness = Lateness(cap=60)
    >>> lateness.observe(["stripe"], 101, 100, 100, np.array([[0]]), np.array([[10]]))
    >>> lateness.observe(["stripe"], 102, 100, 101, np.array([[10, 0]]), np.array([[18, 10]]))
    >>> lateness.minutes(["stripe", "adyen"]).tolist()
    [1, 0]
    """

    _ARRAYS = ("_weights",)

    def __init__(self, cap: int) -> None:
        super().__init__(cap)
        self._weights = np.zeros((0, cap + 1))  # (gateways, minutes late 0..cap)

    def observe(
        self,
        gateways: list[str],
        end_minute: int,
        first_minute: int,
        read_before: int,
        before: IntArray,
        after: IntArray,
    ) -> None:
        """Record one tick's re-read of the minutes ``first_minute <= m < end_minute``.

        ``before`` and ``after`` are (gateways, minutes) row counts as they stood before
        and after this read; ``read_before`` is the end of the previous tick's read (its
        rows in minutes from there on are on time).
        """
        rows = self._advance(gateways, end_minute)
        arrived = np.clip(after - before, 0, None)
        minute = np.arange(first_minute, end_minute)
        late = np.where(minute < read_before, end_minute - minute - 1, 0)
        late = np.minimum(late, self.cap)
        np.add.at(self._weights, (rows[:, None], late[None, :]), arrived)

    def minutes(self, gateways: list[str]) -> IntArray:
        """Per gateway: the minutes late within which ``QUANTILE`` of its rows arrived
        (0 for a gateway not seen)."""
        estimate = np.zeros(len(gateways), dtype=np.int64)
        known, rows = self._known(gateways)
        if not known.size:
            return estimate
        weights = self._weights[rows]
        total = weights.sum(axis=1, keepdims=True)
        # Weight of the rows later than each lateness: the estimate is the first lateness
        # after which at most 1 - QUANTILE of the rows is left.
        later = total - np.cumsum(weights, axis=1)
        covered = later <= (1 - QUANTILE) * total
        estimate[known] = np.argmax(covered, axis=1)
        return estimate

    def probes(self, end_minute: int) -> bool:
        """Whether the tick ending at ``end_minute`` re-reads up to the cap."""
        return end_minute % PROBE_EVERY == 0

    def to_text(self) -> str:
        """The estimate as a short text for the state store."""
        return pack_state(
            {
                "cap": self.cap,
                "end": self._end_minute,
                "gateways": self.gateways,
                "weights": self._weights,
            }
        )

    @classmethod
    def from_text(cls, text: str, cap: int) -> Lateness | None:
        """The estimate :meth:`to_text` wrote, if it was learnt with the same cap (None
        otherwise: a fresh one learns again)."""
        data = unpack_state(text)
        if data is None or data.get("cap") != cap:
            return None
        lateness = cls(cap)
        lateness._grow(list(data["gateways"]))
        lateness._weights = np.array(data["weights"], dtype=float).reshape(-1, cap + 1)
        lateness._end_minute = data["end"]
        return lateness


def pack_state(data: dict[str, Any]) -> str:
    """``data`` as JSON (arrays to 3 decimals: decayed row counts need no more), zlib'd and
    base64'd: a few hundred bytes per gateway for the state store.

    >>> unpack_state(pack_state({"cap": 2, "weights": np.array([[1.23456, 0.0, 2.0]])}))
    {'cap': 2, 'weights': [[1.235, 0.0, 2.0]]}
    """
    plain = {
        key: np.round(value, 3).tolist() if isinstance(value, np.ndarray) else value
        for key, value in data.items()
    }
    return base64.b64encode(zlib.compress(json.dumps(plain).encode(), 9)).decode()


def unpack_state(text: str) -> dict[str, Any] | None:
    """What :func:`pack_state` wrote; None for text it cannot have written."""
    try:
        data = json.loads(zlib.decompress(base64.b64decode(text)))
    except (ValueError, zlib.error, binascii.Error):
        return None
    return data if isinstance(data, dict) else None
