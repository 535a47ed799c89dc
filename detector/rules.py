"""Turns a window of counts into verdicts per gateway per rule, with their evidence.

Every rule is computed for all gateways at once with numpy; a :class:`Finding` (the
human-readable verdict) is only built for the gateways the alert lifecycle asks about.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from detector.config import Config
from detector.model import Counts, Evidence
from detector.stats.binomial import (
    binomial_upper_tail,
    poisson_zero_probability,
    wilson_interval,
)
from detector.stats.calibration import estimate_dispersion, quantise_up, threshold_for
from detector.stats.cusum import CusumBank, cusum_bank, member_weights
from detector.stats.seasonal import (
    DEFAULT_SIZE,
    HISTORY_WEEKS,
    SLOT_MINUTES,
    SLOTS_PER_HOUR,
    SLOTS_PER_WEEK,
    level_factor,
    negative_binomial_cdf,
    seasonal_profile,
    tail_matched_size,
)
from detector.timeutil import minute_start
from detector.window import CountWindow

__all__ = [
    "Calibration",
    "Finding",
    "RuleResult",
    "SeriesRows",
    "Thresholds",
    "VolumeHistory",
    "budget_shares",
    "calibrate",
    "evaluate",
    "evaluate_series",
    "minutes_needed",
    "source_down_finding",
]

Severity = Literal["warning", "critical"]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Finding:
    """What one rule concluded about one gateway (or the source) at one tick."""

    rule: str
    gateway: str | None
    severity: Severity
    summary: str
    since: datetime
    evidence: Evidence
    # Labels naming a series within the gateway, e.g. {"method": "card"}; none for the gateway.
    series: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict for every row of the window (a gateway or a series), in order."""

    rule: str
    gateways: list[str]  # the gateway of each row
    active: BoolArray
    build: Callable[[int], Finding]
    # How close each gateway is to alarm: statistic / threshold (1 fires), where the rule has one.
    evidence_ratio: npt.NDArray[np.float64] | None = None
    # Payments expected per minute now (volume rules; NaN without enough history).
    expected_per_minute: npt.NDArray[np.float64] | None = None
    # Labels naming each row's series within its gateway; None where rows are gateways.
    series: list[dict[str, str]] | None = None
    # Rows whose firing alert stays firing though ``active`` no longer holds (a weaker
    # condition that opens no alert); None where the rule has none.
    holding: BoolArray | None = None

    def finding(self, index: int) -> Finding:
        return self.build(index)

    def identity(self, index: int) -> dict[str, str]:
        """The labels of the alert row ``index`` would raise: rule, gateway and series."""
        return {
            "rule": self.rule,
            "gateway": self.gateways[index],
            **(self.series[index] if self.series else {}),
        }

    def concat(self, other: RuleResult) -> RuleResult:
        """One result for the rows of both, e.g. the gateways and their dimension series."""
        first = len(self.gateways)

        def build(index: int) -> Finding:
            return self.build(index) if index < first else other.build(index - first)

        ratio = None
        if self.evidence_ratio is not None and other.evidence_ratio is not None:
            ratio = np.concatenate([self.evidence_ratio, other.evidence_ratio])
        return RuleResult(
            self.rule,
            self.gateways + other.gateways,
            np.concatenate([self.active, other.active]),
            build,
            evidence_ratio=ratio,
            series=(self.series or [{}] * first) + (other.series or [{}] * len(other.gateways)),
        )


@dataclass(frozen=True)
class SeriesRows:
    """Who the rows of a dimension-series window are (``detection.sla_breach.series``)."""

    gateways: list[str]  # the gateway of each row
    labels: list[dict[str, str]]  # e.g. {"method": "card"}
    watched: BoolArray  # enough traffic to be tested (``series_min_payments``)


def series_name(gateway: str, labels: Mapping[str, str]) -> str:
    """``stripe`` or ``stripe (method=card)``: how a message names a series."""
    if not labels:
        return gateway
    return f"{gateway} ({', '.join(f'{k}={v}' for k, v in sorted(labels.items()))})"


@lru_cache(maxsize=64)  # the rules ask for the same few durations every tick
def _minutes(duration: timedelta) -> int:
    return max(1, round(duration.total_seconds() / 60))


def minutes_needed(config: Config) -> int:
    """How many minute buckets the enabled rules look back over."""
    detection = config.detection
    return max(
        _minutes(detection.sla_breach.history),
        _minutes(detection.sla_breach.window),
        _minutes(detection.outage.window),
        _minutes(detection.no_data.silence) + _minutes(detection.no_data.history),
        _minutes(detection.volume_drop.window) + _minutes(detection.volume_drop.history),
    )


def _pct(rate: float) -> str:
    return f"{rate:.1%}" if rate >= 0.001 or rate == 0 else f"{rate:.2%}"


def _rate_evidence(
    failures: int, payments: int, baseline: float, minutes: int, p_value: float | None = None
) -> Evidence:
    low, high = wilson_interval(failures, payments)
    return Evidence(
        value=failures / payments if payments else None,
        interval_low=float(low),
        interval_high=float(high),
        baseline=baseline,
        payments=payments,
        failures=failures,
        window_minutes=minutes,
        p_value=p_value,
    )


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

    Every bank member of ``sla_breach`` for a gateway, ``no_data`` and ``volume_drop`` each
    get one share. ``outage`` needs none: 90% of at least 5 payments failing at a 2% SLA
    has odds below 1e-13 a tick.
    """
    detection = config.detection
    members = len(detection.sla_breach.rates) if detection.sla_breach.enabled else 0
    volume_rules = int(detection.no_data.enabled) + int(detection.volume_drop.enabled)
    return max(members + volume_rules, 1)


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

    def bank_parameters(
        self,
    ) -> tuple[
        npt.NDArray[np.float64],
        tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
        npt.NDArray[np.float64],
    ]:
        """What a :class:`CusumBank` takes besides the counts: rho, weights and ceilings."""
        return self.rho, self.weights, self.cap


class Calibration:
    """The SLA CUSUM bank's state from tick to tick: its hourly thresholds and statistics.

    Thresholds are recomputed once an hour from the window's history. Only the minutes
    before the current hour boundary are used, so every tick of an hour (live, after a
    restart, or in a backtest) gets the same thresholds from the same data.

    A replay knows the counts of every tick before it starts (``final``): every rule's
    verdicts on all the windows of an hour (the bank's statistics, the volume rules' and the
    outage rule's figures) are then computed at once, and each tick whose window holds
    exactly those counts is served its own. The numbers are the same bit for bit either way
    (see :mod:`detector.stats.cusum` and :class:`_Windows`); a window that differs is
    computed on its own.
    """

    def __init__(self, final: Counts | None = None) -> None:
        self._current: Thresholds | None = None
        self._key: tuple[object, ...] = ()
        self._final = final
        self._hour: _HourOfWindows | None = None

    def thresholds(
        self,
        window: CountWindow,
        config: Config,
        baselines: npt.NDArray[np.float64],
        shares: npt.NDArray[np.float64] | None = None,
        watched: BoolArray | None = None,
        history: VolumeHistory | None = None,
    ) -> Thresholds:
        """``shares``: per row, how many series share its sla_breach budget (default 1);
        ``watched``: the rows tested at all (default every one); ``history``: the rows'
        quarter hours of the last weeks, for their dispersion (rows are gateways)."""
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
        self._current = calibrate(window, config, baselines, hour, shares, watched, history=history)
        self._key = key
        return self._current

    def hour_of(self, window: CountWindow) -> _Served | None:
        """In a replay: the hour of windows this one belongs to, and its index there, if it
        holds exactly the final counts (then every rule is served its verdicts from the
        hour's, computed at once)."""
        if self._final is None:
            return None
        hour = (window.end_minute - 1) // 60
        if self._hour is None or not self._hour.covers(window, hour):
            self._hour = _HourOfWindows.of(self._final, window, hour)
        index = self._hour.index_of(window)
        return None if index is None else _Served(self._hour, index)

    def quiet(self, end_minute: int, rules: Iterable[str]) -> bool:
        """In a replay: whether the hour's verdicts say that none of ``rules`` is active for
        any gateway in the window ending before ``end_minute``, as computed at an earlier
        tick of the same hour (with the same thresholds and volume history, which change
        only with the hour), and no gateway appears in the hour that they do not cover."""
        hour = self._hour
        if hour is None or hour.hour != (end_minute - 1) // 60:
            return False
        index = end_minute - (hour.hour * 60 + 1)
        return hour.quiet(index, rules)

    def bank(
        self, window: CountWindow, limits: Thresholds, served: _Served | None = None
    ) -> tuple[CusumBank, int]:
        """The bank holding the window's statistics, and the index of the window in it."""
        if served is not None:
            return served.hour.bank(limits), served.index
        return CusumBank(window.failures, window.payments, *limits.bank_parameters()), 0


@dataclass(frozen=True)
class _Windows:
    """The windows of one or more ticks over the same rows: tick ``t``'s window is the
    ``minutes`` columns before column ``ends[t]`` of the count matrices.

    A live tick has one (its window); a replay the 60 of an hour, whose counts it knows.
    The rules compute their verdicts for every tick at once, with the same operations
    either way, so each tick's numbers are the same bit for bit.
    """

    gateways: list[str]
    payments: npt.NDArray[np.int64]  # (rows, columns)
    failures: npt.NDArray[np.int64]
    volume: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]  # (ticks,), ascending
    minutes: int
    end_minute: int  # epoch minute after the last column

    @classmethod
    def of(cls, window: CountWindow) -> _Windows:
        one = np.array([window.minutes])
        return cls(
            window.gateways,
            window.payments,
            window.failures,
            window.volume,
            one,
            window.minutes,
            window.end_minute,
        )

    @property
    def end_minutes(self) -> npt.NDArray[np.int64]:
        """Epoch minute after each tick's window."""
        return self.end_minute - self.payments.shape[1] + self.ends

    def recent(self, counts: npt.NDArray[np.int64], minutes: int) -> npt.NDArray[np.int64]:
        """(ticks, rows): each tick's sum of ``counts`` over the last ``minutes`` of its window."""
        minutes = min(minutes, self.minutes)
        if self.ends.size == 1:  # a live tick: a plain sum (integers: the same either way)
            stop = int(self.ends[0])
            return np.asarray(counts[:, stop - minutes : stop].sum(axis=1)[None, :], dtype=np.int64)
        first = int(self.ends[0]) - minutes  # only the columns some tick sums (ends ascend)
        part = counts[:, first : int(self.ends[-1])]
        total = np.zeros((counts.shape[0], part.shape[1] + 1), dtype=np.int64)
        np.cumsum(part, axis=1, out=total[:, 1:])
        end = self.ends - first
        return np.asarray((total[:, end] - total[:, end - minutes]).T, dtype=np.int64)

    def newest_first(self, counts: npt.NDArray[np.int64], minutes: int) -> npt.NDArray[np.int64]:
        """(ticks, rows, minutes): each tick's last ``minutes`` of ``counts``, newest first."""
        minutes = min(minutes, self.minutes)
        if self.ends.size == 1:  # a live tick: a view of its last minutes
            end = int(self.ends[0])
            return counts[None, :, end - 1 : (end - minutes - 1 if end > minutes else None) : -1]
        columns = self.ends[:, None] - 1 - np.arange(minutes)[None, :]
        return counts[:, columns].transpose(1, 0, 2)


class _Verdicts(Protocol):
    """A rule's arrays for every tick, one row a tick, one column a gateway (or more)."""

    @property
    def active(self) -> BoolArray: ...

    def row(self, tick: int) -> Any: ...


@dataclass(frozen=True)
class _Served:
    """A replayed tick's place among its hour's windows."""

    hour: _HourOfWindows
    index: int

    def verdicts(self, rule: str, depends: object, compute: Callable[[_Windows], _Verdicts]) -> Any:
        """This tick's row of ``rule``'s verdicts, computed once for the hour."""
        return self.hour.verdicts(rule, depends, compute).row(self.index)


class _HourOfWindows:
    """The windows of every tick of one hour, cut from final counts, and what the rules
    computed for all of them at once."""

    ticks = 60  # windows ending after the hour's minutes 0, 1, ..., 59

    def __init__(self, hour: int, span: CountWindow, gateways: list[str], minutes: int):
        self.hour = hour
        self.span = span  # from the first window's oldest minute to the last window's newest
        self.gateways = list(gateways)
        # Rows of gateways first seen later in the hour come after the window's own.
        rows = len(gateways)
        self.windows = _Windows(
            self.gateways,
            span.payments[:rows],
            span.failures[:rows],
            span.volume[:rows],
            np.arange(minutes, span.minutes + 1),
            minutes,
            span.end_minute,
        )
        self._banks: tuple[Thresholds, CusumBank] | None = None
        self._verdicts: dict[str, tuple[object, _Verdicts]] = {}
        self._busy: dict[str, list[bool]] = {}

    @classmethod
    def of(cls, final: Counts, window: CountWindow, hour: int) -> _HourOfWindows:
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

    def bank(self, limits: Thresholds) -> CusumBank:
        if self._banks is None or self._banks[0] is not limits:
            windows = self.windows
            bank = CusumBank(
                windows.failures,
                windows.payments,
                *limits.bank_parameters(),
                windows.minutes,
                windows.ends,
            )
            self._banks = (limits, bank)
        return self._banks[1]

    def verdicts(
        self, rule: str, depends: object, compute: Callable[[_Windows], _Verdicts]
    ) -> _Verdicts:
        """``rule``'s verdicts for the hour, recomputed if what they depend on (the volume
        history) is another object."""
        known = self._verdicts.get(rule)
        if known is None or known[0] is not depends:
            known = (depends, compute(self.windows))
            self._verdicts[rule] = known
            # Per tick, whether the rule is active for any gateway (a replay's quiet ticks).
            busy: BoolArray = np.asarray(known[1].active.reshape(self.ticks, -1).any(axis=1))
            self._busy[rule] = [bool(b) for b in busy]
        return known[1]


def _hourly_levels(payments: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """(series, 2): mean payments a minute in the quietest and the busiest whole hour.

    The newest columns form the hours; a history shorter than an hour is one block.
    """
    hours = max(payments.shape[1] // 60, 1)
    span = min(hours * 60, payments.shape[1])
    means = payments[:, -span:].reshape(payments.shape[0], hours, span // hours).mean(axis=2)
    return np.stack([means.min(axis=1), means.max(axis=1)], axis=1)


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
) -> Thresholds:
    """Per row: dispersion and volume of the history before ``hour``, then thresholds.

    A row whose gateway's sla_breach budget is shared by ``shares`` series gets that share
    of it; rows not ``watched`` get no threshold (they never alarm). With ``history`` (the
    rows are gateways), the dispersion also draws on their quarter hours of the last weeks.
    """
    rule = config.detection.sla_breach
    recent = calibration_history(window, hour)
    payments, failures = window.payments[:, recent], window.failures[:, recent]
    # Traffic swings through the day, and the members react to it in opposite ways: at low
    # volume a single minute of 1 failure in 2 payments can lift the 50% member, while the
    # 2x member gathers evidence more slowly. Each threshold is the larger of those for the
    # quietest and the busiest hour of the history, so neither regime exceeds the budget.
    # Whole octaves (the quiet level rounded down, the busy one up) keep a handful of
    # cached thresholds per gateway.
    levels = np.minimum(_hourly_levels(payments), _MAX_CALIBRATED_VOLUME)
    quiet = [quantise_up(float(m), 1, 1 / 64) / 2 for m in levels[:, 0]]
    busy = [quantise_up(float(m), 1, 1 / 64) for m in levels[:, 1]]
    volumes = [{q, b} for q, b in zip(quiet, busy, strict=True)]
    # A gateway (or series) first seen less than an hour before the boundary has no traffic
    # level to calibrate on yet: a few minutes of it, or none, would look like a trickle and
    # give the lowest threshold (a new gateway alarmed on 2 failures in 8 payments). Until
    # it has an hour, its thresholds hold at any volume.
    has_payments = payments > 0
    first_seen = np.where(
        has_payments.any(axis=1), np.argmax(has_payments, axis=1), payments.shape[1]
    )
    for young in np.flatnonzero(payments.shape[1] - first_seen < 60):
        volumes[int(young)] = set(_ANY_VOLUME)
    mean_q = np.array(busy)
    target = 1.0 / (config.detection.false_alerts / budget_shares(config))
    # The mean run length between false alerts scales with the number of series sharing.
    targets = target * (np.ones(len(window.gateways)) if shares is None else shares)
    members = len(rule.rates)
    post_change = np.full((len(window.gateways), members), np.nan)
    for g, p0 in enumerate(baselines):
        if watched is not None and not watched[g]:
            continue
        rates = rule.post_change_rates(float(p0))
        post_change[g, : len(rates)] = rates

    def thresholds(rho: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        limits = np.full(post_change.shape, np.inf)
        for g, m in zip(*np.nonzero(np.isfinite(post_change)), strict=True):
            p0, p1 = float(baselines[g]), float(post_change[g, m])
            limits[g, m] = max(
                threshold_for(p0, p1, float(rho[g]), volume, float(targets[g]))
                for volume in volumes[g]
            )
        return limits

    # Burstiness is measured on healthy minutes: those where the CUSUM bank stands at half
    # its threshold or more belong to a breach (or its aftermath) and are left out. The
    # screen allows for the burstiness a first, unscreened estimate found: a binomial bank
    # wanders high on bursty traffic that is merely at the SLA, and leaving those minutes
    # out would hide the very burstiness sought (and cost false alerts).
    def quantised(rho: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.array([quantise_up(float(r), 1, 5e-4) for r in rho])

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

    plain = thresholds(np.zeros(len(window.gateways)))
    first = dispersion()
    limits = thresholds(first) if first.any() else plain

    def screen(
        failures: npt.NDArray[np.int64], payments: npt.NDArray[np.int64], minutes: int = 1
    ) -> BoolArray:
        """Bins where the bank (at ``first``; bins of ``minutes`` minutes) stands at half its
        threshold or more: a breach or its aftermath."""
        usable = np.isfinite(limits)
        bank = cusum_bank(
            failures,
            payments,
            baselines,
            np.where(usable, post_change, 0.0),
            first / minutes,  # a bin's variance: 1 + (N - 1) rho / minutes (estimate_dispersion)
            np.full(limits.shape, np.inf),
            ends=np.arange(1, payments.shape[1] + 1),  # the statistic at every bin
        )
        half = 0.5 * np.where(usable, limits, np.inf)
        return np.asarray((bank.statistics >= half).any(axis=2).T, dtype=bool)

    rho_q = dispersion(
        screen(failures, payments),
        None if quarters is None else screen(quarters.failures, quarters.payments, SLOT_MINUTES),
    )
    threshold = thresholds(rho_q) if rho_q.any() else plain
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


class _BankVerdicts(NamedTuple):
    """Per tick and row: the SLA bank's statistics and how they stand against the thresholds."""

    statistics: npt.NDArray[np.float64]  # (..., members)
    active: BoolArray
    leader: npt.NDArray[np.int64]  # the member closest to (or furthest past) alarm
    closest: npt.NDArray[np.float64]  # that member's statistic / threshold

    def row(self, tick: int) -> _BankVerdicts:
        return _BankVerdicts(*(a[tick] for a in self))


def _bank_verdicts(bank: CusumBank, limits: Thresholds) -> _BankVerdicts:
    # Unused members (NaN rate, infinite threshold) stay at 0 and never alarm.
    ratio = bank.statistics / limits.threshold
    active: BoolArray = np.asarray((ratio >= 1.0).any(axis=2), dtype=bool)
    return _BankVerdicts(bank.statistics, active, np.argmax(ratio, axis=2), ratio.max(axis=2))


def _sla_breach(
    window: CountWindow,
    config: Config,
    baselines: npt.NDArray[np.float64],
    calibration: Calibration,
    shares: npt.NDArray[np.float64] | None = None,
    rows: SeriesRows | None = None,
    served: _Served | None = None,
    history: VolumeHistory | None = None,
) -> RuleResult:
    rule = config.detection.sla_breach
    limits = calibration.thresholds(
        window, config, baselines, shares, None if rows is None else rows.watched, history
    )
    gateways = window.gateways if rows is None else rows.gateways
    labels: list[dict[str, str]] = [{}] * len(gateways) if rows is None else rows.labels
    bank, this = calibration.bank(window, limits, served)
    verdicts: _BankVerdicts = _verdicts(
        window, served, "sla_breach", limits, lambda _: _bank_verdicts(bank, limits)
    )
    statistics, active, leader, closest = verdicts
    explain = _minutes(rule.window)
    first_minute = window.end_minute - window.minutes

    def build(i: int) -> Finding:
        name = series_name(gateways[i], labels[i])
        m = int(leader[i])
        p0 = float(baselines[i])
        start = min(bank.start(i, m, this), window.minutes - 1)
        # Firing: the figures since the estimated change, undiluted by the healthy minutes
        # before it. Otherwise: the recent minutes that are back within the SLA.
        shown = (
            slice(start, window.minutes) if active[i] else _recovered_span(window, i, explain, p0)
        )
        n, k = int(window.payments[i, shown].sum()), int(window.failures[i, shown].sum())
        span = shown.stop - shown.start
        excursion_n = int(window.payments[i, start:].sum())
        estimate = window.failures[i, start:].sum() / excursion_n if excursion_n else 0.0
        rate = k / n if n else 0.0
        since = minute_start(first_minute + start)
        p_value = float(binomial_upper_tail(k, n, p0)) if n else 1.0
        statistic, threshold = float(statistics[i, m]), float(limits.threshold[i, m])
        severity: Severity = "critical" if estimate >= rule.critical_factor * p0 else "warning"
        if active[i]:
            summary = (
                f"{name}: {_pct(rate)} of {n} payments failed since "
                f"{since:%H:%M} ({span} min), above the {_pct(p0)} SLA "
                f"(CUSUM {statistic:.1f} >= {threshold:.1f}, p = {p_value:.1e})"
            )
        elif rate <= p0:
            summary = (
                f"{name}: failure rate {_pct(rate)} over the last {span} min, "
                f"back within the {_pct(p0)} SLA"
            )
        else:
            # The evidence of a breach has faded, but no recent stretch is under the SLA yet.
            summary = (
                f"{name}: failure rate {_pct(rate)} over the last {span} min, "
                f"no longer clearly above the {_pct(p0)} SLA "
                f"(CUSUM {statistic:.1f} < {threshold:.1f})"
            )
        evidence = replace(
            _rate_evidence(k, n, p0, span, p_value),
            statistic=statistic,
            threshold=threshold,
            dispersion=float(limits.rho[i]),
            magnitude=float(estimate / p0),
        )
        return Finding("sla_breach", gateways[i], severity, summary, since, evidence, labels[i])

    return RuleResult(
        "sla_breach",
        list(gateways),
        active,
        build,
        evidence_ratio=closest,
        series=None if rows is None else rows.labels,
    )


def _recovered_span(window: CountWindow, i: int, longest: int, p0: float) -> slice:
    """The longest run of recent minutes (at most ``longest``) whose failure rate is within
    ``p0``, so a resolution does not quote a rate still diluted by the incident; the whole
    ``longest`` minutes if there is none."""
    columns = window.recent(longest)
    payments = np.cumsum(window.payments[i, columns][::-1])
    failures = np.cumsum(window.failures[i, columns][::-1])
    within = np.flatnonzero((payments > 0) & (failures <= p0 * payments))
    length = int(within[-1]) + 1 if within.size else payments.size
    return slice(window.minutes - length, window.minutes)


class _Outages(NamedTuple):
    """Per tick and gateway: whether some suffix of the last minutes is down."""

    active: BoolArray
    span: npt.NDArray[np.int64]  # the longest qualifying suffix
    payments: npt.NDArray[np.int64]  # (..., minutes): payments in the last 1, 2, ... minutes
    failures: npt.NDArray[np.int64]

    def row(self, tick: int) -> _Outages:
        return _Outages(*(a[tick] for a in self))


def _outages(windows: _Windows, config: Config) -> _Outages:
    rule = config.detection.outage
    minutes = _minutes(rule.window)
    # Suffix sums: the last 1, 2, ... minutes, so a fresh outage is not diluted by the
    # healthy minutes before it.
    recent_payments = np.cumsum(windows.newest_first(windows.payments, minutes), axis=2)
    recent_failures = np.cumsum(windows.newest_first(windows.failures, minutes), axis=2)
    qualifies = (recent_payments >= rule.min_payments) & (
        recent_failures >= rule.failure_rate * recent_payments
    )
    active: BoolArray = np.asarray(qualifies.any(axis=2), dtype=bool)
    span = qualifies.shape[2] - np.argmax(qualifies[:, :, ::-1], axis=2)
    return _Outages(active, span, recent_payments, recent_failures)


def _outage(
    window: CountWindow,
    config: Config,
    baselines: npt.NDArray[np.float64],
    served: _Served | None = None,
) -> RuleResult:
    rule = config.detection.outage
    columns = window.recent(_minutes(rule.window))
    outages: _Outages = _verdicts(window, served, "outage", None, lambda w: _outages(w, config))
    active, span = outages.active, outages.span
    recent_payments, recent_failures = outages.payments, outages.failures

    def build(i: int) -> Finding:
        if active[i]:
            length = int(span[i])
        else:
            # Cleared: the minutes since the last one that looked down, if any in the window.
            payments, failures = window.payments[i, columns], window.failures[i, columns]
            down = np.flatnonzero((payments > 0) & (failures >= rule.failure_rate * payments))
            length = payments.size - int(down[-1]) - 1 if down.size else payments.size
            length = max(length, 1)
        n, k = int(recent_payments[i, length - 1]), int(recent_failures[i, length - 1])
        p0 = float(baselines[i])
        summary = (
            f"{window.gateways[i]} is down: {k} of {n} payments failed in the last {length} min"
            if active[i]
            else f"{window.gateways[i]} is no longer down: {k} of {n} payments failed in the "
            f"last {length} min"
        )
        p_value = float(binomial_upper_tail(k, n, p0)) if n else None
        return Finding(
            "outage",
            window.gateways[i],
            "critical",
            summary,
            minute_start(window.end_minute - length),
            _rate_evidence(k, n, p0, length, p_value),
        )

    return RuleResult("outage", window.gateways, active, build)


def _verdicts(
    window: CountWindow,
    served: _Served | None,
    rule: str,
    depends: object,
    compute: Callable[[_Windows], _Verdicts],
) -> Any:
    """A rule's verdicts on the window: in a replay, its row of the hour's; else computed."""
    if served is not None:
        return served.verdicts(rule, depends, compute)
    return compute(_Windows.of(window)).row(0)


@dataclass(frozen=True)
class _Season:
    """What the volume history says about each gateway, computed once per hour."""

    first_slot: int  # epoch quarter hour of ``usual``'s first column
    usual: npt.NDArray[np.float64]  # (gateways, slots): usual payments per quarter hour
    level: npt.NDArray[np.float64]  # today's level against the usual
    size: npt.NDArray[np.float64]  # negative-binomial size of the quarter-hour noise
    weeks: npt.NDArray[np.int64]  # whole weeks of history
    levels: npt.NDArray[np.float64]  # the level at every slot boundary of the history
    seen: npt.NDArray[np.int64]  # column of each gateway's first known slot


# Fewer days of quarter hours than this add little to the count window's minutes (at equal
# volume 300 quarter hours weigh as much as 300 minutes) and overlap them: the dispersion
# of such a gateway comes from its minutes alone.
DISPERSION_HISTORY_DAYS = 3


@dataclass(frozen=True)
class _QuarterHours:
    """Final payments and failures per (gateway, quarter hour) of the history."""

    payments: npt.NDArray[np.int64]
    failures: npt.NDArray[np.int64]
    enough: BoolArray  # at least DISPERSION_HISTORY_DAYS of history


# Per gateway and hour the payments expected, and per gateway the negative-binomial size.
_HourlyExpectation = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


@dataclass(frozen=True)
class VolumeHistory:
    """Payment volume per quarter hour of the weeks before ``end_hour`` (aggregated by the
    database)."""

    end_hour: int  # the first hour not included: the current, incomplete one
    counts: Counts  # per (gateway, quarter hour); ``minute`` is the quarter's first minute
    _seasons: dict[tuple[str, ...], _Season] = field(default_factory=dict, compare=False)
    _outcomes: dict[tuple[str, ...], _QuarterHours] = field(default_factory=dict, compare=False)
    _slots: dict[tuple[str, ...], tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]] = field(
        default_factory=dict, compare=False
    )
    _expected: dict[tuple[tuple[str, ...], int], _HourlyExpectation] = field(
        default_factory=dict, compare=False
    )
    _last_span: list[Any] = field(default_factory=lambda: [None, None], compare=False)

    @classmethod
    def hours_needed(cls) -> int:
        return HISTORY_WEEKS * SLOTS_PER_WEEK // SLOTS_PER_HOUR

    def season(self, gateways: list[str]) -> _Season:
        key = tuple(gateways)
        if key not in self._seasons:
            self._seasons[key] = self._season(gateways)
        return self._seasons[key]

    def outcomes(self, gateways: list[str]) -> _QuarterHours:
        """Each gateway's final payments and failures per quarter hour (for its dispersion)."""
        key = tuple(gateways)
        if key not in self._outcomes:
            matrices, seen = self._per_slot(gateways)
            payments, failures = matrices[1], matrices[2]
            days = (payments.shape[1] - seen) / (24 * SLOTS_PER_HOUR)
            self._outcomes[key] = _QuarterHours(
                payments.astype(np.int64),
                failures.astype(np.int64),
                days >= DISPERSION_HISTORY_DAYS,
            )
        return self._outcomes[key]

    def _per_slot(
        self, gateways: list[str]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """(volume/payments/failures, gateways, slots) over the history, 0 where a quarter
        hour had no row, and the column of each gateway's first row (for the hour)."""
        key = tuple(gateways)
        if key in self._slots:
            return self._slots[key]
        slots = HISTORY_WEEKS * SLOTS_PER_WEEK
        first = self.end_hour * SLOTS_PER_HOUR - slots
        column = self.counts.minute // SLOT_MINUTES - first
        # A hash lookup in C: a Python dict per row cost more than the rest of the hour.
        rows = pd.Index(gateways).get_indexer(self.counts.gateway).astype(np.int64)
        keep = (rows >= 0) & (column >= 0) & (column < slots)
        matrices = np.zeros((3, len(gateways), slots))
        values = (self.counts.volume, self.counts.payments, self.counts.failures)
        matrices[:, rows[keep], column[keep]] = np.stack(values)[:, keep]
        seen = np.full(len(gateways), slots)
        np.minimum.at(seen, rows[keep], column[keep])
        self._slots[key] = (matrices, seen)
        return matrices, seen

    def _season(self, gateways: list[str]) -> _Season:
        slots = HISTORY_WEEKS * SLOTS_PER_WEEK
        first = self.end_hour * SLOTS_PER_HOUR - slots
        matrices, seen = self._per_slot(gateways)
        volume = matrices[0].copy()
        # Before a gateway's first payment its volume is unknown, not zero.
        volume[np.arange(slots)[None, :] < seen[:, None]] = np.nan
        weeks = (slots - seen) // SLOTS_PER_WEEK
        # The usual volume of every slot of the history and of the current hour.
        usual = seasonal_profile(volume, np.arange(slots + SLOTS_PER_HOUR))
        level = level_factor(volume, usual[:, :slots])
        # The noise: every past slot against the expectation the rule had for it then (each
        # hour's level is the one measured at its start), fitted on the lower tail.
        hour_start = np.arange(slots) // SLOTS_PER_HOUR * SLOTS_PER_HOUR
        replayed = usual[:, :slots] * level[:, hour_start]
        size = tail_matched_size(volume, replayed)
        return _Season(first, usual, level[:, slots], size, weeks, level, seen)

    # --- for the status page's expected band ------------------------------------------------

    def expected_hours(self, gateways: list[str], first_hour: int) -> _HourlyExpectation:
        """Payments the volume rules expected in each hour from ``first_hour`` (epoch hours,
        at most a week back) to the current one, as they expected them during that hour:
        the usual volume of its quarter hours times the level measured at its start. NaN
        where a gateway had less than a week of history then. Also each gateway's
        negative-binomial size.

        The current hour's value is what the rules use now. (An earlier hour sees at most
        the weeks before it that this history holds.)
        """
        key = (tuple(gateways), first_hour)
        if key not in self._expected:
            self._expected[key] = self._expected_hours(gateways, first_hour)
        return self._expected[key]

    def _expected_hours(self, gateways: list[str], first_hour: int) -> _HourlyExpectation:
        season = self.season(gateways)
        # Column of each hour's first slot, from first_hour to the current hour.
        start = np.arange(first_hour, self.end_hour + 1) * SLOTS_PER_HOUR - season.first_slot
        slots = start[:, None] + np.arange(SLOTS_PER_HOUR)
        # During an hour the rule expected its slots' usual volume times the level measured
        # at the hour's start (as the noise fit replays it), once it had a week of history.
        expected = season.usual[:, slots].sum(axis=2) * season.levels[:, start]
        week_then = start[None, :] - season.seen[:, None] >= SLOTS_PER_WEEK
        return np.where(week_then, expected, np.nan), season.size


@dataclass(frozen=True)
class _Expectation:
    """Seasonal expectation of the volume in each tick's last minutes, per gateway."""

    expected: npt.NDArray[np.float64]  # (ticks, gateways): payments expected; NaN without history
    size: npt.NDArray[np.float64]  # negative-binomial size
    weeks: npt.NDArray[np.int64]


def _seasonal(windows: _Windows, history: VolumeHistory, minutes: int) -> _Expectation:
    # no_data and volume_drop usually look at the same span (15 min): computed once a tick.
    key = (tuple(windows.gateways), windows.end_minutes.tobytes(), minutes)
    if history._last_span[0] != key:
        history._last_span[:] = [key, _span_expectation(windows, history, minutes)]
    expectation: _Expectation = history._last_span[1]
    return expectation


def _span_expectation(windows: _Windows, history: VolumeHistory, minutes: int) -> _Expectation:
    season = history.season(windows.gateways)
    end = windows.end_minutes
    first = end - minutes
    first_slot = first // SLOT_MINUTES
    slots = (end - 1) // SLOT_MINUTES - first_slot + 1  # quarter hours each span touches
    usual = np.zeros((end.size, len(windows.gateways)))
    last_column = season.usual.shape[1] - 1
    for j in range(int(slots.max())):
        # Each quarter hour the span touches adds its usual volume times its share of the
        # span, one term at a time: an hour of ticks sums in the same order as one tick.
        slot = first_slot + j
        overlap = np.minimum((slot + 1) * SLOT_MINUTES, end) - np.maximum(
            slot * SLOT_MINUTES, first
        )
        column = np.minimum(np.maximum(slot - season.first_slot, 0), last_column)
        share = season.usual[:, column].T * (overlap / SLOT_MINUTES)[:, None]
        if j >= slots.min():  # some spans touch fewer quarter hours: they add nothing
            share = np.where((j < slots)[:, None], share, 0.0)
        usual = usual + share
    expected = usual * season.level
    known = (season.weeks >= 1) & np.isfinite(expected)
    return _Expectation(np.where(known, expected, np.nan), season.size, season.weeks)


def _volume_alpha(config: Config) -> float:
    """Each tick is one chance of a false alert: a volume rule's share of the budget per tick."""
    return (
        config.detection.false_alerts
        / budget_shares(config)
        * (config.schedule.interval.total_seconds() / 60)
    )


def _mean_before(
    counts: npt.NDArray[np.int64],
    stop: npt.NDArray[np.int64],
    lengths: tuple[int, ...],
    first: npt.ArrayLike = 0,
) -> npt.NDArray[np.float64]:
    """(lengths, *stop.shape): per row (the last axis of ``stop``), the mean count a minute
    over each length of columns before column ``stop``, none before column ``first`` (the
    window's beginning; fewer there, 0 where there are none)."""
    total = np.zeros((counts.shape[0], counts.shape[1] + 1))
    np.cumsum(counts, axis=1, out=total[:, 1:])
    start = np.maximum(stop[None, ...] - np.array(lengths).reshape(-1, *[1] * stop.ndim), first)
    rows = np.arange(counts.shape[0])
    span = stop[None, ...] - start
    sums = total[rows, stop][None, ...] - total[rows, start]
    return np.divide(sums, span, out=np.zeros(span.shape), where=span > 0)


def _rate_before(
    volume: npt.NDArray[np.int64],
    stop: npt.NDArray[np.int64],
    history: int,
    span: int,
    first: npt.ArrayLike = 0,
) -> npt.NDArray[np.float64]:
    """Per row, the payments a minute the volume rules expect without a week of history:
    the lower of the mean rates over the ``history`` and over the ``2 * span`` minutes
    before column ``stop`` (none before column ``first``, the window's beginning). Traffic
    falling into the night has its latest rate lower than its long one, so the evening
    decline does not look like a drop or a silence; traffic rising in the morning has its
    long rate lower, which errs towards a later alert."""
    return _mean_before(volume, stop, (history, min(history, 2 * span)), first).min(axis=0)


# How far back a first-week drop is followed to the traffic before it began: blocks of
# minutes, at most this many of them.
DROP_BLOCK_MINUTES, DROP_BLOCKS = 5, 9


def _rate_before_drop(
    volume: npt.NDArray[np.int64],
    stop: npt.NDArray[np.int64],
    history: int,
    span: int,
    below: float,
    first: npt.ArrayLike = 0,
) -> npt.NDArray[np.float64]:
    """:func:`_rate_before` column ``stop``, or before the drop that ``stop`` is in: the whole
    blocks of ``DROP_BLOCK_MINUTES`` just before ``stop`` (up to ``DROP_BLOCKS``) whose
    volume is below ``below`` times the mean rate over ``history`` belong to a drop that
    began before the window, and the rate is the one before them."""
    offsets = np.arange(DROP_BLOCKS).reshape(-1, *[1] * stop.ndim) * DROP_BLOCK_MINUTES
    ends = stop[None, ...] - offsets
    whole = ends - DROP_BLOCK_MINUTES >= np.asarray(first)
    blocks = _mean_before(volume, np.maximum(ends, DROP_BLOCK_MINUTES), (DROP_BLOCK_MINUTES,))[0]
    # Against the long rate: the latest one already holds the drop's first minutes.
    long_rate = _mean_before(volume, stop, (history,), first)[0]
    low = whole & (blocks < below * long_rate[None, ...])
    run = np.cumprod(low, axis=0).sum(axis=0)  # consecutive low blocks from ``stop`` back
    return _rate_before(volume, stop - run * DROP_BLOCK_MINUTES, history, span, first)


def _per_minute(rate: float) -> str:
    """``28``, ``1.4``, ``0.25``: a rate a minute to two significant figures or more.

    >>> [_per_minute(r) for r in (28.4, 1.43, 0.254, 0.0)]
    ['28', '1.4', '0.25', '0']
    """
    return f"{rate:.0f}" if rate >= 10 or rate == 0 else f"{rate:.2g}"


class _Silences(NamedTuple):
    """Per tick and gateway: the no_data rule's figures."""

    recent: npt.NDArray[np.int64]  # payments in the last ``silence`` minutes
    silent_for: npt.NDArray[np.int64]  # minutes since the last payment (the window if none)
    expected: npt.NDArray[np.float64]
    chance: npt.NDArray[np.float64]  # of no payment at all
    seasonal: BoolArray  # the expectation is the seasonal one
    active: BoolArray

    def row(self, tick: int) -> _Silences:
        return _Silences(*(a[tick] for a in self))


def _silences(windows: _Windows, config: Config, history: VolumeHistory | None) -> _Silences:
    rule = config.detection.no_data
    silence, hours = _minutes(rule.silence), _minutes(rule.history)
    recent = windows.recent(windows.volume, silence)
    # Without a week of history: the traffic before the silence began (not before the last
    # few minutes, or a long silence would lower its own expectation and resolve while the
    # gateway is still dead), and the lower of the long and the latest rate, so traffic
    # falling into the night does not look like a silent gateway.
    columns = np.arange(windows.volume.shape[1])
    last_seen = np.maximum.accumulate(np.where(windows.volume > 0, columns, -1), axis=1)
    last_seen = last_seen[:, windows.ends - 1].T
    first = (windows.ends - windows.minutes)[:, None]  # each tick's first column
    end = windows.ends[:, None]
    silent_for = np.where(last_seen >= first, end - 1 - last_seen, windows.minutes)
    stop = end - np.maximum(silent_for, silence)
    simple = _rate_before(windows.volume, stop, hours, silence, first) * silence
    chance = poisson_zero_probability(simple)
    seasonal = np.zeros(recent.shape, dtype=bool)
    if history is not None:
        season = _seasonal(windows, history, silence)
        seasonal = np.isfinite(season.expected)
        expected = np.where(seasonal, season.expected, simple)
        chance = np.where(seasonal, negative_binomial_cdf(0, expected, season.size), chance)
    else:
        expected = simple
    active = (recent == 0) & (chance < _volume_alpha(config))
    return _Silences(recent, silent_for, expected, chance, seasonal, active)


def _no_data(
    window: CountWindow,
    config: Config,
    history: VolumeHistory | None,
    served: _Served | None = None,
) -> RuleResult:
    rule = config.detection.no_data
    silence, hours = _minutes(rule.silence), _minutes(rule.history)
    silences: _Silences = _verdicts(
        window, served, "no_data", history, lambda w: _silences(w, config, history)
    )
    recent, silent_for, expected, chance, seasonal, active = silences

    def build(i: int) -> Finding:
        has_volume = window.volume[i] > 0
        last_seen = window.minutes - int(np.argmax(has_volume[::-1]))  # column after the last row
        since_minute = window.end_minute - window.minutes + last_seen
        basis = (
            "for this time of the week"
            if seasonal[i]
            else f"from the previous {hours // 60 or hours}{' h' if hours >= 60 else ' min'} "
            "(less than a week of history)"
        )
        summary = (
            f"{window.gateways[i]} is silent: no payments for "
            f"{max(int(silent_for[i]), silence)} min where "
            f"{expected[i]:.0f} were expected {basis}"
            if active[i]
            else f"{window.gateways[i]}: {int(recent[i])} payments in the last {silence} min"
        )
        return Finding(
            "no_data",
            window.gateways[i],
            "critical",
            summary,
            minute_start(since_minute)
            if has_volume.any()
            else minute_start(window.end_minute - silence),
            Evidence(
                payments=int(recent[i]),
                window_minutes=silence,
                p_value=float(chance[i]),
                expected_payments=float(expected[i]),
            ),
        )

    return RuleResult("no_data", window.gateways, active, build)


class _Drops(NamedTuple):
    """Per tick and gateway: the volume_drop rule's figures."""

    observed: npt.NDArray[np.int64]  # payments in the last ``window`` minutes
    expected: npt.NDArray[np.float64]
    simple: npt.NDArray[np.float64]  # the expectation from the traffic before the window
    seasonal: BoolArray  # the expectation is the seasonal one (a week of history)
    chance: npt.NDArray[np.float64]  # of as few payments
    active: BoolArray
    per_minute: npt.NDArray[np.float64]  # seasonal payments expected a minute, else NaN
    holding: BoolArray  # a first-week drop still below the traffic before it began
    before_drop: npt.NDArray[np.float64]  # first week: that traffic (NaN where seasonal)

    def row(self, tick: int) -> _Drops:
        return _Drops(*(a[tick] for a in self))


def _drops(windows: _Windows, config: Config, history: VolumeHistory | None) -> _Drops:
    rule = config.detection.volume_drop
    minutes = _minutes(rule.window)
    observed = windows.recent(windows.volume, minutes)
    # Without a week of history: the traffic of the hours just before the window (see
    # _rate_before), under the noise the seasonal rule assumes until it can fit its own.
    # A drop that lasts soon lowers that expectation too: ``holding`` below keeps its alert.
    first = (windows.ends - windows.minutes)[:, None]  # each tick's first column
    before = np.maximum(windows.ends - minutes, windows.ends - windows.minutes)
    stop = np.repeat(before[:, None], len(windows.gateways), axis=1)
    simple = _rate_before(windows.volume, stop, _minutes(rule.history), minutes, first) * minutes
    seasonal = np.zeros(observed.shape, dtype=bool)
    expected, size = simple, np.full(len(windows.gateways), DEFAULT_SIZE)
    if history is not None:
        season = _seasonal(windows, history, minutes)
        seasonal = np.isfinite(season.expected)
        expected = np.where(seasonal, season.expected, simple)
        size = np.where(seasonal, season.size, DEFAULT_SIZE)
    chance = negative_binomial_cdf(observed, expected, size)
    # A drop must also be large, however significant. A drop to nothing stays one (no_data
    # raises its own, critical alert), so a silence does not make this alert flap.
    active = (observed < rule.below * expected) & (chance < _volume_alpha(config))
    # The seasonal expectation only: the API and the status page show none in the first week.
    per_minute = np.where(seasonal, expected / minutes, np.nan)
    # A first-week drop that lasts soon becomes the traffic before the window, and the
    # condition above clears while the gateway is still down. A firing alert holds while
    # the window stays below ``below`` times the traffic before the drop began. (Opening
    # alerts on that reference too made them fire two or three times within one drop at
    # 10-20 a minute, and alert on quarter hours swinging 16%.)
    holding = np.zeros(observed.shape, dtype=bool)
    before_drop = np.full(observed.shape, np.nan)
    if not seasonal.all():
        before_drop = (
            _rate_before_drop(
                windows.volume, stop, _minutes(rule.history), minutes, rule.below, first
            )
            * minutes
        )
        # Only "still below half": the drop was proven when the alert fired, and a count a
        # fifth of the usual need not keep clearing the per-tick significance level.
        holding = ~seasonal & (observed < rule.below * before_drop)
        before_drop = np.where(seasonal, np.nan, before_drop)
    return _Drops(
        observed, expected, simple, seasonal, chance, active, per_minute, holding, before_drop
    )


def _volume_drop(
    window: CountWindow,
    config: Config,
    history: VolumeHistory | None,
    served: _Served | None = None,
) -> RuleResult:
    minutes = _minutes(config.detection.volume_drop.window)
    drops: _Drops = _verdicts(
        window, served, "volume_drop", history, lambda w: _drops(w, config, history)
    )
    observed, expected, simple, seasonal, chance, active, per_minute, holding, before_drop = drops

    def build(i: int) -> Finding:
        share = observed[i] / expected[i] if expected[i] > 0 else 1.0
        if seasonal[i]:
            basis, notes = f"{expected[i]:.0f} usual for this time of the week", []
        elif not active[i] and before_drop[i] > simple[i]:
            # Held or resolved: against the traffic before the drop, not the drop itself.
            share = observed[i] / before_drop[i]
            rate = _per_minute(before_drop[i] / minutes)
            basis, notes = f"{rate}/min before the drop", ["less than a week of history"]
        else:
            rate = _per_minute(simple[i] / minutes)
            basis, notes = f"{rate}/min before it", ["less than a week of history"]
        if active[i]:
            notes.append(f"p = {chance[i]:.1e}")
        summary = (
            f"{window.gateways[i]}: {int(observed[i])} payments in the last {minutes} min, "
            f"{share:.0%} of the {basis}" + (f" ({', '.join(notes)})" if notes else "")
        )
        return Finding(
            "volume_drop",
            window.gateways[i],
            "warning",
            summary,
            minute_start(window.end_minute - minutes),
            Evidence(
                payments=int(observed[i]),
                window_minutes=minutes,
                p_value=float(chance[i]),
                expected_payments=float(expected[i]),
                magnitude=float(share),
            ),
        )

    return RuleResult(
        "volume_drop",
        window.gateways,
        active,
        build,
        expected_per_minute=per_minute,
        holding=holding,
    )


def _per_row(
    gateways: list[str], shares: Mapping[str, int] | None
) -> npt.NDArray[np.float64] | None:
    if shares is None:
        return None
    return np.array([shares.get(g, 1) for g in gateways], dtype=np.float64)


def evaluate(
    window: CountWindow,
    config: Config,
    calibration: Calibration | None = None,
    history: VolumeHistory | None = None,
    sla_shares: Mapping[str, int] | None = None,
) -> list[RuleResult]:
    """Every enabled rule's verdict on the window as it stands.

    ``calibration`` carries the hourly thresholds from tick to tick (a fresh one computes
    them); ``history`` is the volume per quarter hour the seasonal rules compare against;
    ``sla_shares`` says how many series share a gateway's sla_breach budget (default 1).
    """
    baselines = np.array([config.sla_for(g) for g in window.gateways], dtype=np.float64)
    detection = config.detection
    calibration = calibration or Calibration()
    served = calibration.hour_of(window)
    results = []
    if detection.outage.enabled:
        results.append(_outage(window, config, baselines, served))
    if detection.sla_breach.enabled:
        shares = _per_row(window.gateways, sla_shares)
        results.append(
            _sla_breach(window, config, baselines, calibration, shares, None, served, history)
        )
    if detection.no_data.enabled:
        results.append(_no_data(window, config, history, served))
    if detection.volume_drop.enabled:
        results.append(_volume_drop(window, config, history, served))
    return results


def evaluate_series(
    window: CountWindow,
    config: Config,
    calibration: Calibration,
    rows: SeriesRows,
    sla_shares: Mapping[str, int],
) -> RuleResult:
    """The sla_breach verdict on dimension series, whose rows ``rows`` describes."""
    baselines = np.array([config.sla_for(g) for g in rows.gateways], dtype=np.float64)
    shares = _per_row(rows.gateways, sla_shares)
    return _sla_breach(window, config, baselines, calibration, shares, rows)


def source_down_finding(failed_ticks: int, since: datetime, error: str) -> Finding:
    """The single alert raised when the payments database cannot be read (not one per gateway)."""
    return Finding(
        "source_down",
        None,
        "critical",
        f"the payments source cannot be read ({failed_ticks} ticks in a row): {error}",
        since,
        Evidence(),
    )
