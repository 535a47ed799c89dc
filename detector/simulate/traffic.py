"""The traffic model: each gateway's per-minute payments, failures, declines and pending
payments.

Each UTC day is drawn from its own random stream (seed, day), counts first, so that a range
gives the same counts whether it is drawn in one call or day by day, and the payment rows of
`detector.simulate.payments` are expanded from exactly these counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from scipy.interpolate import CubicSpline

from detector.simulate.gateways import GatewayProfile
from detector.simulate.incidents import Incident
from detector.simulate.latency import HEALTHY_P95_MS
from detector.simulate.seasons import Seasons
from detector.timeutil import naive_utc

__all__ = [
    "MINUTES_PER_DAY",
    "US_PER_DAY",
    "US_PER_MINUTE",
    "DayCounts",
    "Traffic",
    "checked_arguments",
    "days_touched",
    "draw_day_counts",
    "epoch_us",
]

MINUTES_PER_DAY = 1440
US_PER_MINUTE = 60_000_000
US_PER_DAY = MINUTES_PER_DAY * US_PER_MINUTE
_WEEKEND_FACTOR = 0.8
# Relative traffic by UTC hour; the periodic spline through these knots is rescaled to mean 1,
# which puts 03:00-05:00 near 15% and the 19:30 peak near 170% of the daily average.
_DIURNAL_KNOTS = (
    (0.0, 0.85),
    (2.0, 0.35),
    (4.0, 0.13),
    (6.0, 0.30),
    (8.0, 0.75),
    (10.0, 1.00),
    (12.0, 1.10),
    (14.0, 1.10),
    (16.0, 1.20),
    (18.0, 1.50),
    (19.5, 1.62),
    (21.0, 1.50),
    (22.5, 1.20),
    (24.0, 0.85),
)


def _diurnal_curve() -> npt.NDArray[np.float64]:
    hours, levels = np.array(_DIURNAL_KNOTS).T
    spline = CubicSpline(hours, levels, bc_type="periodic")
    curve = np.asarray(spline((np.arange(MINUTES_PER_DAY) + 0.5) / 60.0), dtype=np.float64)
    # Mean exactly 1 so that per_minute is the weekday's average rate.
    normalised: npt.NDArray[np.float64] = curve / curve.mean()
    return normalised


_DIURNAL = _diurnal_curve()
# The declines' diurnal cycle in [-1, 1]: highest at 03:00 UTC, lowest at 15:00.
_DECLINE_CYCLE = np.cos(2 * np.pi * ((np.arange(MINUTES_PER_DAY) + 0.5) / 60.0 - 3.0) / 24.0)


@dataclass(frozen=True)
class Traffic:
    """What a simulation draws from, besides its range of time."""

    gateways: tuple[GatewayProfile, ...]
    incidents: tuple[Incident, ...]
    seed: int
    pending_share: float
    seasons: Seasons | None = None  # the local calendar's shape; None: the UTC shape


def checked_arguments(
    start: datetime,
    end: datetime,
    gateways: Sequence[GatewayProfile],
    incidents: Iterable[Incident],
    seed: int,
    pending_share: float,
    seasons: Seasons | None = None,
) -> tuple[datetime, datetime, Traffic]:
    """The arguments of `generate` and `minute_counts` in normal form, or a ValueError."""
    start, end = naive_utc(start), naive_utc(end)
    incidents = tuple(incidents)
    names = [gateway.name for gateway in gateways]
    if end < start:
        raise ValueError("the end of the simulated range comes before its start")
    if not names or len(set(names)) != len(names):
        raise ValueError("give at least one gateway, each with its own name")
    unknown = sorted({incident.gateway for incident in incidents} - set(names))
    if unknown:
        raise ValueError(
            f"incidents name gateway(s) {', '.join(unknown)}, which are not simulated "
            f"(simulated: {', '.join(names)})"
        )
    if seed < 0:
        raise ValueError("the seed must be zero or more")
    if not 0 <= pending_share < 1:
        raise ValueError("pending_share must be in [0, 1)")
    return start, end, Traffic(tuple(gateways), incidents, seed, pending_share, seasons)


def days_touched(start_us: int, end_us: int) -> range:
    """Epoch microseconds of the UTC midnights of the days that ``[start_us, end_us)`` touches."""
    return range(start_us - start_us % US_PER_DAY, end_us, US_PER_DAY)


@dataclass(frozen=True)
class DayCounts:
    """One UTC day's per-(gateway, minute) draws, and the random stream to go on with."""

    rng: np.random.Generator
    payments: npt.NDArray[np.int64]
    failures: npt.NDArray[np.int64]
    pending: npt.NDArray[np.int64]
    incident_share: npt.NDArray[np.float64]  # share of the failures the incident causes
    declines: npt.NDArray[np.int64]  # of the payments that did not fail
    decline_rng: np.random.Generator  # the declines' own stream, to draw their codes from
    latency_p95: npt.NDArray[np.float64]  # p95 latency (ms) of the payments of each minute


def draw_day_counts(day_us: int, traffic: Traffic) -> DayCounts:
    """The counts of one UTC day, drawn first from the day's own random stream (seed, day)."""
    gateways = traffic.gateways
    day = datetime(1970, 1, 1) + timedelta(microseconds=day_us)
    rng = np.random.default_rng([traffic.seed, day.toordinal()])
    index = {gateway.name: i for i, gateway in enumerate(gateways)}

    per_minute = np.array([g.per_minute for g in gateways])[:, None]
    base_rate = np.array([g.failure_rate for g in gateways])[:, None]
    if traffic.seasons is None:
        weekly = _WEEKEND_FACTOR if day.weekday() >= 5 else 1.0
        volume = per_minute * _DIURNAL[None, :] * weekly
    else:
        volume = per_minute * traffic.seasons.day_shape(day, _DIURNAL)[None, :]
    failure_p = np.repeat(base_rate, MINUTES_PER_DAY, axis=1)
    incident_share = np.zeros_like(failure_p)
    # The decline share an incident sets (a decline wave); NaN: the gateway's usual one.
    decline_wave = np.full_like(failure_p, np.nan)
    latency_p95 = np.full_like(failure_p, HEALTHY_P95_MS)
    for incident in traffic.incidents:
        first = _minute_at_or_after(incident.start, day_us)
        stop = _minute_at_or_after(incident.end, day_us)
        if first >= stop:
            continue
        row, minutes = index[incident.gateway], slice(first, stop)
        if incident.volume_factor is not None:
            volume[row, minutes] *= incident.volume_factor
        if incident.failure_rate is not None:
            failure_p[row, minutes] = incident.failure_rate
            excess = max(incident.failure_rate - gateways[row].failure_rate, 0.0)
            incident_share[row, minutes] = excess / incident.failure_rate if excess else 0.0
        if incident.decline_rate is not None:
            decline_wave[row, minutes] = incident.decline_rate
        if incident.latency is not None:
            latency_p95[row, minutes] = incident.latency

    # Beta-distributed minute probabilities with the same mean make failures bursty.
    rho = np.broadcast_to(np.array([g.dispersion_rho for g in gateways])[:, None], volume.shape)
    bursty = (rho > 0) & (failure_p > 0) & (failure_p < 1)
    concentration = 1.0 / rho[bursty] - 1.0
    failure_p[bursty] = rng.beta(
        failure_p[bursty] * concentration, (1.0 - failure_p[bursty]) * concentration
    )

    rows = rng.poisson(volume)
    pending = rng.binomial(rows, traffic.pending_share)
    payments = rows - pending
    failures = rng.binomial(payments, failure_p)
    # Declines come from a stream of their own, so that adding them changes no other draw.
    decline_rng = np.random.default_rng([traffic.seed, day.toordinal(), 1])
    declines = np.zeros_like(payments)
    decline_rate = np.array([g.decline_rate for g in gateways])[:, None]
    waves = ~np.isnan(decline_wave)
    if decline_rate.any() or waves.any():
        swing = np.array([g.decline_swing for g in gateways])[:, None]
        share = decline_rate * (1 + swing * _DECLINE_CYCLE[None, :])
        declines = decline_rng.binomial(payments - failures, np.where(waves, decline_wave, share))
    return DayCounts(
        rng, payments, failures, pending, incident_share, declines, decline_rng, latency_p95
    )


def epoch_us(moment: datetime) -> int:
    """Microseconds from the epoch to a naive UTC ``moment``."""
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def _minute_at_or_after(moment: datetime, day_us: int) -> int:
    """Index (clipped to the day) of the first minute of the day starting at or after moment."""
    offset = epoch_us(moment) - day_us
    return int(np.clip(-(-offset // US_PER_MINUTE), 0, MINUTES_PER_DAY))
