"""Turns a window of counts into verdicts per gateway per rule, with their evidence.

One module per rule (:mod:`.outage`, :mod:`.sla_breach` with ``latency_breach``,
:mod:`.no_data`, :mod:`.volume_drop`, :mod:`.decline_rate`), each a
:class:`~detector.rules.base.Rule` evaluated on the window and a
:class:`~detector.rules.base.RuleContext`. The SLA bank's hourly
thresholds come from :mod:`.calibration`, the volume rules' (and ``decline_rate``'s)
weeks of history from :mod:`.seasonal`, and a replay's hour-at-once serving from :mod:`.replay`;
``latency_breach``'s window of timed and slow payments is :class:`.latency.LatencyWatch`'s.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from detector.config import Config
from detector.rules.base import Rule, RuleContext, minutes_of
from detector.rules.calibration import (
    Calibration,
    Thresholds,
    budget_shares,
    calibrate,
    calibration_history,
)
from detector.rules.completeness import Nowcast
from detector.rules.decline_rate import DeclineRate
from detector.rules.latency import LatencyWatch
from detector.rules.no_data import NoData
from detector.rules.outage import Outage
from detector.rules.quarter_hours import QuarterHourTable
from detector.rules.replay import Replay
from detector.rules.seasonal import VolumeHistory
from detector.rules.sla_breach import SlaBreach
from detector.rules.verdict import (
    Finding,
    RuleResult,
    SeriesRows,
    Severity,
    series_name,
    source_down_finding,
)
from detector.rules.volume_drop import VolumeDrop
from detector.window import CountWindow

__all__ = [
    "RULES",
    "SERIES_RULES",
    "VOLUME_RULES",
    "Calibration",
    "Finding",
    "LatencyWatch",
    "Nowcast",
    "QuarterHourTable",
    "Replay",
    "Rule",
    "RuleContext",
    "RuleResult",
    "SeriesRows",
    "Severity",
    "Thresholds",
    "VolumeHistory",
    "budget_shares",
    "calibrate",
    "calibration_history",
    "evaluate",
    "evaluate_series",
    "minutes_needed",
    "series_name",
    "source_down_finding",
]

# In the order their verdicts are reported.
RULES: tuple[Rule, ...] = (Outage(), SlaBreach(), NoData(), VolumeDrop(), DeclineRate())
# Those that also run on dimension series: a segment fails or is down while its gateway is
# not. Silence, volume and declines stay per gateway.
SERIES_RULES: tuple[Rule, ...] = RULES[:2]
# Those that run on business volumes (``volumes:``), which have totals but no failures.
VOLUME_RULES: tuple[Rule, ...] = RULES[2:4]


def minutes_needed(config: Config) -> int:
    """How many minute buckets the enabled rules look back over."""
    detection = config.detection
    latency = (
        (minutes_of(detection.latency.history), minutes_of(detection.latency.window))
        if config.latency_watched
        else ()
    )
    return max(
        *latency,
        minutes_of(detection.sla_breach.history),
        minutes_of(detection.sla_breach.window),
        minutes_of(detection.outage.window),
        minutes_of(detection.no_data.silence) + minutes_of(detection.no_data.history),
        minutes_of(detection.volume_drop.window) + minutes_of(detection.volume_drop.history),
        minutes_of(detection.decline_rate.window),
    )


def _per_row(
    gateways: list[str], shares: Mapping[str, int] | None
) -> npt.NDArray[np.float64] | None:
    if shares is None:
        return None
    return np.array([shares.get(g, 1) for g in gateways], dtype=np.float64)


def _enabled(rules: tuple[Rule, ...], config: Config) -> list[Rule]:
    return [
        rule
        for rule in rules
        if (settings := config.detection.settings_of(rule.name)) is not None and settings.enabled
    ]


def evaluate(
    window: CountWindow,
    config: Config,
    calibration: Calibration | None = None,
    history: VolumeHistory | None = None,
    sla_shares: Mapping[str, int] | None = None,
    replay: Replay | None = None,
    restarts: npt.NDArray[np.int64] | None = None,
    lateness: npt.NDArray[np.int64] | None = None,
    noun: str = "payments",
    rules: tuple[Rule, ...] = RULES,
    volume_lateness: npt.NDArray[np.int64] | None = None,
    nowcast: Nowcast | None = None,
) -> list[RuleResult]:
    """Every enabled rule's verdict on the window as it stands.

    ``calibration`` carries the hourly thresholds from tick to tick (a fresh one computes
    them); ``history`` is the volume per quarter hour the seasonal rules compare against;
    ``sla_shares`` says how many series share a gateway's sla_breach budget (default 1);
    ``replay`` serves a replayed tick its figures from its hour's, computed at once;
    ``restarts`` says from which epoch minute each gateway's sla_breach evidence counts;
    ``lateness`` how many minutes late each gateway's rows arrive (None: on time);
    ``noun`` what the rows count, for the messages; ``rules`` which of :data:`RULES` run
    (if enabled); ``volume_lateness`` how many of the newest minutes the volume rules leave
    out, where more than ``lateness`` (a first start's hold).
    (if enabled); ``nowcast`` how much of each gateway's newest minutes is visible by now,
    for the volume rules.
    """
    context = RuleContext(
        config,
        np.array([config.sla_for(g) for g in window.gateways], dtype=np.float64),
        calibration or Calibration(),
        history=history,
        served=None if replay is None else replay.served(window),
        sla_shares=_per_row(window.gateways, sla_shares),
        restarts=restarts,
        lateness=lateness,
        volume_lateness=volume_lateness,
        nowcast=nowcast,
        noun=noun,
    )
    return [rule.evaluate(window, context) for rule in _enabled(rules, config)]


def evaluate_series(
    window: CountWindow,
    config: Config,
    calibration: Calibration,
    rows: SeriesRows,
    sla_shares: Mapping[str, int],
    restarts: npt.NDArray[np.int64] | None = None,
    replay: Replay | None = None,
    lateness: npt.NDArray[np.int64] | None = None,
) -> list[RuleResult]:
    """The verdicts of the enabled :data:`SERIES_RULES` on dimension series, whose rows
    ``rows`` describes; ``replay`` (of the series' counts) and ``lateness`` (per series,
    its gateway's) as in :func:`evaluate`."""
    context = RuleContext(
        config,
        np.array([config.sla_for(g) for g in rows.gateways], dtype=np.float64),
        calibration,
        served=None if replay is None else replay.served(window),
        sla_shares=_per_row(rows.gateways, sla_shares),
        series=rows,
        restarts=restarts,
        lateness=lateness,
    )
    return [rule.evaluate(window, context) for rule in _enabled(SERIES_RULES, config)]
