"""Synthetic payment streams with injected incidents (demo, tests, benchmarks).

Traffic model, per gateway and UTC minute:

- volume ~ Poisson(``per_minute`` x diurnal factor x weekly factor x incident ``volume_factor``);
  the diurnal curve is quiet around 03:00-05:00 UTC (~15% of the daily average) and peaks in
  the evening (~170% around 19:30); Saturdays and Sundays carry 80% of a weekday;
- each payment fails with the minute's failure probability: the gateway's ``failure_rate``
  (or the incident's), drawn per minute from a Beta distribution when ``dispersion_rho > 0``
  so failures come in bursts as they do in real traffic (beta-binomial counts);
- failures caused by an incident carry ``gateway_timeout``; the others carry the gateway's
  usual error codes; a small share of payments is still ``pending`` (no error code).

Each UTC day is drawn from its own random stream (seed, day), so a range gives the same
payments whether it is generated in one call or day by day, which is how `simulate` keeps
memory bounded. The per-minute counts come first in that stream: `minute_counts` draws only
them (months of busy gateways without a row per payment, as the detection benchmark needs)
and `generate` expands the very same counts into payment rows.

>>> from datetime import datetime
>>> frame = generate(datetime(2026, 11, 20, 18), datetime(2026, 11, 20, 18, 10), seed=1)
>>> list(frame.columns)
['id', 'created_at', 'gateway', 'status', 'error_code', 'amount', 'currency', 'method', 'country']
>>> frame.equals(generate(datetime(2026, 11, 20, 18), datetime(2026, 11, 20, 18, 10), seed=1))
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.interpolate import CubicSpline
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
)
from sqlalchemy.dialects import mysql

from detector.config import parse_duration
from detector.model import Counts
from detector.timeutil import naive_utc

__all__ = [
    "DEFAULT_GATEWAYS",
    "GatewayProfile",
    "Incident",
    "MinuteCounts",
    "create_schema",
    "generate",
    "minute_counts",
    "simulate",
    "write",
]

_COLUMNS = (
    "id",
    "created_at",
    "gateway",
    "status",
    "error_code",
    "amount",
    "currency",
    "method",
    "country",
)
_INCIDENT_ERROR_CODE = "gateway_timeout"
_STATUSES = ("succeeded", "failed", "pending")
_METHODS = (("card", 0.70), ("wallet", 0.20), ("bank_transfer", 0.10))
# Each country pays in its own currency; amounts are drawn in USD and converted.
_COUNTRIES = (
    ("US", 0.35, "USD"),
    ("GB", 0.15, "GBP"),
    ("DE", 0.15, "EUR"),
    ("FR", 0.10, "EUR"),
    ("BR", 0.13, "BRL"),
    ("IN", 0.12, "INR"),
)
_USD_RATES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "BRL": 5.0, "INR": 83.0}
_COUNTRY_CURRENCY = np.array([list(_USD_RATES).index(currency) for _, _, currency in _COUNTRIES])
_USD_RATE = np.array(list(_USD_RATES.values()))

_MINUTES_PER_DAY = 1440
_US_PER_MINUTE = 60_000_000
_US_PER_DAY = _MINUTES_PER_DAY * _US_PER_MINUTE
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
    curve = np.asarray(spline((np.arange(_MINUTES_PER_DAY) + 0.5) / 60.0), dtype=np.float64)
    # Mean exactly 1 so that per_minute is the weekday's average rate.
    return curve / curve.mean()


_DIURNAL = _diurnal_curve()


@dataclass(frozen=True)
class GatewayProfile:
    """Traffic of one simulated gateway.

    Parameters
    ----------
    name : str
        Gateway name as stored in the ``gateway`` column.
    per_minute : float
        Mean payments per minute on a weekday, averaged over the day.
    failure_rate : float
        Usual probability that a payment fails.
    dispersion_rho : float
        Intra-minute correlation of failures (beta-binomial); 0 gives plain binomial counts.
    error_codes : tuple of (code, weight)
        Error codes of ordinary failures and their relative frequencies.
    """

    name: str
    per_minute: float
    failure_rate: float
    dispersion_rho: float = 0.0
    error_codes: tuple[tuple[str, float], ...] = (
        ("card_declined", 0.45),
        ("insufficient_funds", 0.25),
        ("do_not_honor", 0.15),
        ("processing_error", 0.10),
        ("timeout", 0.05),
    )

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 40:
            raise ValueError("a gateway name must have between 1 and 40 characters")
        if not self.per_minute >= 0:
            raise ValueError(f"gateway {self.name}: per_minute must be zero or more")
        if not 0 <= self.failure_rate <= 1:
            raise ValueError(f"gateway {self.name}: failure_rate must be between 0 and 1")
        if not 0 <= self.dispersion_rho < 1:
            raise ValueError(f"gateway {self.name}: dispersion_rho must be in [0, 1)")
        if not self.error_codes or any(weight <= 0 for _, weight in self.error_codes):
            raise ValueError(f"gateway {self.name}: give at least one error code, all weights > 0")


DEFAULT_GATEWAYS: tuple[GatewayProfile, ...] = (
    GatewayProfile(
        "stripe",
        per_minute=40.0,
        failure_rate=0.010,
        dispersion_rho=0.002,
        error_codes=(
            ("card_declined", 0.40),
            ("insufficient_funds", 0.25),
            ("processing_error", 0.13),
            ("expired_card", 0.12),
            ("incorrect_cvc", 0.10),
        ),
    ),
    GatewayProfile(
        "adyen",
        per_minute=20.0,
        failure_rate=0.012,
        dispersion_rho=0.002,
        error_codes=(
            ("refused", 0.40),
            ("not_enough_balance", 0.25),
            ("do_not_honor", 0.15),
            ("acquirer_error", 0.12),
            ("timeout", 0.08),
        ),
    ),
    GatewayProfile(
        "paypal",
        per_minute=8.0,
        failure_rate=0.015,
        dispersion_rho=0.001,
        error_codes=(
            ("instrument_declined", 0.50),
            ("payer_cannot_pay", 0.25),
            ("processing_error", 0.15),
            ("timeout", 0.10),
        ),
    ),
    GatewayProfile(
        "braintree",
        per_minute=2.0,
        failure_rate=0.008,
        error_codes=(
            ("processor_declined", 0.45),
            ("insufficient_funds", 0.30),
            ("do_not_honor", 0.15),
            ("gateway_rejected", 0.10),
        ),
    ),
    GatewayProfile(
        "razorpay",
        per_minute=0.5,
        failure_rate=0.014,
        error_codes=(
            ("payment_failed", 0.40),
            ("insufficient_funds", 0.25),
            ("authentication_failed", 0.20),
            ("bank_timeout", 0.15),
        ),
    ),
)


# --- incidents -------------------------------------------------------------------------------

_SPAN_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_SPAN = re.compile(rf"(?:{_SPAN_PART.pattern})+")
_EFFECT_WORDS = {"outage": ("failure_rate", 1.0), "silence": ("volume_factor", 0.0)}
_SYNTAX = "GATEWAY:START:DURATION:EFFECT, e.g. adyen:+5d14h:45m:failure_rate=0.12"


@dataclass(frozen=True)
class Incident:
    """A stretch of time in which one gateway fails more often or carries less traffic.

    Incidents act on whole minutes: a minute is affected when its start lies in
    ``[start, start + duration)``. Where incidents on one gateway overlap, volume factors
    multiply and the later incident's failure rate wins.

    Parameters
    ----------
    gateway : str
        Name of the affected gateway.
    start : datetime
        Naive UTC (an aware datetime is converted to naive UTC).
    duration : timedelta
        Positive length of the incident.
    failure_rate : float, optional
        Failure probability during the incident, e.g. 0.12; 1.0 is an outage.
    volume_factor : float, optional
        Multiplies the volume: 0.0 is silence, 0.2 a drop to 20%.
    """

    gateway: str
    start: datetime
    duration: timedelta
    failure_rate: float | None = None
    volume_factor: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", naive_utc(self.start))
        problem = _incident_problem(self.duration, self.failure_rate, self.volume_factor)
        if problem:
            raise ValueError(f"incident on {self.gateway}: {problem}")

    @property
    def end(self) -> datetime:
        """First instant after the incident (naive UTC)."""
        return self.start + self.duration

    @classmethod
    def parse(cls, text: str, default_start: datetime) -> Incident:
        """Read ``GATEWAY:START:DURATION:EFFECT[,EFFECT]`` as given on the command line.

        - START is an ISO 8601 date-time (naive means UTC), e.g. ``2026-11-20T14:00``, or an
          offset from ``default_start`` (the simulation start) such as ``+5d14h`` or ``+90m``.
        - DURATION is a span such as ``45m``, ``2h``, ``1d`` or ``1h30m``.
        - EFFECT is ``failure_rate=P`` (0 to 1), ``volume_factor=F`` (0 or more), ``outage``
          (failure_rate=1) or ``silence`` (volume_factor=0); join two with a comma.

        >>> start = datetime(2026, 11, 16)
        >>> Incident.parse("adyen:2026-11-20T14:00:45m:failure_rate=0.12", start).end
        datetime.datetime(2026, 11, 20, 14, 45)
        >>> Incident.parse("stripe:+1d2h:30m:silence", start).start
        datetime.datetime(2026, 11, 17, 2, 0)
        >>> Incident.parse("stripe:tomorrow:30m:outage", start)
        Traceback (most recent call last):
        ...
        ValueError: incident 'stripe:tomorrow:30m:outage': start 'tomorrow' is neither an ISO \
date-time such as 2026-11-20T14:00 nor an offset such as +5d14h
        """
        # START may itself contain colons (14:00, +01:00), so cut the gateway off the left
        # and the duration and effect off the right.
        gateway, _, rest = text.strip().partition(":")
        parts = rest.rsplit(":", 2)
        if not gateway or len(parts) != 3 or not all(parts):
            raise ValueError(f"incident {text!r} does not read as {_SYNTAX}")
        start_text, duration_text, effect_text = parts

        def problem(message: str) -> ValueError:
            return ValueError(f"incident {text!r}: {message}")

        if start_text.startswith("+"):
            offset = _parse_span(start_text[1:])
            if offset is None:
                raise problem(f"start offset {start_text!r} is not a span such as +5d14h or +90m")
            start = naive_utc(default_start) + offset
        else:
            try:
                start = datetime.fromisoformat(start_text)
            except ValueError:
                raise problem(
                    f"start {start_text!r} is neither an ISO date-time such as "
                    "2026-11-20T14:00 nor an offset such as +5d14h"
                ) from None
        duration = _parse_span(duration_text)
        if duration is None:
            raise problem(f"duration {duration_text!r} is not a span such as 45m, 2h or 1h30m")

        effects: dict[str, float | None] = {"failure_rate": None, "volume_factor": None}
        for effect in effect_text.split(","):
            kind, equals, value = (word.strip() for word in effect.partition("="))
            if not equals and kind in _EFFECT_WORDS:
                kind, number = _EFFECT_WORDS[kind]
            elif equals and kind in ("failure_rate", "volume_factor"):
                try:
                    number = float(value)
                except ValueError:
                    raise problem(f"{kind} needs a number, not {value!r}") from None
            else:
                raise problem(
                    f"effect {effect!r} is not one of failure_rate=P, volume_factor=F, "
                    "outage or silence"
                )
            if effects[kind] is not None:
                raise problem(f"{kind} is given twice")
            effects[kind] = number
        invalid = _incident_problem(duration, **effects)
        if invalid:
            raise problem(invalid)
        return cls(gateway, start, duration, **effects)


def _incident_problem(
    duration: timedelta, failure_rate: float | None, volume_factor: float | None
) -> str | None:
    """What is wrong with these incident settings, as a sentence; ``None`` if nothing."""
    if duration <= timedelta(0):
        return "the duration must be positive"
    if failure_rate is None and volume_factor is None:
        return "set a failure_rate, a volume_factor or both"
    if failure_rate is not None and not 0 <= failure_rate <= 1:
        return f"failure_rate must be between 0 and 1, not {failure_rate}"
    if volume_factor is not None and not volume_factor >= 0:
        return f"volume_factor must be zero or more, not {volume_factor}"
    return None


def _parse_span(text: str) -> timedelta | None:
    """``"1d2h30m"`` -> timedelta; ``None`` when the text is not such a span."""
    if not _SPAN.fullmatch(text):
        return None
    return sum(
        (parse_duration(number + unit) for number, unit in _SPAN_PART.findall(text)),
        timedelta(0),
    )


# --- generation ------------------------------------------------------------------------------


def _checked(
    start: datetime,
    end: datetime,
    gateways: Sequence[GatewayProfile],
    incidents: Iterable[Incident],
    seed: int,
    pending_share: float,
) -> tuple[datetime, datetime, tuple[GatewayProfile, ...], tuple[Incident, ...]]:
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
    return start, end, tuple(gateways), incidents


def _days(start_us: int, end_us: int) -> range:
    """Epoch microseconds of the UTC midnights of the days that ``[start_us, end_us)`` touches."""
    return range(start_us - start_us % _US_PER_DAY, end_us, _US_PER_DAY)


def generate(
    start: datetime,
    end: datetime,
    gateways: Sequence[GatewayProfile] = DEFAULT_GATEWAYS,
    incidents: Iterable[Incident] = (),
    seed: int = 0,
    pending_share: float = 0.002,
) -> pd.DataFrame:
    """Draw the payments created in ``[start, end)``, one row each, ordered by time.

    Per minute, these rows are exactly the counts `minute_counts` draws with the same
    arguments.

    Parameters
    ----------
    start, end : datetime
        Naive UTC (aware datetimes are converted).
    gateways : sequence of GatewayProfile
        Simulated gateways, with unique names.
    incidents : iterable of Incident
        Injected incidents; each must name one of ``gateways``.
    seed : int
        Non-negative; the same seed gives the same payments.
    pending_share : float
        Share of payments still ``pending`` (no error code).

    Returns
    -------
    pandas.DataFrame
        Columns ``id`` (``pay_{seed}_{YYYYMMDD}_{n}``), ``created_at`` (naive UTC,
        microseconds), ``gateway``, ``status`` (succeeded, failed or pending),
        ``error_code`` (failed rows only), ``amount``, ``currency``, ``method``, ``country``;
        the label columns are categoricals.
    """
    start, end, gateways, incidents = _checked(start, end, gateways, incidents, seed, pending_share)
    categories = _categories(gateways)
    start_us, end_us = _epoch_us(start), _epoch_us(end)
    days = []
    for day_us in _days(start_us, end_us):
        day = _generate_day(day_us, gateways, incidents, seed, pending_share, categories)
        inside = (day["created_at"] >= start_us) & (day["created_at"] < end_us)
        days.append({name: values[inside] for name, values in day.items()})
    if not days:
        empty = {"id": np.str_, "amount": np.float64}
        days.append({name: np.empty(0, dtype=empty.get(name, np.int64)) for name in _COLUMNS})
    columns = {name: np.concatenate([day[name] for day in days]) for name in _COLUMNS}
    return pd.DataFrame(
        {
            name: pd.Categorical.from_codes(columns[name], pd.Index(categories[name]))
            if name in categories
            else columns[name]
            for name in _COLUMNS
        }
        | {"created_at": columns["created_at"].astype("datetime64[us]")}
    )


@dataclass(frozen=True)
class MinuteCounts:
    """Simulated per-minute counts of each gateway, without materialising the payments.

    Row ``g`` of each matrix is ``gateways[g]``; column ``j`` is the UTC minute that starts
    ``j`` minutes after ``start``.
    """

    gateways: tuple[str, ...]
    start: datetime  # naive UTC, a whole minute
    payments: npt.NDArray[np.int64]  # final payments: failed + succeeded
    failures: npt.NDArray[np.int64]
    pending: npt.NDArray[np.int64]

    def to_counts(self) -> Counts:
        """The rows a payments source returns for these minutes: sorted by minute, none empty.

        >>> counts = minute_counts(datetime(2026, 11, 20, 18), datetime(2026, 11, 20, 18, 5))
        >>> rows = counts.to_counts()
        >>> int(rows.payments.sum()) == int(counts.payments.sum())
        True
        >>> bool((rows.minute[1:] >= rows.minute[:-1]).all())
        True
        """
        volume = self.payments + self.pending
        minute, row = np.nonzero(volume.T)
        first = _epoch_us(self.start) // _US_PER_MINUTE
        return Counts(
            np.array(self.gateways, dtype=object)[row],
            minute.astype(np.int64) + first,
            self.payments[row, minute],
            self.failures[row, minute],
            volume[row, minute],
        )


def minute_counts(
    start: datetime,
    end: datetime,
    gateways: Sequence[GatewayProfile] = DEFAULT_GATEWAYS,
    incidents: Iterable[Incident] = (),
    seed: int = 0,
    pending_share: float = 0.002,
) -> MinuteCounts:
    """Per-minute payments, failures and pending payments of the minutes starting in
    ``[start, end)``: the counts of the payments `generate` draws with the same arguments.

    Costs what the number of minutes costs, not the number of payments, so months of
    busy gateways fit in memory (benchmarks/detection.py replays them this way).

    >>> counts = minute_counts(datetime(2026, 11, 20), datetime(2026, 11, 21), seed=1)
    >>> counts.gateways[0], counts.payments.shape
    ('stripe', (5, 1440))
    """
    start, end, gateways, incidents = _checked(start, end, gateways, incidents, seed, pending_share)
    first = -(-_epoch_us(start) // _US_PER_MINUTE)
    stop = max(-(-_epoch_us(end) // _US_PER_MINUTE), first)
    start_us, end_us = first * _US_PER_MINUTE, stop * _US_PER_MINUTE
    parts: list[list[npt.NDArray[np.int64]]] = [[], [], []]
    for day_us in _days(start_us, end_us):
        draw = _draw_day_counts(day_us, gateways, incidents, seed, pending_share)
        lo = max(start_us - day_us, 0) // _US_PER_MINUTE
        hi = min(end_us - day_us, _US_PER_DAY) // _US_PER_MINUTE
        for part, matrix in zip(parts, (draw.payments, draw.failures, draw.pending), strict=True):
            part.append(matrix[:, lo:hi])
    payments, failures, pending = (
        np.concatenate(part, axis=1) if part else np.zeros((len(gateways), 0), dtype=np.int64)
        for part in parts
    )
    return MinuteCounts(
        tuple(g.name for g in gateways),
        datetime(1970, 1, 1) + timedelta(microseconds=start_us),
        payments,
        failures,
        pending,
    )


@dataclass(frozen=True)
class _DayCounts:
    """One UTC day's per-(gateway, minute) draws, and the random stream to go on with."""

    rng: np.random.Generator
    payments: npt.NDArray[np.int64]
    failures: npt.NDArray[np.int64]
    pending: npt.NDArray[np.int64]
    incident_share: npt.NDArray[np.float64]  # share of the failures the incident causes


def _draw_day_counts(
    day_us: int,
    gateways: tuple[GatewayProfile, ...],
    incidents: tuple[Incident, ...],
    seed: int,
    pending_share: float,
) -> _DayCounts:
    """The counts of one UTC day, drawn first from the day's own random stream (seed, day)."""
    day = datetime(1970, 1, 1) + timedelta(microseconds=day_us)
    rng = np.random.default_rng([seed, day.toordinal()])
    index = {gateway.name: i for i, gateway in enumerate(gateways)}

    per_minute = np.array([g.per_minute for g in gateways])[:, None]
    base_rate = np.array([g.failure_rate for g in gateways])[:, None]
    weekly = _WEEKEND_FACTOR if day.weekday() >= 5 else 1.0
    volume = per_minute * _DIURNAL[None, :] * weekly
    failure_p = np.repeat(base_rate, _MINUTES_PER_DAY, axis=1)
    incident_share = np.zeros_like(failure_p)
    for incident in incidents:
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

    # Beta-distributed minute probabilities with the same mean make failures bursty.
    rho = np.broadcast_to(np.array([g.dispersion_rho for g in gateways])[:, None], volume.shape)
    bursty = (rho > 0) & (failure_p > 0) & (failure_p < 1)
    concentration = 1.0 / rho[bursty] - 1.0
    failure_p[bursty] = rng.beta(
        failure_p[bursty] * concentration, (1.0 - failure_p[bursty]) * concentration
    )

    rows = rng.poisson(volume)
    pending = rng.binomial(rows, pending_share)
    payments = rows - pending
    failures = rng.binomial(payments, failure_p)
    return _DayCounts(rng, payments, failures, pending, incident_share)


def _categories(gateways: tuple[GatewayProfile, ...]) -> dict[str, list[str]]:
    """Values of the label columns, which the frame holds as categoricals."""
    error_codes = [code for gateway in gateways for code, _ in gateway.error_codes]
    return {
        "gateway": [gateway.name for gateway in gateways],
        "status": list(_STATUSES),
        "error_code": list(dict.fromkeys([*error_codes, _INCIDENT_ERROR_CODE])),
        "currency": list(_USD_RATES),
        "method": [method for method, _ in _METHODS],
        "country": [country for country, _, _ in _COUNTRIES],
    }


def _generate_day(
    day_us: int,
    gateways: tuple[GatewayProfile, ...],
    incidents: tuple[Incident, ...],
    seed: int,
    pending_share: float,
    categories: dict[str, list[str]],
) -> dict[str, npt.NDArray[Any]]:
    """All payments of one UTC day as column arrays, expanded from the day's counts.

    ``created_at`` is in epoch microseconds and label columns hold codes into ``categories``
    (-1 for no error code).
    """
    draw = _draw_day_counts(day_us, gateways, incidents, seed, pending_share)
    rng = draw.rng
    day = datetime(1970, 1, 1) + timedelta(microseconds=day_us)
    per_cell = (draw.payments + draw.pending).ravel()
    cell = np.repeat(np.arange(per_cell.size), per_cell)
    # Within its cell each row is failed, pending or succeeded by rank; the random second
    # each row gets within its minute then puts the statuses in random order.
    rank = np.arange(cell.size) - np.repeat(np.cumsum(per_cell) - per_cell, per_cell)
    failures, pending_upto = draw.failures.ravel(), (draw.failures + draw.pending).ravel()
    status = np.where(
        rank < failures[cell],
        _STATUSES.index("failed"),
        np.where(
            rank < pending_upto[cell], _STATUSES.index("pending"), _STATUSES.index("succeeded")
        ),
    )
    created = day_us + (cell % _MINUTES_PER_DAY) * _US_PER_MINUTE
    created += rng.integers(0, _US_PER_MINUTE, cell.size)
    order = np.argsort(created, kind="stable")
    cell, created, status = cell[order], created[order], status[order]
    gateway = cell // _MINUTES_PER_DAY
    size = cell.size

    error_code = np.full(size, -1)
    failed_rows = np.flatnonzero(status == _STATUSES.index("failed"))
    error_code[failed_rows] = _draw_error_codes(
        rng,
        gateways,
        categories["error_code"],
        gateway[failed_rows],
        draw.incident_share.ravel()[cell[failed_rows]],
    )

    country = _draw(rng, [weight for _, weight, _ in _COUNTRIES], size)
    currency = _COUNTRY_CURRENCY[country]
    usd_amount = np.maximum(rng.lognormal(mean=3.4, sigma=1.0, size=size), 0.5)
    amount = np.round(usd_amount * _USD_RATE[currency], 2)
    method = _draw(rng, [weight for _, weight in _METHODS], size)

    sequence = np.strings.zfill(np.arange(size).astype(np.str_), 7)
    return {
        "id": np.strings.add(f"pay_{seed}_{day:%Y%m%d}_", sequence),
        "created_at": created,
        "gateway": gateway,
        "status": status,
        "error_code": error_code,
        "amount": amount,
        "currency": currency,
        "method": method,
        "country": country,
    }


def _draw_error_codes(
    rng: np.random.Generator,
    gateways: tuple[GatewayProfile, ...],
    categories: list[str],
    gateway: npt.NDArray[np.int64],
    incident_share: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """Error code of each failed payment: the incident's code or one of its gateway's codes."""
    widest = max(len(g.error_codes) for g in gateways)
    # Row g holds gateway g's cumulative code probabilities, padded with inf so that padding
    # is never chosen, and the codes themselves followed by the incident's code.
    cumulative = np.full((len(gateways), widest), np.inf)
    codes = np.full((len(gateways), widest + 1), categories.index(_INCIDENT_ERROR_CODE))
    for row, profile in enumerate(gateways):
        names, weights = zip(*profile.error_codes, strict=True)
        cumulative[row, : len(weights)] = np.cumsum(weights) / sum(weights)
        cumulative[row, len(weights) - 1] = 1.0
        codes[row, : len(names)] = [categories.index(name) for name in names]
    usual = (rng.random(gateway.size)[:, None] >= cumulative[gateway]).sum(axis=1)
    by_incident = rng.random(gateway.size) < incident_share
    return np.asarray(codes[gateway, np.where(by_incident, widest, usual)])


def _draw(rng: np.random.Generator, weights: Sequence[float], size: int) -> npt.NDArray[np.int64]:
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(p.size, size=size, p=p / p.sum())


def _epoch_us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def _minute_at_or_after(moment: datetime, day_us: int) -> int:
    """Index (clipped to the day) of the first minute of the day starting at or after moment."""
    offset = _epoch_us(moment) - day_us
    return int(np.clip(-(-offset // _US_PER_MINUTE), 0, _MINUTES_PER_DAY))


# --- database ------------------------------------------------------------------------------

# MySQL and MariaDB drop the microseconds of a plain DATETIME.
_TIMESTAMP = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _payments_table(table: str) -> Table:
    schema, _, name = table.rpartition(".")
    return Table(
        name,
        MetaData(),
        Column("id", String(40), primary_key=True),
        Column("created_at", _TIMESTAMP, nullable=False),
        Column("gateway", String(40)),
        Column("status", String(16)),
        Column("error_code", String(40), nullable=True),
        Column("amount", Numeric(12, 2)),
        Column("currency", String(3)),
        Column("method", String(16)),
        Column("country", String(2)),
        # Index names are per schema in PostgreSQL, so they carry the table name.
        Index(f"ix_{name}_created_at", "created_at"),
        Index(f"ix_{name}_gateway_created_at", "gateway", "created_at"),
        schema=schema or None,
    )


def create_schema(engine: Engine, table: str = "payments") -> Table:
    """Create the payments table (``table`` or ``schema.table``) and its indexes if missing.

    >>> from sqlalchemy import create_engine, inspect
    >>> engine = create_engine("sqlite://")
    >>> create_schema(engine).name, sorted(inspect(engine).get_table_names())
    ('payments', ['payments'])
    """
    payments = _payments_table(table)
    payments.metadata.create_all(engine, checkfirst=True)
    return payments


def write(
    engine: Engine, frame: pd.DataFrame, table: str = "payments", chunk_rows: int = 50_000
) -> int:
    """Insert the rows of ``frame`` (as from `generate`) and return how many were written.

    Each chunk of ``chunk_rows`` rows is committed on its own, so a reader sees the data
    arrive and a failure keeps the chunks already written.
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    payments = _payments_table(table)
    dialect = engine.dialect
    compiled = payments.insert().compile(dialect=dialect)
    # Drivers with "?" or "%s" placeholders take one INSERT of many VALUES groups, which
    # SQLite runs about 1.6 times faster than the same rows sent one by one.
    multirow = compiled.positiontup is not None and dialect.paramstyle in ("qmark", "format")
    names = list(compiled.positiontup or _COLUMNS)
    columns = _driver_values(frame, sqlite_text=multirow and dialect.name == "sqlite")
    matrix = np.column_stack([columns[name] for name in names])
    for first in range(0, len(matrix), chunk_rows):
        chunk = matrix[first : first + chunk_rows]
        with engine.begin() as connection:
            if multirow:
                _insert_multirow(connection, compiled.string, chunk)
            else:
                connection.execute(
                    payments.insert(),
                    [dict(zip(names, row, strict=True)) for row in chunk.tolist()],
                )
    return len(matrix)


def _driver_values(frame: pd.DataFrame, sqlite_text: bool) -> dict[str, npt.NDArray[np.object_]]:
    """Columns of ``frame`` as object arrays of the Python values a DB-API driver binds."""
    created_at = frame["created_at"].to_numpy(dtype="datetime64[us]")
    # Text in SQLAlchemy's own SQLite format, so that these rows compare and read back exactly
    # like rows bound through SQLAlchemy.
    timestamps = _sqlite_timestamps(created_at) if sqlite_text else created_at
    values = {
        "created_at": timestamps.astype(object),
        "amount": frame["amount"].to_numpy(dtype=np.float64).astype(object),
    }
    for name in set(_COLUMNS) - set(values):
        # A copy, so that writing None for the missing values leaves the frame untouched;
        # the column finds its missing values faster than a scan of the object array would.
        values[name] = frame[name].to_numpy(dtype=object, copy=True)
        values[name][frame[name].isna().to_numpy()] = None
    return values


def _insert_multirow(
    connection: Connection, single_row: str, rows: npt.NDArray[np.object_]
) -> None:
    """Insert ``rows`` with statements of many VALUES groups, built from a one-row INSERT."""
    dialect = connection.dialect
    width = rows.shape[1]
    per_statement = max(
        1, min(dialect.insertmanyvalues_page_size, dialect.insertmanyvalues_max_parameters // width)
    )
    head, _, group = single_row.rpartition(" VALUES ")
    full = len(rows) - len(rows) % per_statement
    if full:
        params = list(map(tuple, rows[:full].reshape(-1, per_statement * width).tolist()))
        connection.exec_driver_sql(f"{head} VALUES {', '.join([group] * per_statement)}", params)
    if full < len(rows):
        rest = rows[full:]
        connection.exec_driver_sql(
            f"{head} VALUES {', '.join([group] * len(rest))}", tuple(rest.ravel().tolist())
        )


def _sqlite_timestamps(created_at: npt.NDArray[np.datetime64]) -> npt.NDArray[np.str_]:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` strings, SQLAlchemy's storage format for SQLite."""
    text = np.datetime_as_string(created_at.astype("datetime64[us]"), unit="us").astype("U26")
    # Swap the ISO "T" for a space in place: each string is 26 UCS-4 code points.
    text.view(np.uint32).reshape(text.size, 26)[:, 10] = ord(" ")
    return text


def simulate(
    url_or_engine: str | Engine,
    start: datetime,
    days: float,
    gateways: Sequence[GatewayProfile] = DEFAULT_GATEWAYS,
    incidents: Iterable[Incident] = (),
    seed: int = 0,
    table: str = "payments",
) -> int:
    """Create the payments table and fill it with ``days`` of traffic from ``start``.

    Generates and inserts one UTC day at a time so memory stays bounded; returns the number
    of rows written.
    """
    if days < 0:
        raise ValueError("days must be zero or more")
    engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    incidents = tuple(incidents)
    start = naive_utc(start)
    end = start + timedelta(days=days)
    try:
        create_schema(engine, table)
        written = 0
        chunk_start = start
        while chunk_start < end:
            # Chunks end at UTC midnight: generate() draws whole days, so none is drawn twice.
            midnight = datetime.combine(chunk_start.date(), datetime.min.time()) + timedelta(days=1)
            chunk_end = min(midnight, end)
            frame = generate(chunk_start, chunk_end, gateways, incidents, seed)
            written += write(engine, frame, table)
            chunk_start = chunk_end
        return written
    finally:
        if engine is not url_or_engine:
            engine.dispose()
