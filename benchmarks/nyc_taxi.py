"""The NYC taxi trace (Numenta Anomaly Benchmark) replayed as one gateway's payments.

The trace, passengers per 30 minutes with five labelled anomaly windows, is read at run time
from ``../shared/data/nyc_taxi/`` beside the repository.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.scoring import FAILURE_RULES, MONTH_DAYS
from detector.backtest import replay
from detector.config import Config
from detector.model import Counts, Notification
from detector.source import FrameSource

__all__ = ["TAXI", "run_taxi", "score_taxi", "taxi_counts"]

TAXI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nyc_taxi"


def taxi_counts(
    folder: Path, per_minute: float, seed: int, start: str | None
) -> tuple[Counts, datetime, datetime, list[tuple[datetime, datetime]]] | None:
    """The NYC taxi trace as one gateway's payments: each 30-minute count scaled so the
    trace averages ``per_minute`` payments a minute and spread over its minutes (Poisson),
    1% of payments failing. None when the data is not there."""
    csv, labels = folder / "nyc_taxi.csv", folder / "labels.json"
    if not (csv.exists() and labels.exists()):
        return None
    raw = np.genfromtxt(csv, delimiter=",", skip_header=1, dtype=str)
    times = np.array(raw[:, 0], dtype="datetime64[m]")
    values = raw[:, 1].astype(np.float64)
    if start is not None:
        keep = times >= np.datetime64(start)
        times, values = times[keep], values[keep]
    rng = np.random.default_rng([seed, 11])
    expected = np.repeat(values / values.mean() * per_minute, 30)
    payments = rng.poisson(expected)
    failures = rng.binomial(payments, 0.01)
    minute = (times[0] - np.datetime64("1970-01-01T00:00")).astype(np.int64) + np.arange(
        payments.size
    )
    nonzero = payments > 0
    counts = Counts(
        np.full(int(nonzero.sum()), "taxi", dtype=object),
        minute[nonzero],
        payments[nonzero],
        failures[nonzero],
        payments[nonzero],
    )
    first = datetime.fromisoformat(str(times[0])).replace(tzinfo=UTC)
    windows = [
        tuple(datetime.fromisoformat(t).replace(tzinfo=UTC) for t in window)
        for window in json.loads(labels.read_text())["anomaly_windows"]
    ]
    return counts, first, first + timedelta(minutes=payments.size), windows  # type: ignore[return-value]


def run_taxi(
    config: Config, taxi_from: str | None, seed: int, per_minute: float
) -> dict[str, Any] | None:
    """Our alerts on the trace from ``taxi_from`` (None: all of it), inside and outside the
    labelled windows; None when the data is not there."""
    loaded = taxi_counts(TAXI, per_minute, seed, taxi_from)
    if loaded is None:
        return None
    counts, start, end, windows = loaded
    return score_taxi(replay(config, FrameSource(counts), start, end), start, end, windows) | {
        "per_minute": per_minute
    }


def score_taxi(
    events: Iterable[Notification],
    start: datetime,
    end: datetime,
    windows: list[tuple[datetime, datetime]],
) -> dict[str, Any]:
    """Alerts of a replay of the trace from ``start`` to ``end``, inside and outside the
    labelled ``windows``, counted after the first week."""
    # The first week only teaches a seasonal detector; alerts count after it.
    count_from = start + timedelta(days=7)
    windows = [w for w in windows if w[1] > count_from]
    inside = {i: 0 for i in range(len(windows))}
    outside, outside_failure = 0, 0
    for event in events:
        at = datetime.fromisoformat(event.at)
        if event.event != "firing" or at < count_from:
            continue
        window = next((i for i, (lo, hi) in enumerate(windows) if lo <= at < hi), None)
        if event.rule in FAILURE_RULES:
            outside_failure += window is None
        elif window is not None:
            inside[window] += 1
        else:
            outside += 1
    window_days = sum((hi - max(lo, count_from)).total_seconds() for lo, hi in windows) / 86400
    outside_days = (end - count_from).total_seconds() / 86400 - window_days
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "windows": [
            {"from": lo.isoformat(), "to": hi.isoformat(), "volume_alerts": inside[i]}
            for i, (lo, hi) in enumerate(windows)
        ],
        "volume_alerts_outside": outside,
        "failure_alerts_outside": outside_failure,
        "outside_days": round(outside_days, 1),
        "volume_alerts_outside_per_month": outside / outside_days * MONTH_DAYS,
    }
