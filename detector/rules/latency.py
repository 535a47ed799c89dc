"""``latency_breach``'s own count window, calibration and replay serving.

The rule is :class:`~detector.rules.sla_breach.LatencyBreach`: the SLA bank on a window
whose payments are those with a latency and whose failures are the slow ones. This keeps
that window beside the gateways' one, fed from the same reads.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detector.config import Config
from detector.model import Counts
from detector.rules.base import RuleContext
from detector.rules.calibration import Calibration
from detector.rules.replay import Replay
from detector.rules.sla_breach import LatencyBreach
from detector.rules.verdict import RuleResult
from detector.window import CountWindow

__all__ = ["LatencyWatch"]


class LatencyWatch:
    """The timed and slow payments per gateway and minute, and ``latency_breach`` on them.

    Parameters
    ----------
    config
        Whose ``detection.latency`` and ``gateways.<name>.latency_sla`` apply.
    minutes
        How many minutes the window holds (the gateways' window's).
    replay
        A replay's final counts, to serve an hour of ticks at once; None live.
    """

    rule = LatencyBreach()

    def __init__(self, config: Config, minutes: int, replay: Replay | None = None):
        self.config = config
        self.window = CountWindow(minutes, gateways=config.gateways)
        self.calibration = Calibration()
        self.replay = None if replay is None else replay.latency()

    def update(self, first_minute: int, end_minute: int, counts: Counts) -> None:
        """Take a tick's read of ``[first_minute, end_minute)``."""
        self.window.advance(end_minute)
        self.window.replace(first_minute, end_minute, counts.latency())

    def evaluate(self, restarts: npt.NDArray[np.int64] | None = None) -> RuleResult:
        """``latency_breach``'s verdict per gateway; ``restarts`` as for ``sla_breach``."""
        window, config = self.window, self.config
        context = RuleContext(
            config,
            np.array([config.latency_sla_for(g) for g in window.gateways], dtype=np.float64),
            self.calibration,
            served=None if self.replay is None else self.replay.served(window),
            restarts=restarts,
        )
        return self.rule.evaluate(window, context)

    def quiet(self, end_minute: int) -> bool:
        """Whether a replay knows that the rule is active for no gateway at this tick."""
        return self.replay is not None and self.replay.quiet(end_minute, [self.rule.name])
