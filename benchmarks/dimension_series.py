"""What per gateway x dimension series buy and cost: delay on a confined incident, false alerts.

Simulated payments (``detector.simulate.generate``, seeded) are aggregated in memory per
(gateway, minute, method, country) and replayed through ``detector.backtest.replay`` over a
``FrameSource``, so the detector runs exactly as in a backtest, without SQL.

- **Confined incident**: card is 15% of stripe's 40 payments a minute; for 60 minutes at
  13:00 (after 5 hours of history) stripe's card payments fail at 30%, 15%, 10% or 6% while
  everything else stays at 1%. First alert, aggregate only vs with
  ``series: [[method], [country]]``.
- **Segment incident**: the same, but only card payments from Brazil fail (at 50% or 30%);
  ``sla_breach`` alerts opened per incident with series on (the target is one;
  escalations from warning to critical are not new alerts).
- **Segment outage**: every payment from Brazil (13% of stripe's) fails for 15 minutes at
  13:00; minutes from its start to the ``outage`` alert labelled ``country=BR``, and the
  other alerts opened meanwhile (which the default inhibit rule mutes).
- **Evidence already used**: a gateway of about one payment a minute, half of its payments
  failing for an hour; ``sla_breach`` firings per incident over the 6 hours after it (the
  window still holds it), and the time from its end to the resolution.
- **Healthy traffic**: three gateways (40, 10 and 4 a minute) at 1% for ``--days`` days with
  series on; the SLA breach alerts of any series, which the budget bounds.

    .venv/bin/python benchmarks/dimension_series.py [--repeat 5] [--days 7]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from detector.backtest import replay
from detector.config import Config, parse_config
from detector.model import Counts, Notification, grouped
from detector.rules import series_name
from detector.simulate import GatewayProfile, Incident, generate, minute_counts
from detector.source import FrameSource

__all__ = ["main"]

DAY = datetime(2026, 11, 17, tzinfo=UTC)  # a Tuesday
CARD_SHARE = 0.15
RATES = (0.3, 0.15, 0.10, 0.06)
INCIDENT = timedelta(hours=13), timedelta(minutes=60)
DIMENSIONS = {"method": "method", "country": "country"}


def _config(series: bool) -> Config:
    detection: dict[str, object] = {"no_data": {"enabled": False}}
    detection["volume_drop"] = {"enabled": False}
    if series:
        detection["sla_breach"] = {"series": [["method"], ["country"]]}
    return parse_config(
        {"source": {"columns": {"dimensions": DIMENSIONS}}, "detection": detection}, env={}
    )


def _counts(frame: pd.DataFrame) -> Counts:
    """Per-minute counts with their per-(method, country) detail, as a source reads them."""
    minute = frame["created_at"].to_numpy(dtype="datetime64[m]").astype(np.int64)
    table = pd.DataFrame(
        {
            "minute": minute,
            "gateway": frame["gateway"].astype(str).to_numpy(),
            "method": frame["method"].astype(str).to_numpy(),
            "country": frame["country"].astype(str).to_numpy(),
            "final": (frame["status"] != "pending").to_numpy(dtype=np.int64),
            "failed": (frame["status"] == "failed").to_numpy(dtype=np.int64),
        }
    )
    cells = (
        table.groupby(["minute", "gateway", "method", "country"], sort=True)
        .agg(volume=("final", "size"), payments=("final", "sum"), failures=("failed", "sum"))
        .reset_index()
    )
    detail = Counts(
        cells["gateway"].to_numpy(dtype=object),
        cells["minute"].to_numpy(dtype=np.int64),
        cells["payments"].to_numpy(dtype=np.int64),
        cells["failures"].to_numpy(dtype=np.int64),
        cells["volume"].to_numpy(dtype=np.int64),
        dimensions=("method", "country"),
        values=cells[["method", "country"]].to_numpy(dtype=object),
    )
    return replace(grouped(detail.gateway, detail.minute, detail), detail=detail)


def _confined(
    rate: float,
    seed: int,
    country: str | None = None,
    method: str | None = "card",
    length: timedelta = INCIDENT[1],
) -> Counts:
    """Stripe's payments of ``method`` (any if None) from ``country`` (any if None) fail at
    ``rate`` for ``length`` from 13:00."""
    stripe = (GatewayProfile("stripe", per_minute=40, failure_rate=0.01),)
    frame = generate(DAY + timedelta(hours=8), DAY + timedelta(hours=16), stripe, seed=seed)
    rng = np.random.default_rng(seed)
    card = rng.random(len(frame)) < CARD_SHARE
    frame["method"] = pd.Categorical(np.where(card, "card", "wallet"), ["card", "wallet"])
    start = (DAY + INCIDENT[0]).replace(tzinfo=None)
    at = frame["created_at"].to_numpy()
    hit = (
        (True if method is None else (frame["method"] == method).to_numpy())
        & (frame["status"] != "pending").to_numpy()
        & (True if country is None else (frame["country"] == country).to_numpy())
        & (at >= np.datetime64(start))
        & (at < np.datetime64(start + length))
    )
    frame.loc[hit, "status"] = np.where(rng.random(int(hit.sum())) < rate, "failed", "succeeded")
    return _counts(frame)


def _first_alerts(events: list[Notification]) -> dict[str, float]:
    first: dict[str, float] = {}
    for event in events:
        if event.event == "firing":
            what = "series" if "method" in event.labels or "country" in event.labels else "gateway"
            delay = datetime.fromisoformat(event.at) - (DAY + INCIDENT[0])
            first.setdefault(what, delay.total_seconds() / 60)
    return first


def _median(delays: list[float | None]) -> str:
    found = [d for d in delays if d is not None]
    missed = len(delays) - len(found)
    median = f"{statistics.median(found):.0f}" if found else f">{INCIDENT[1].seconds // 60}"
    return f"{median:>4} min, {missed} missed"


def _opened(events: list[Notification]) -> list[Notification]:
    """The alerts opened: firing notifications other than escalations."""
    return [e for e in events if e.event == "firing" and "escalated:" not in e.idempotency_key]


def _segment_incidents(repeat: int) -> None:
    start, end = DAY + timedelta(hours=11), DAY + timedelta(hours=16)
    print("\nincident confined to card payments in Brazil: sla_breach alerts per incident")
    for rate in (0.5, 0.3):
        opened, firings = [], 0
        for seed in range(repeat):
            events = [
                e
                for e in replay(_config(True), FrameSource(_confined(rate, seed, "BR")), start, end)
                if e.rule == "sla_breach"
            ]
            opened.append(len(_opened(events)))
            firings += sum(e.event == "firing" for e in events)
        print(
            f"  card, BR at {rate:.0%}: {sum(opened)} alerts for {repeat} incidents {opened}"
            f" ({firings} firing notifications with escalations)"
        )


def _segment_outage(repeat: int) -> None:
    start, end = DAY + timedelta(hours=12), DAY + timedelta(hours=14)
    print("\nevery payment from Brazil failing for 15 min: outage alert on country=BR")
    delays, others = [], []
    for seed in range(repeat):
        counts = _confined(1.0, seed, "BR", method=None, length=timedelta(minutes=15))
        opened = _opened(list(replay(_config(True), FrameSource(counts), start, end)))
        outage = [e for e in opened if e.rule == "outage" and e.labels.get("country") == "BR"]
        if outage:
            delays.append((datetime.fromisoformat(outage[0].at) - (DAY + INCIDENT[0])).seconds / 60)
        others += [
            series_name(e.rule, {k: v for k, v in e.labels.items() if k in DIMENSIONS})
            for e in opened
            if e not in outage
        ]
    print(
        f"  minutes from the start to the alert: {delays} ({repeat - len(delays)} missed);"
        f" also opened: {dict(sorted(collections.Counter(others).items()))}"
    )


def _evidence_already_used(repeat: int) -> None:
    slow = (GatewayProfile("slow", per_minute=1, failure_rate=0.01),)
    config = _config(False)
    print("\n1 payment/min, 50% failing for 1 h: sla_breach firings per incident, hours to resolve")
    firings, hours = [], []
    for seed in range(repeat):
        incident = Incident("slow", DAY + timedelta(hours=12), timedelta(hours=1), 0.5)
        counts = minute_counts(
            DAY - timedelta(days=1), DAY + timedelta(days=1), slow, (incident,), seed
        )
        events = [
            e
            for e in replay(
                config,
                FrameSource(counts.to_counts()),
                DAY + timedelta(hours=11),
                DAY + timedelta(hours=19),
            )
            if e.rule == "sla_breach"
        ]
        firings.append(sum(e.event == "firing" for e in events))
        resolved = [datetime.fromisoformat(e.at) for e in events if e.event == "resolved"]
        if resolved:
            hours.append((resolved[0] - (DAY + timedelta(hours=13))).total_seconds() / 3600)
    print(f"  {sum(firings)} firings for {repeat} incidents {firings}")
    print(
        f"  resolved after the end: median {statistics.median(hours):.1f} h, max {max(hours):.1f} h"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="seeds per incident rate")
    parser.add_argument("--days", type=int, default=7, help="days of healthy traffic")
    args = parser.parse_args()
    began = time.perf_counter()
    start, end = DAY + timedelta(hours=11), DAY + timedelta(hours=16)

    print("first alert after a card-only incident starts (median over seeds; 60 min incident)")
    print(f"{'card failure rate':>18} {'aggregate only':>24} {'with series: any':>24}")
    for rate in RATES:
        plain: list[float | None] = []
        series: list[float | None] = []
        for seed in range(args.repeat):
            counts = FrameSource(_confined(rate, seed))
            plain.append(
                _first_alerts(list(replay(_config(False), counts, start, end))).get("gateway")
            )
            with_series = _first_alerts(list(replay(_config(True), counts, start, end)))
            series.append(min(with_series.values(), default=None))
        print(f"{rate:>18.0%} {_median(plain):>24} {_median(series):>24}")

    _segment_incidents(args.repeat)
    _segment_outage(args.repeat)
    _evidence_already_used(2 * args.repeat)

    traffic = (
        GatewayProfile("stripe", per_minute=40, failure_rate=0.01),
        GatewayProfile("adyen", per_minute=10, failure_rate=0.01),
        GatewayProfile("paypal", per_minute=4, failure_rate=0.01),
    )
    first_day = datetime(2026, 11, 2, tzinfo=UTC)
    frame = pd.concat(
        [
            generate(first_day + timedelta(days=d), first_day + timedelta(days=d + 1), traffic)
            for d in range(args.days)
        ]
    )
    counts = FrameSource(_counts(frame))
    timings = {}
    alerts = {}
    for name, series_on in (("aggregate only", False), ("with series", True)):
        ticked = time.perf_counter()
        events = replay(
            _config(series_on),
            counts,
            first_day + timedelta(hours=6),
            first_day + timedelta(days=args.days),
        )
        alerts[name] = [e for e in events if e.event == "firing"]
        timings[name] = time.perf_counter() - ticked
    gateway_days = len(traffic) * (args.days - 0.25)
    print(f"\nhealthy traffic, {gateway_days:g} gateway-days at 1% (SLA 2%), sla_breach alerts:")
    for name, fired in alerts.items():
        print(f"  {name:<15} {len(fired)} alert(s)   replay {timings[name]:.0f} s")
    for event in alerts["with series"]:
        print(f"    {event.at} {event.summary}")
    print(f"\n{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
