"""Calendar benchmark: six weeks of traffic shaped like a shop's, with a sale day, a holiday
and a special day nobody declared, replayed without and with a ``calendar:``.

The traffic (``detector.simulate.Seasons``) follows the local clock of Europe/Berlin (the
diurnal curve, and a strong week: Friday 115%, Saturday 70%, Sunday 50% of a Monday), grows
2% a week and moves with the end of summer time on 2026-10-25. Special local days: a sale
day at 3x (2026-11-06), a holiday at 0.3x (2026-11-11) and a regional holiday at 0.5x
(2026-11-18) that the calendar does not declare. Healthy gateways (failure rate 1%) at 2, 10,
50 and 200 payments a minute count false alerts; gateways at 4 a minute each carry one drop
to 40% of their volume for 2 hours, at times of day spread over the 24 hours on ordinary
days of weeks 4-6, for the detection figures. Every gateway is replayed through
``detector.backtest.replay`` (the daemon's evaluation path) with the default alerts.yaml,
then with the sale day and the holiday declared. Alerts of the first week (the seasonal
rules' learning) are not counted.

    .venv/bin/python benchmarks/special_days.py            # about 11 minutes on 2 shared cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector.backtest import replay
from detector.config import Config, parse_config
from detector.simulate import GatewayProfile, Incident, Seasons, minute_counts
from detector.source import FrameSource

__all__ = ["main"]

START = datetime(2026, 10, 12)  # a Monday, naive UTC
WEEKS = 6
COUNTED_FROM = START + timedelta(days=7)
ZONE = "Europe/Berlin"
SALE, HOLIDAY, UNDECLARED = date(2026, 11, 6), date(2026, 11, 11), date(2026, 11, 18)
SEASONS = Seasons(
    ZONE,
    weekdays=(1.0, 1.0, 1.0, 1.05, 1.15, 0.7, 0.5),
    growth_per_week=0.02,
    origin=START,
    special_days=((SALE, 3.0), (HOLIDAY, 0.3), (UNDECLARED, 0.5)),
)
CALENDAR = {
    "timezone": ZONE,
    "days": [
        {"name": "sale", "date": SALE.isoformat(), "volume": 3.0},
        {"name": "holiday", "date": HOLIDAY.isoformat(), "volume": 0.3},
    ],
}
QUIET_VOLUMES = (2.0, 10.0, 50.0, 200.0)
DROP_RATE, DROP_FACTOR, DROP_MINUTES = 4.0, 0.4, 120
VOLUME_RULES = ("volume_drop", "no_data")


@dataclass(frozen=True)
class Setup:
    gateways: tuple[GatewayProfile, ...]
    drops: dict[str, Incident]  # the drop gateways' incidents, by gateway


def setup(per_volume: int, drops: int, seed: int) -> Setup:
    quiet = [
        GatewayProfile(f"q{volume:g}_{i}", volume, 0.01)
        for volume in QUIET_VOLUMES
        for i in range(per_volume)
    ]
    dropping = [GatewayProfile(f"drop_{i}", DROP_RATE, 0.01) for i in range(drops)]
    # Ordinary days of weeks 4-6 (not a special day nor the day after one), times of day
    # spread evenly over the 24 hours.
    special = {SALE, HOLIDAY, UNDECLARED}
    days = [
        d
        for d in (START.date() + timedelta(days=k) for k in range(21, 7 * WEEKS - 1))
        if d not in special and d - timedelta(days=1) not in special
    ]
    incidents = {}
    for i, gateway in enumerate(dropping):
        day = days[(i * 5 + seed) % len(days)]
        minute = (i * 24 * 60 // max(drops, 1) + 37 * seed) % (24 * 60)
        at = datetime.combine(day, datetime.min.time()) + timedelta(minutes=minute)
        incidents[gateway.name] = Incident(
            gateway.name, at, timedelta(minutes=DROP_MINUTES), volume_factor=DROP_FACTOR
        )
    return Setup(tuple(quiet + dropping), incidents)


def firings(
    config: Config, counts: FrameSource, end: datetime
) -> Iterator[tuple[str, str, datetime]]:
    """(gateway, rule, time) of every alert that fired."""
    for event in replay(config, counts, START.replace(tzinfo=UTC), end.replace(tzinfo=UTC)):
        gateway = event.labels.get("gateway")
        if event.event == "firing" and gateway is not None:
            yield gateway, event.rule, datetime.fromisoformat(event.at).replace(tzinfo=None)


def local_day(moment: datetime) -> date:
    return moment.replace(tzinfo=UTC).astimezone(ZoneInfo(ZONE)).date()


def where(moment: datetime) -> str:
    day = local_day(moment)
    if day in (SALE, HOLIDAY, UNDECLARED):
        return {
            SALE: "on the sale day",
            HOLIDAY: "on the holiday",
            UNDECLARED: "on the undeclared day",
        }[day]
    for special, name in ((SALE, "sale day"), (HOLIDAY, "holiday"), (UNDECLARED, "undeclared day")):
        if timedelta(0) < day - special <= timedelta(days=7):
            return f"in the week after the {name}"
    return "elsewhere"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-volume", type=int, default=4, help="healthy gateways per volume")
    parser.add_argument("--drops", type=int, default=16, help="gateways with a 40%% drop")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    plan = setup(args.per_volume, args.drops, args.seed)
    end = START + timedelta(weeks=WEEKS)
    counts = minute_counts(
        START, end, plan.gateways, plan.drops.values(), seed=args.seed, seasons=SEASONS
    )
    source = FrameSource(counts.to_counts())
    quiet = [g.name for g in plan.gateways if g.name not in plan.drops]
    months = len(quiet) * (end - COUNTED_FROM) / timedelta(days=30)
    configs = {
        "no calendar": parse_config({}),
        "calendar.timezone only": parse_config({"calendar": {"timezone": ZONE}}),
        "sale day and holiday declared": parse_config({"calendar": CALENDAR}),
    }
    print(
        f"calendar benchmark (seed {args.seed}): {WEEKS} weeks from {START:%Y-%m-%d} in {ZONE} "
        f"(DST ends 2026-10-25), 2%/week growth, sale day {SALE} x3, holiday {HOLIDAY} x0.3, "
        f"undeclared day {UNDECLARED} x0.5; {len(quiet)} healthy gateways at "
        f"{'/'.join(f'{v:g}' for v in QUIET_VOLUMES)} payments/min ({months:.1f} gateway-months "
        f"counted from {COUNTED_FROM:%Y-%m-%d}); {len(plan.drops)} drops to "
        f"{DROP_FACTOR:.0%} for {DROP_MINUTES // 60} h at {DROP_RATE:g}/min\n"
    )
    for label, config in configs.items():
        false: dict[str, int] = {}
        first_alert: dict[str, datetime] = {}
        other_rules = 0
        for gateway, rule, at in firings(config, source, end):
            if at < COUNTED_FROM:
                continue
            incident = plan.drops.get(gateway)
            if incident is not None:
                if rule in VOLUME_RULES and incident.start <= at <= incident.end:
                    first_alert.setdefault(gateway, at)
                continue
            if rule in VOLUME_RULES:
                place = where(at)
                false[place] = false.get(place, 0) + 1
            else:
                other_rules += 1
        total = sum(false.values())
        delays = [
            (first_alert[g] - plan.drops[g].start) / timedelta(minutes=1) for g in first_alert
        ]
        print(f"{label}:")
        print(
            f"  volume false alerts: {total} = {total / months:.2f} per gateway-month "
            f"(budget 0.33, all rules together)"
        )
        for place in sorted(false):
            print(f"    {place}: {false[place]}")
        print(f"  other rules' alerts on the healthy gateways: {other_rules}")
        median = f"{statistics.median(delays):.0f} min" if delays else "-"
        print(
            f"  drop to {DROP_FACTOR:.0%} for {DROP_MINUTES} min at {DROP_RATE:g}/min: caught "
            f"{len(delays)}/{len(plan.drops)}, median delay {median}\n"
        )
    print(f"{time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
