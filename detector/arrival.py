"""How much of a minute's rows each gateway shows by the minute's age, and whether they
trickle in or land all at once, learnt from the ticks' own re-reads: what the volume
rules need to judge the newest minutes before all their rows have arrived (nowcasting).

A tick one minute after the last re-reads minute ``m`` at age ``a`` (whole minutes since it
ended, 0 for the newest) after having read it at age ``a - 1``: the count it had then over
the count it has now estimates ``c(a - 1) / c(a)``, the ratio of the shares of its final
rows visible at those ages, on the same minutes (so traffic rising or falling does not bias
it). Chained from the ages by which the rows have all arrived (``c = 1``) down to age 0,
the ratios give the completeness curve ``c(a)``. The newest minute a tick reads only in
part counts too: it is what the rules see.

Whether the rows trickle in is the spread of those ratios around ``c(a - 1) / c(a)``: if each
row arrives independently, the earlier count is binomial given the later one (dispersion
1); a batch job delivers a minute's rows all at once or not at all (dispersion about the
rows a minute, and a minute that grows grows from nothing). Only a smooth arrival is
nowcast (:data:`SMOOTH_DISPERSION`, :data:`FROM_NOTHING`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detector.lateness import DecayingPerGateway, pack_state, unpack_state
from detector.rules.completeness import Nowcast

__all__ = ["FROM_NOTHING", "MIN_EVIDENCE", "SMOOTH_DISPERSION", "Arrival"]

FloatArray = npt.NDArray[np.float64]

# Above this dispersion of the earlier counts around their binomial expectation, rows come
# in lumps (batches): a minute's completeness at an age is then 0 or 1, not a fraction,
# and the rules judge complete minutes only.
SMOOTH_DISPERSION = 2.0
# Above this share of the minutes that grew having grown from nothing, rows land all at once
# (at a few rows a minute a batch's dispersion is as low as a trickle's).
FROM_NOTHING = 0.5
# The binomial variance (rows' worth of late arrival, decayed) seen before the curve is
# trusted: a fresh daemon, or a gateway whose late rows are rare, judges complete minutes.
MIN_EVIDENCE = 200.0


class Arrival(DecayingPerGateway):
    """Per gateway and age (0 .. ``cap`` minutes), decaying sums of the counts each minute
    had at the tick before (``_before``) and has at this tick (``_after``), with their
    squares and product for the dispersion; and per gateway how many minutes grew
    (``_grew``) and how many of them from nothing (``_from_nothing``).

    Examples
    --------
    Twenty rows a minute, 14 of them visible on the tick after the minute ends and the
    other 6 on the next:

    >>> import numpy as np
    >>> arrival = Arrival(cap=5)
    >>> for end in range(100, 160):
    ...     before = np.array([[20, 20, 20, 14, 0]])
    ...     after = np.array([[20, 20, 20, 20, 14]])
    ...     arrival.observe(["stripe"], end, end - 5, before, after)
    >>> arrival.nowcast(["stripe"], np.array([2])).shares.round(2).tolist()
    [[0.7, 1.0, 1.0, 1.0, 1.0, 1.0]]
    """

    _ARRAYS = ("_before", "_after", "_bb", "_ba", "_aa", "_grew", "_from_nothing")

    def __init__(self, cap: int) -> None:
        super().__init__(cap)
        shape = (0, cap + 1)  # (gateways, ages 0..cap)
        self._before, self._after = np.zeros(shape), np.zeros(shape)
        self._bb, self._ba, self._aa = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        self._grew, self._from_nothing = np.zeros(0), np.zeros(0)
        self._first: int | None = None  # the first minute of the last tick's read

    def observe(
        self,
        gateways: list[str],
        end_minute: int,
        first_minute: int,
        before: npt.NDArray[np.int64],
        after: npt.NDArray[np.int64],
    ) -> None:
        """Record one tick's read of the minutes ``first_minute <= m < end_minute``:
        ``before`` and ``after`` are (gateways, minutes) row counts as they stood before
        and after it. Only a tick one minute after the last compares ages one apart."""
        previous_end, previous_first = self._end_minute, self._first
        rows = self._advance(gateways, end_minute)
        self._first = first_minute
        if previous_end != end_minute - 1 or previous_first is None:
            return
        # The minutes the last tick read too, at the age before (up to the cap).
        start = max(first_minute, previous_first, end_minute - 1 - self.cap)
        if start >= previous_end:
            return
        columns = slice(start - first_minute, previous_end - first_minute)
        ages = end_minute - 1 - np.arange(start, previous_end)  # distinct, as are the rows
        old = before[:, columns].astype(float)
        new = after[:, columns].astype(float)
        where = (rows[:, None], ages[None, :])
        for name, values in (
            ("_before", old),
            ("_after", new),
            ("_bb", old * old),
            ("_ba", old * new),
            ("_aa", new * new),
        ):
            getattr(self, name)[where] += values
        grew = new > old
        self._grew[rows] += grew.sum(axis=1)
        self._from_nothing[rows] += (grew & (old == 0)).sum(axis=1)

    def nowcast(self, gateways: list[str], lateness: npt.NDArray[np.int64]) -> Nowcast:
        """Per gateway: the share of a minute's rows visible at each age 0 .. ``cap`` (1
        from ``lateness[i]`` minutes on, by which they have all arrived), whether they
        arrive smoothly enough to be nowcast, and how far the counts spread."""
        count = len(gateways)
        shares = np.ones((count, self.cap + 1))
        smooth = np.zeros(count, dtype=bool)
        dispersion = np.ones(count)
        error = np.zeros((count, self.cap + 1))
        known, rows = self._known(gateways)
        late = lateness[known] > 0  # only those are judged on it
        known, rows = known[late], rows[late]
        if known.size:
            fitted = _fit(
                self._before[rows],
                self._after[rows],
                self._bb[rows],
                self._ba[rows],
                self._aa[rows],
                np.minimum(lateness[known], self.cap),
            )
            shares[known], error[known], dispersion[known], evidence = fitted
            grew = self._grew[rows]
            lumps = self._from_nothing[rows] > FROM_NOTHING * grew
            smooth[known] = (
                (evidence >= MIN_EVIDENCE) & (dispersion[known] <= SMOOTH_DISPERSION) & ~lumps
            )
        return Nowcast(shares=shares, smooth=smooth, dispersion=dispersion, error=error)

    def to_text(self) -> str:
        """The sums as a short text for the state store."""
        data: dict[str, object] = {"cap": self.cap, "end": self._end_minute}
        data["gateways"] = self.gateways
        for name in self._ARRAYS:
            data[name] = getattr(self, name)
        return pack_state(data)

    @classmethod
    def from_text(cls, text: str, cap: int) -> Arrival | None:
        """The sums :meth:`to_text` wrote, if learnt with the same cap (None otherwise)."""
        data = unpack_state(text)
        if data is None or data.get("cap") != cap or not all(n in data for n in cls._ARRAYS):
            return None
        arrival = cls(cap)
        arrival._grow(list(data["gateways"]))
        for name in cls._ARRAYS:
            per_age = name not in ("_grew", "_from_nothing")
            values = np.array(data[name], dtype=float)
            setattr(arrival, name, values.reshape(-1, cap + 1) if per_age else values)
        # Decayed from the last tick's end; its read is not the window's a restart refills.
        arrival._end_minute = data["end"]
        return arrival


def _fit(
    before: FloatArray,
    after: FloatArray,
    bb: FloatArray,
    ba: FloatArray,
    aa: FloatArray,
    complete: npt.NDArray[np.int64],
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """From the sums of (gateways, ages): the completeness curve, its relative variance, the
    dispersion of the earlier counts around their binomial expectation, and the evidence
    (the binomial variance seen). Ages from ``complete`` on count as complete."""
    ages = np.arange(before.shape[1])
    # ratio[a] = c(a - 1) / c(a); 1 where nothing was seen, and from the complete age on
    # (rows later than that are the few the 99.9% lateness leaves out).
    seen = after > 0
    ratio = np.where(seen, before / np.where(seen, after, 1.0), 1.0)
    ratio = np.clip(ratio, 1e-6, 1.0)
    counted = (ages[None, :] >= 1) & (ages[None, :] <= complete[:, None])
    ratio = np.where(counted, ratio, 1.0)
    # c(a) = product of ratio[b] for a < b <= complete: a reversed cumulative product.
    shifted = np.concatenate([ratio[:, 1:], np.ones((ratio.shape[0], 1))], axis=1)
    shares = np.cumprod(shifted[:, ::-1], axis=1)[:, ::-1]
    binomial = np.where(counted, ratio * (1 - ratio) * after, 0.0)
    spread = np.where(counted, bb - 2 * ratio * ba + ratio * ratio * aa, 0.0)
    evidence = binomial.sum(axis=1)
    dispersion = np.where(evidence > 0, spread.sum(axis=1) / np.maximum(evidence, 1e-9), 1.0)
    dispersion = np.maximum(dispersion, 1.0)
    # Relative variance of each ratio (binomial, widened by the dispersion), summed along
    # the chain like the product's logarithm.
    relative = np.where(
        counted & seen,
        (1 - ratio) / np.maximum(ratio * after, 1e-9) * dispersion[:, None],
        0.0,
    )
    shifted_relative = np.concatenate([relative[:, 1:], np.zeros((relative.shape[0], 1))], axis=1)
    error = np.cumsum(shifted_relative[:, ::-1], axis=1)[:, ::-1]
    return shares, error, dispersion, evidence
