"""What every rule is: a :class:`Rule` that turns a window and a :class:`RuleContext` into a
:class:`~detector.rules.verdict.RuleResult`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from detector.config import Config
from detector.rules.calibration import Calibration
from detector.rules.completeness import Nowcast, judged_earlier
from detector.rules.replay import Served
from detector.rules.seasonal import VolumeHistory
from detector.rules.ticks import TickFigures, Windows
from detector.rules.verdict import RuleResult, SeriesRows
from detector.window import CountWindow

__all__ = ["Rule", "RuleContext", "minutes_of"]

Figures = TypeVar("Figures", bound=TickFigures)


@lru_cache(maxsize=64)  # the rules ask for the same few durations every tick
def minutes_of(duration: timedelta) -> int:
    """A configured duration in whole minutes, at least one.

    >>> minutes_of(timedelta(seconds=90)), minutes_of(timedelta(0))
    (2, 1)
    """
    return max(1, round(duration.total_seconds() / 60))


@dataclass(frozen=True)
class RuleContext:
    """What the rules read besides the window, the same for every rule of a tick."""

    config: Config
    baselines: npt.NDArray[np.float64]  # per row: its gateway's SLA
    calibration: Calibration  # the SLA bank's hourly thresholds, carried from tick to tick
    # The volume per quarter hour of the last weeks (rows are gateways), if read yet.
    history: VolumeHistory | None = None
    # In a replay: the window's place among its hour's, if it holds the final counts.
    served: Served | None = None
    # Per row: how many series share its sla_breach budget (default 1).
    sla_shares: npt.NDArray[np.float64] | None = None
    # Who the rows are where they are dimension series; None where they are gateways.
    series: SeriesRows | None = None
    # Per row: the epoch minute from which sla_breach counts evidence (the end of the tick
    # its alert last resolved at, so that evidence already reported cannot re-open it).
    restarts: npt.NDArray[np.int64] | None = None
    # Per row: how many minutes late its rows arrive; None where none arrive late.
    lateness: npt.NDArray[np.int64] | None = None
    # Per row: how many of the newest minutes the volume rules leave out, where more than
    # ``lateness`` (a first start's hold while lateness is learnt); None: ``lateness``.
    volume_lateness: npt.NDArray[np.int64] | None = None
    # Per row: how much of a minute's rows is visible by its age, and whether the volume
    # rules judge its newest minutes on it; None where nothing is learnt.
    nowcast: Nowcast | None = None
    # What the rows count, as the volume rules' messages say: payments, or a business
    # volume's events.
    noun: str = "payments"

    def volume_late(self) -> npt.NDArray[np.int64] | None:
        """Per row: how many of the newest minutes the volume rules leave out."""
        return self.lateness if self.volume_lateness is None else self.volume_lateness

    def figures(
        self,
        window: CountWindow,
        rule: str,
        depends: object,
        compute: Callable[[Windows], Figures],
        earlier: npt.NDArray[np.int64] | None = None,
    ) -> Figures:
        """``rule``'s figures on the window: in a replay, its row of the hour's (recomputed
        for the hour when ``depends`` is another object); else computed on the window, each
        row's on the window ending ``earlier`` minutes before the newest where given."""
        if earlier is not None:
            return judged_earlier(Windows.of(window), earlier, compute).row(0)
        if self.served is not None:
            return self.served.figures(rule, depends, compute)
        return compute(Windows.of(window)).row(0)


class Rule(Protocol):
    """One detector: a verdict on every row of a window, with the evidence behind it."""

    @property
    def name(self) -> str:
        """The rule's name: alert label and key of its settings under ``detection``."""
        ...

    def evaluate(self, window: CountWindow, context: RuleContext) -> RuleResult: ...
