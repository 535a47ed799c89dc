"""A replay's hour-at-once serving of the rules.

A replay knows the counts of every tick before it starts: every rule's figures on all the
windows of an hour (the SLA bank's statistics, the volume rules' and the outage rule's) are
then computed at once, and each tick whose window holds exactly those counts is served its
own. The numbers are the same bit for bit either way (see :mod:`detector.stats.cusum` and
:class:`~detector.rules.ticks.Windows`); a window that differs is computed on its own. The
live path has no :class:`Replay`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast

import numpy as np
import numpy.typing as npt

from detector.model import Counts
from detector.rules.calibration import Thresholds
from detector.rules.ticks import TickFigures, Windows
from detector.rules.verdict import BoolArray
from detector.stats.cusum import CusumBank
from detector.window import CountWindow

__all__ = ["FinalCounts", "HourOfWindows", "Replay", "Served"]

Figures = TypeVar("Figures", bound=TickFigures)
IntArray = npt.NDArray[np.int64]


class FinalCounts(Protocol):
    """Final counts served a span of minutes at a time (a backtest's, read in chunks)."""

    def between(self, first_minute: int, end_minute: int) -> Counts: ...

    def derived(self, derive: Callable[[Counts], Counts]) -> FinalCounts:
        """The counts ``derive`` makes from these, row-wise per minute."""
        ...


class Replay:
    """The final counts of a replay, and the hour of windows cut from them for the ticks.

    Parameters
    ----------
    final
        Every count the replay's ticks will read, as they stand at its end: all of them, or
        served a span at a time.
    """

    def __init__(self, final: Counts | FinalCounts) -> None:
        self._final = final
        self._hour: HourOfWindows | None = None

    def derived(self, derive: Callable[[Counts], Counts]) -> Replay:
        """The replay of the counts ``derive`` makes from the final ones, row-wise per minute
        (the dimension series' counts)."""
        final = self._final
        return Replay(derive(final) if isinstance(final, Counts) else final.derived(derive))

    def final(self, first_minute: int, end_minute: int) -> Counts:
        """The final counts of ``[first_minute, end_minute)``: what a replayed read returns."""
        return self._final.between(first_minute, end_minute)

    def latency(self) -> Replay:
        """The replay of the latency counts (slow payments as failures of the timed ones)."""
        return self.derived(Counts.latency)

    def served(self, window: CountWindow) -> Served | None:
        """The hour of windows this one belongs to, and its index there, if it holds exactly
        the final counts (then every rule is served its figures from the hour's, computed at
        once)."""
        hour = (window.end_minute - 1) // 60
        if self._hour is None or not self._hour.covers(window, hour):
            self._hour = HourOfWindows.of(self._final, window, hour)
        index = self._hour.index_of(window)
        return None if index is None else Served(self._hour, index)

    def quiet(self, end_minute: int, rules: Iterable[str]) -> bool:
        """Whether the hour's figures say that none of ``rules`` is active for any gateway in
        the window ending before ``end_minute``, as computed at an earlier tick of the same
        hour (with the same thresholds and volume history, which change only with the
        hour), and no gateway appears in the hour that they do not cover."""
        hour = self._hour
        if hour is None or hour.hour != (end_minute - 1) // 60:
            return False
        index = end_minute - (hour.hour * 60 + 1)
        return hour.quiet(index, rules)


@dataclass(frozen=True)
class Served:
    """A replayed tick's place among its hour's windows."""

    hour: HourOfWindows
    index: int

    def figures(self, rule: str, depends: object, compute: Callable[[Windows], Figures]) -> Figures:
        """This tick's row of ``rule``'s figures, computed once for the hour."""
        return self.hour.figures(rule, depends, compute).row(self.index)

    def bank(self, limits: Thresholds, restarts: IntArray | None) -> CusumBank:
        """The bank holding the statistics of the hour's windows (this one's at ``index``),
        each row counted from its epoch minute in ``restarts``."""
        return self.hour.bank(limits, restarts)


class HourOfWindows:
    """The windows of every tick of one hour, cut from final counts, and what the rules
    computed for all of them at once."""

    ticks = 60  # windows ending after the hour's minutes 0, 1, ..., 59

    def __init__(self, hour: int, span: CountWindow, gateways: list[str], minutes: int):
        self.hour = hour
        self.span = span  # from the first window's oldest minute to the last window's newest
        self.gateways = list(gateways)
        # Rows of gateways first seen later in the hour come after the window's own.
        rows = len(gateways)
        self.windows = Windows(
            self.gateways,
            span.payments[:rows],
            span.failures[:rows],
            span.volume[:rows],
            span.declines[:rows],
            np.arange(minutes, span.minutes + 1),
            minutes,
            span.end_minute,
        )
        self._banks: tuple[Thresholds, bytes, CusumBank] | None = None
        self._figures: dict[str, tuple[object, TickFigures]] = {}
        self._busy: dict[str, list[bool]] = {}

    @classmethod
    def of(cls, final: Counts | FinalCounts, window: CountWindow, hour: int) -> HourOfWindows:
        last_end = hour * 60 + cls.ticks
        span = CountWindow(window.minutes + cls.ticks - 1, window.gateways)
        span.advance(last_end)
        first = last_end - span.minutes
        span.replace(first, last_end, final.between(first, last_end))
        return cls(hour, span, window.gateways, window.minutes)

    def covers(self, window: CountWindow, hour: int) -> bool:
        return (
            self.hour == hour
            and self.windows.minutes == window.minutes
            and self.gateways == window.gateways
        )

    def index_of(self, window: CountWindow) -> int | None:
        """Which of the hour's windows this one is, if it holds exactly the same counts."""
        index = window.end_minute - (self.span.end_minute - self.span.minutes + window.minutes)
        if 0 <= index < self.ticks and window.matches(self.span, index):
            return index
        return None

    def quiet(self, index: int, rules: Iterable[str]) -> bool:
        if not 0 <= index < self.ticks or len(self.span.gateways) > len(self.gateways):
            return False
        busy = [self._busy.get(rule) for rule in rules]
        return all(b is not None and not b[index] for b in busy)

    def bank(self, limits: Thresholds, restarts: IntArray | None) -> CusumBank:
        """The hour's bank, recomputed when the thresholds or the restarts change (an alert
        resolved during the hour)."""
        key = b"" if restarts is None else restarts.tobytes()
        if self._banks is None or self._banks[0] is not limits or self._banks[1] != key:
            windows = self.windows
            first = None
            if restarts is not None:
                first = restarts - (self.span.end_minute - self.span.minutes)
            bank = limits.bank(
                windows.failures, windows.payments, windows.minutes, windows.ends, first
            )
            self._banks = (limits, key, bank)
        return self._banks[2]

    def figures(self, rule: str, depends: object, compute: Callable[[Windows], Figures]) -> Figures:
        """``rule``'s figures for the hour, recomputed if what they depend on (the volume
        history, the thresholds) is another object."""
        known = self._figures.get(rule)
        if known is None or known[0] is not depends:
            known = (depends, compute(self.windows))
            self._figures[rule] = known
            # Per tick, whether the rule is active for any gateway (a replay's quiet ticks).
            busy: BoolArray = np.asarray(known[1].active.reshape(self.ticks, -1).any(axis=1))
            self._busy[rule] = [bool(b) for b in busy]
        # Each rule's name keys the figures its own ``compute`` made.
        return cast(Figures, known[1])
