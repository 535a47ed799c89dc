"""Simulated payments, one row each, expanded from the traffic model's per-minute counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from detector.simulate.gateways import DEFAULT_GATEWAYS, GatewayProfile
from detector.simulate.incidents import Incident
from detector.simulate.latency import draw_latencies
from detector.simulate.schema import PAYMENT_COLUMNS
from detector.simulate.traffic import (
    MINUTES_PER_DAY,
    US_PER_MINUTE,
    Traffic,
    checked_arguments,
    days_touched,
    draw_day_counts,
    epoch_us,
)

__all__ = ["generate"]

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
        ``error_code`` (failed rows only), ``amount``, ``currency``, ``method``, ``country``,
        ``latency_ms`` (NULL for pending rows); the label columns are categoricals.
    """
    start, end, traffic = checked_arguments(start, end, gateways, incidents, seed, pending_share)
    categories = _categories(traffic.gateways)
    start_us, end_us = epoch_us(start), epoch_us(end)
    days = []
    for day_us in days_touched(start_us, end_us):
        day = _generate_day(day_us, traffic, categories)
        inside = (day["created_at"] >= start_us) & (day["created_at"] < end_us)
        days.append({name: values[inside] for name, values in day.items()})
    if not days:
        empty = {"id": np.str_, "amount": np.float64, "latency_ms": np.float64}
        days.append(
            {name: np.empty(0, dtype=empty.get(name, np.int64)) for name in PAYMENT_COLUMNS}
        )
    columns = {name: np.concatenate([day[name] for day in days]) for name in PAYMENT_COLUMNS}
    return pd.DataFrame(
        {
            name: pd.Categorical.from_codes(columns[name], pd.Index(categories[name]))
            if name in categories
            else columns[name]
            for name in PAYMENT_COLUMNS
        }
        | {
            "created_at": columns["created_at"].astype("datetime64[us]"),
            "latency_ms": pd.array(columns["latency_ms"], dtype="Int64"),
        }
    )


def _categories(gateways: tuple[GatewayProfile, ...]) -> dict[str, list[str]]:
    """Values of the label columns, which the frame holds as categoricals."""
    error_codes = [code for gateway in gateways for code, _ in gateway.error_codes]
    error_codes += [
        code for gateway in gateways if gateway.decline_rate for code, _ in gateway.decline_codes
    ]
    return {
        "gateway": [gateway.name for gateway in gateways],
        "status": list(_STATUSES),
        "error_code": list(dict.fromkeys([*error_codes, _INCIDENT_ERROR_CODE])),
        "currency": list(_USD_RATES),
        "method": [method for method, _ in _METHODS],
        "country": [country for country, _, _ in _COUNTRIES],
    }


def _generate_day(
    day_us: int, traffic: Traffic, categories: dict[str, list[str]]
) -> dict[str, npt.NDArray[Any]]:
    """All payments of one UTC day as column arrays, expanded from the day's counts.

    ``created_at`` is in epoch microseconds and label columns hold codes into ``categories``
    (-1 for no error code).
    """
    draw = draw_day_counts(day_us, traffic)
    rng = draw.rng
    day = datetime(1970, 1, 1) + timedelta(microseconds=day_us)
    per_cell = (draw.payments + draw.pending).ravel()
    cell = np.repeat(np.arange(per_cell.size), per_cell)
    # Within its cell each row is failed, pending or succeeded by rank; the random second
    # each row gets within its minute then puts the statuses in random order.
    rank = np.arange(cell.size) - np.repeat(np.cumsum(per_cell) - per_cell, per_cell)
    # Declines rank right after the failures: failed rows too, with a decline's code.
    failures = draw.failures.ravel()
    declines_upto = failures + draw.declines.ravel()
    pending_upto = declines_upto + draw.pending.ravel()
    status = np.where(
        rank < declines_upto[cell],
        _STATUSES.index("failed"),
        np.where(
            rank < pending_upto[cell], _STATUSES.index("pending"), _STATUSES.index("succeeded")
        ),
    )
    declined = (rank >= failures[cell]) & (rank < declines_upto[cell])
    created = day_us + (cell % MINUTES_PER_DAY) * US_PER_MINUTE
    created += rng.integers(0, US_PER_MINUTE, cell.size)
    order = np.argsort(created, kind="stable")
    cell, created, status = cell[order], created[order], status[order]
    declined = declined[order]
    gateway = cell // MINUTES_PER_DAY
    size = cell.size

    error_code = np.full(size, -1)
    failed_rows = np.flatnonzero((status == _STATUSES.index("failed")) & ~declined)
    error_code[failed_rows] = _draw_error_codes(
        rng,
        traffic.gateways,
        categories["error_code"],
        gateway[failed_rows],
        draw.incident_share.ravel()[cell[failed_rows]],
    )
    declined_rows = np.flatnonzero(declined)
    if declined_rows.size:
        error_code[declined_rows] = _draw_decline_codes(
            draw.decline_rng, traffic.gateways, categories["error_code"], gateway[declined_rows]
        )

    country = _draw(rng, [weight for _, weight, _ in _COUNTRIES], size)
    currency = _COUNTRY_CURRENCY[country]
    usd_amount = np.maximum(rng.lognormal(mean=3.4, sigma=1.0, size=size), 0.5)
    amount = np.round(usd_amount * _USD_RATE[currency], 2)
    method = _draw(rng, [weight for _, weight in _METHODS], size)
    # Latencies from a stream of their own, so that adding them changes no other draw.
    latency_rng = np.random.default_rng([traffic.seed, day.toordinal(), 2])
    latency = draw_latencies(latency_rng, draw.latency_p95.ravel()[cell])
    latency[status == _STATUSES.index("pending")] = np.nan

    sequence = np.strings.zfill(np.arange(size).astype(np.str_), 7)
    return {
        "id": np.strings.add(f"pay_{traffic.seed}_{day:%Y%m%d}_", sequence),
        "created_at": created,
        "gateway": gateway,
        "status": status,
        "error_code": error_code,
        "amount": amount,
        "currency": currency,
        "method": method,
        "country": country,
        "latency_ms": latency,
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


def _draw_decline_codes(
    rng: np.random.Generator,
    gateways: tuple[GatewayProfile, ...],
    categories: list[str],
    gateway: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Error code of each declined payment, from its gateway's decline codes."""
    codes = np.empty(gateway.size, dtype=np.int64)
    for row, profile in enumerate(gateways):
        mine = np.flatnonzero(gateway == row)
        if mine.size:
            names, weights = zip(*profile.decline_codes, strict=True)
            pick = _draw(rng, weights, mine.size)
            codes[mine] = np.array([categories.index(name) for name in names])[pick]
    return codes


def _draw(rng: np.random.Generator, weights: Sequence[float], size: int) -> npt.NDArray[np.int64]:
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(p.size, size=size, p=p / p.sum())
