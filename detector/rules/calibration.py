"""The SLA CUSUM bank's hourly calibration: per gateway (or series), its post-change rates,
dispersion and thresholds, from the history before the hour and the false-alert budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.config import BankRule, Config
from detector.rules.seasonal import VolumeHistory
from detector.rules.verdict import BoolArray
from detector.stats.calibration import estimate_dispersion, quantise_up, threshold_for
from detector.stats.cusum import CusumBank, LiveIncrements, excursions_reaching, member_weights
from detector.stats.seasonal import SLOT_MINUTES
from detector.window import CountWindow

__all__ = [
    "RECOVERY_NATS",
    "Calibration",
    "Thresholds",
    "budget_shares",
    "calibrate",
    "calibration_history",
]

# Once the failures stop, a firing CUSUM clears after this much evidence (odds of 20 to 1)
# rather than after paying back everything the incident accumulated.
RECOVERY_NATS = 3.0
# Past ~1000 payments a minute a minute's log-likelihood ratio is close to normal with
# variance twice its drift, and the ARL in minutes no longer depends on volume (Siegmund):
# thresholds are computed at this volume, which keeps the tabulated distribution small.
_MAX_CALIBRATED_VOLUME = 1024.0
# Payments a minute, by octaves, a threshold must hold at when the traffic is not known yet.
_ANY_VOLUME = tuple(2.0**k for k in range(-2, 11))


def budget_shares(config: Config) -> int:
    """How many detectors share a gateway's false-alert budget equally.

    Every bank member of ``sla_breach`` and of ``latency_breach`` (where latency is
    watched) for a gateway, ``no_data``, ``volume_drop`` and ``decline_rate`` (where the
    source counts declines) each get one share.
    ``outage`` needs none: 90% of at least 5 payments failing at a 2% SLA has odds below
    1e-13 a tick.
    """
    detection = config.detection
    members = len(detection.sla_breach.rates) if detection.sla_breach.enabled else 0
    if config.latency_watched:
        members += len(detection.latency.rates)
    volume_rules = int(detection.no_data.enabled) + int(detection.volume_drop.enabled)
    return max(members + volume_rules + int(config.declines_watched), 1)


@dataclass(frozen=True)
class Thresholds:
    """What the hourly calibration of the CUSUM bank decided for each gateway."""

    hour: int  # epoch hour of the boundary whose history it used
    gateways: tuple[str, ...]
    post_change: npt.NDArray[np.float64]  # (gateways, members); NaN where unused
    threshold: npt.NDArray[np.float64]  # (gateways, members); inf where unused
    rho: npt.NDArray[np.float64]  # quantised beta-binomial dispersion
    mean_payments: npt.NDArray[np.float64]  # busiest hour's payments per minute, quantised
    weights: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]  # per failure, per success
    cap: npt.NDArray[np.float64]  # threshold + RECOVERY_NATS

    def bank(
        self,
        failures: npt.NDArray[np.int64],
        payments: npt.NDArray[np.int64],
        window: int | None = None,
        ends: npt.NDArray[np.int64] | None = None,
        first: npt.NDArray[np.int64] | None = None,
        live: tuple[LiveIncrements, int] | None = None,
    ) -> CusumBank:
        """The CUSUM bank of these thresholds on the counts, each row counting from its
        column in ``first`` (see :class:`~detector.stats.cusum.CusumBank`); ``live``: the
        increments kept from tick to tick of a window ending before that epoch minute."""
        increments = None
        if live is not None:
            increments = live[0].of(failures, payments, self.rho, self.weights, live[1])
        return CusumBank(
            failures, payments, self.rho, self.weights, self.cap, window, ends, first, increments
        )


class Calibration:
    """The SLA CUSUM bank's thresholds from tick to tick.

    Thresholds are recomputed once an hour from the window's history. Only the minutes
    before the current hour boundary are used, so every tick of an hour (live, after a
    restart, or in a backtest) gets the same thresholds from the same data.
    """

    def __init__(self) -> None:
        self._current: Thresholds | None = None
        self._key: tuple[object, ...] = ()
        self._live: dict[str, LiveIncrements] = {}

    def thresholds(
        self,
        window: CountWindow,
        config: Config,
        baselines: npt.NDArray[np.float64],
        shares: npt.NDArray[np.float64] | None = None,
        watched: BoolArray | None = None,
        history: VolumeHistory | None = None,
        rule: BankRule | None = None,
    ) -> Thresholds:
        """``shares``: per row, how many series share its sla_breach budget (default 1);
        ``watched``: the rows tested at all (default every one); ``history``: the rows'
        quarter hours of the last weeks, for their dispersion (rows are gateways);
        ``rule``: the bank's settings (default ``detection.sla_breach``)."""
        hour = (window.end_minute - 1) // 60
        key = (
            hour,
            tuple(window.gateways),
            None if shares is None else shares.tobytes(),
            None if watched is None else watched.tobytes(),
            None if history is None else history.end_hour,
        )
        if self._current is not None and self._key == key:
            return self._current
        self._current = calibrate(
            window, config, baselines, hour, shares, watched, history=history, rule=rule
        )
        self._key = key
        return self._current

    def live(self, rule: str) -> LiveIncrements:
        """``rule``'s bank increments, kept from tick to tick of a live window."""
        return self._live.setdefault(rule, LiveIncrements())


def _hourly_levels(payments: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """(series, 2): mean payments a minute in the quietest and the busiest whole hour.

    The newest columns form the hours; a history shorter than an hour is one block.
    """
    hours = max(payments.shape[1] // 60, 1)
    span = min(hours * 60, payments.shape[1])
    means = payments[:, -span:].reshape(payments.shape[0], hours, span // hours).mean(axis=2)
    return np.stack([means.min(axis=1), means.max(axis=1)], axis=1)


def _per_value(
    values: npt.NDArray[np.float64], function: Callable[[float], float]
) -> npt.NDArray[np.float64]:
    """``function`` of each value, called once per distinct value (rows share their levels)."""
    distinct, where = np.unique(values, return_inverse=True)
    return np.array([function(v) for v in distinct.tolist()], dtype=np.float64)[where.reshape(-1)]


def calibration_history(window: CountWindow, hour: int) -> slice:
    """The window's columns before the boundary of ``hour``: what that hour is calibrated on.

    Only the minutes that every window of the hour holds (all but its last hour), so a
    daemon restarted mid-hour calibrates on the same data as one that ran through.
    """
    boundary = max(window.minutes - (window.end_minute - hour * 60), 1)
    return slice(max(boundary - max(window.minutes - 60, 1), 0), boundary)


def calibrate(
    window: CountWindow,
    config: Config,
    baselines: npt.NDArray[np.float64],
    hour: int,
    shares: npt.NDArray[np.float64] | None = None,
    watched: BoolArray | None = None,
    history: VolumeHistory | None = None,
    rule: BankRule | None = None,
) -> Thresholds:
    """Per row: dispersion and volume of the history before ``hour``, then thresholds.

    A row whose gateway's sla_breach budget is shared by ``shares`` series gets that share
    of it; rows not ``watched`` get no threshold (they never alarm). With ``history`` (the
    rows are gateways), the dispersion also draws on their quarter hours of the last weeks.
    """
    rule = config.detection.sla_breach if rule is None else rule
    recent = calibration_history(window, hour)
    payments, failures = window.payments[:, recent], window.failures[:, recent]
    # Traffic swings through the day, and the members react to it in opposite ways: at low
    # volume a single minute of 1 failure in 2 payments can lift the 50% member, while the
    # 2x member gathers evidence more slowly. Each threshold is the larger of those for the
    # quietest and the busiest hour of the history, so neither regime exceeds the budget.
    # Whole octaves (the quiet level rounded down, the busy one up) keep a handful of
    # cached thresholds per gateway.
    levels = np.minimum(_hourly_levels(payments), _MAX_CALIBRATED_VOLUME)
    busy = _per_value(levels[:, 1], lambda m: quantise_up(m, 1, 1 / 64))
    quiet = _per_value(levels[:, 0], lambda m: quantise_up(m, 1, 1 / 64)) / 2
    # A gateway (or series) first seen less than an hour before the boundary has no traffic
    # level to calibrate on yet: a few minutes of it, or none, would look like a trickle and
    # give the lowest threshold (a new gateway alarmed on 2 failures in 8 payments). Until
    # it has an hour, its thresholds hold at any volume (marked by a level of -1).
    has_payments = payments > 0
    first_seen = np.where(
        has_payments.any(axis=1), np.argmax(has_payments, axis=1), payments.shape[1]
    )
    young = payments.shape[1] - first_seen < 60
    mean_q = busy
    target = 1.0 / (config.detection.false_alerts / budget_shares(config))
    # The mean run length between false alerts scales with the number of series sharing.
    rows = len(window.gateways)
    targets = target * (np.ones(rows) if shares is None else np.asarray(shares, dtype=float))
    members = len(rule.rates)
    tested = np.ones(rows, dtype=bool) if watched is None else np.asarray(watched, dtype=bool)
    post_change = np.full((rows, members), np.nan)
    # Gateways of the same SLA get the same rates: one look-up per distinct SLA.
    p0s, of_row = np.unique(np.asarray(baselines, dtype=np.float64), return_inverse=True)
    for value, p0 in enumerate(p0s):
        rates = rule.post_change_rates(float(p0))
        post_change[(of_row == value) & tested, : len(rates)] = rates

    def thresholds(rho: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # Many rows share their inputs (the SLA, the quantised dispersion and volumes, the
        # budget): the cached search is consulted once per distinct row of inputs.
        inputs = np.column_stack(
            [
                baselines,
                rho,
                targets,
                np.where(young, -1.0, quiet),
                np.where(young, -1.0, busy),
                np.nan_to_num(post_change, nan=-1.0),
            ]
        )
        distinct, of_input = np.unique(inputs, axis=0, return_inverse=True)
        limits = np.full((distinct.shape[0], members), np.inf)
        for d, (p0, r, goal, low, high, *rates) in enumerate(distinct.tolist()):
            volumes = _ANY_VOLUME if low < 0 else {low, high}
            for m, p1 in enumerate(rates):
                if p1 >= 0:
                    limits[d, m] = max(threshold_for(p0, p1, r, volume, goal) for volume in volumes)
        return limits[of_input.reshape(-1)]

    # Burstiness is measured on healthy minutes: those where the CUSUM bank stands at half
    # its threshold or more belong to a breach (or its aftermath) and are left out. The
    # screen allows for the burstiness a first, unscreened estimate found: a binomial bank
    # wanders high on bursty traffic that is merely at the SLA, and leaving those minutes
    # out would hide the very burstiness sought (and cost false alerts).
    def quantised(rho: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return _per_value(rho, lambda r: quantise_up(r, 1, 5e-4))

    quarters = None if history is None else history.outcomes(window.gateways)

    def dispersion(
        in_breach: BoolArray | None = None, quarters_in_breach: BoolArray | None = None
    ) -> npt.NDArray[np.float64]:
        rho = estimate_dispersion(failures, payments, in_breach)
        if quarters is not None:
            # Five hours of minutes cannot show rho 0.005 at 10 payments a minute (Tarone's
            # z about 0.6); four weeks of quarter hours carry nine times the information,
            # the last five hours included. Where a gateway has days of them they decide
            # alone. Pooled, the minutes would pull them down: at a few failures a minute
            # the 4-SD outlier pass trims the skewed tail that carries the variance (four
            # weeks of binomial minutes at 10 a minute read as Tarone's z = -11), and
            # against a week of quarter hours 5 h of minutes weigh almost a third.
            # Their gate is z >= 2: with this much data burstiness that matters shows
            # clearly, while z >= 1 let binomial traffic read as rho 0.004 one hour in six
            # and slowed detection (median delay ratio 1.27 against 1.22 in --quick
            # --history-days 7 --only step, the same false alerts).
            weeks = estimate_dispersion(
                quarters.failures, quarters.payments, quarters_in_breach, SLOT_MINUTES, min_z=2.0
            )
            rho = np.where(quarters.enough, weeks, rho)
        return quantised(rho)

    first = dispersion()
    limits = thresholds(first)

    def screen(
        failures: npt.NDArray[np.signedinteger[Any]],
        payments: npt.NDArray[np.signedinteger[Any]],
        minutes: int = 1,
    ) -> BoolArray:
        """Bins where the bank (at ``first``; bins of ``minutes`` minutes) stands at half its
        threshold or more: a breach or its aftermath."""
        usable = np.isfinite(limits)
        return excursions_reaching(
            failures,
            payments,
            first / minutes,  # a bin's variance: 1 + (N - 1) rho / minutes (estimate_dispersion)
            member_weights(baselines, np.where(usable, post_change, 0.0)),
            0.5 * np.where(usable, limits, np.inf),
        )

    rho_q = dispersion(
        screen(failures, payments),
        None if quarters is None else screen(quarters.failures, quarters.payments, SLOT_MINUTES),
    )
    threshold = limits if np.array_equal(rho_q, first) else thresholds(rho_q)
    return Thresholds(
        hour,
        tuple(window.gateways),
        post_change,
        threshold,
        rho_q,
        mean_q,
        member_weights(baselines, post_change),
        threshold + RECOVERY_NATS,
    )
