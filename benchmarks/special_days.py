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

The declines part (``--part declines``) replays gateways at 8, 30 and 120 payments a minute
whose declines (told apart, ``source.statuses.declined``) run at 5% by day and 20% from
00:00 to 05:00 Berlin time every night, 20% all through the sale day, and carry one decline
wave (20% for an hour, at a local daytime hour) in the week after the end of summer time or
in the week after the sale day. ``decline_rate``'s false alerts and caught waves are printed
for the same three alerts.yaml: without a calendar its usual share is matched in UTC and
learns from the sale day; with ``calendar.timezone`` it is matched at the same local time;
with the sale day declared, that day is left out of what it learns.

    .venv/bin/python benchmarks/special_days.py                  # about 11 minutes, 2 shared cores
    .venv/bin/python benchmarks/special_days.py --part declines  # about 21 minutes
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
    drops: dict[str, Incident]  # by gateway: its one incident (a drop, or a decline wave)


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
    config: Config, counts: FrameSource, end: datetime, begin: datetime = START
) -> Iterator[tuple[str, str, datetime]]:
    """(gateway, rule, time) of every alert that fired from ``begin``."""
    for event in replay(config, counts, begin.replace(tzinfo=UTC), end.replace(tzinfo=UTC)):
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


# --- declines ---------------------------------------------------------------------------------

DECLINE_VOLUMES = (8.0, 30.0, 120.0)
DAY_DECLINES, NIGHT_DECLINES, WAVE_DECLINES = 0.05, 0.20, 0.20
NIGHT_HOURS = (0, 5)  # local
DST_END = date(2026, 10, 25)
DECLINES_COUNTED = {"source": {"statuses": {"declined": ["declined"]}}}


def local_hour(day: date, hour: int) -> datetime:
    """Naive UTC of ``hour`` o'clock (local) on ``day``."""
    moment = datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(ZONE))
    return (moment + timedelta(hours=hour)).astimezone(UTC).replace(tzinfo=None)


def decline_setup(per_volume: int, seed: int) -> Setup:
    """The decline gateways, their nights and sale day, and one wave each (in ``drops``)."""
    gateways = [
        GatewayProfile(f"d{volume:g}_{i}", volume, 0.01, decline_rate=DAY_DECLINES, decline_swing=0)
        for volume in DECLINE_VOLUMES
        for i in range(per_volume)
    ]
    # Ordinary days of the week after the end of summer time and of the week after the sale.
    days = [DST_END + timedelta(days=k) for k in range(1, 8)]
    days += [SALE + timedelta(days=k) for k in range(1, 8)]
    days = [d for d in days if d not in (HOLIDAY, UNDECLARED)]
    waves = {}
    for i, gateway in enumerate(gateways):
        day = days[(i * 3 + seed) % len(days)]
        hour = 8 + (i * 5 + seed) % 12  # local daytime, when the usual share is the day's
        waves[gateway.name] = Incident(
            gateway.name, local_hour(day, hour), timedelta(hours=1), decline_rate=WAVE_DECLINES
        )
    return Setup(tuple(gateways), waves)


def decline_incidents(plan: Setup) -> list[Incident]:
    """Every night's riskier payments and the sale day's declines, then the waves."""
    incidents = []
    for gateway in plan.gateways:
        for k in range(-1, 7 * WEEKS + 1):
            day = START.date() + timedelta(days=k)
            first, last = (local_hour(day, hour) for hour in NIGHT_HOURS)
            incidents.append(
                Incident(gateway.name, first, last - first, decline_rate=NIGHT_DECLINES)
            )
        sale, after = local_hour(SALE, 0), local_hour(SALE + timedelta(days=1), 0)
        incidents.append(Incident(gateway.name, sale, after - sale, decline_rate=NIGHT_DECLINES))
    return incidents + list(plan.drops.values())


def decline_place(moment: datetime) -> str:
    day = local_day(moment)
    if day == SALE:
        return "on the sale day (its declines at 20%: raised by design)"
    if timedelta(0) < day - SALE <= timedelta(days=7):
        return "in the week after the sale day"
    if timedelta(0) < day - DST_END <= timedelta(days=7):
        return "in the week after the end of summer time"
    return "elsewhere"


def declines_part(per_volume: int, seed: int) -> None:
    plan = decline_setup(per_volume, seed)
    end = START + timedelta(weeks=WEEKS)
    counts = minute_counts(
        START, end, plan.gateways, decline_incidents(plan), seed=seed, seasons=SEASONS
    )
    source = FrameSource(counts.to_counts())
    months = len(plan.gateways) * (end - COUNTED_FROM) / timedelta(days=30)
    print(
        f"declines (seed {seed}): {len(plan.gateways)} gateways at "
        f"{'/'.join(f'{v:g}' for v in DECLINE_VOLUMES)} payments/min, declines "
        f"{DAY_DECLINES:.0%} by day and {NIGHT_DECLINES:.0%} from {NIGHT_HOURS[0]:02d}:00 to "
        f"{NIGHT_HOURS[1]:02d}:00 {ZONE}, {NIGHT_DECLINES:.0%} all through the sale day {SALE}; "
        f"one wave to {WAVE_DECLINES:.0%} for 1 h each ({months:.1f} gateway-months counted "
        f"from {COUNTED_FROM:%Y-%m-%d})\n"
    )
    configs = {
        "no calendar (usual share matched in UTC, learnt from every day)": DECLINES_COUNTED,
        "calendar.timezone only (matched at the same local time)": {
            **DECLINES_COUNTED,
            "calendar": {"timezone": ZONE},
        },
        "sale day and holiday declared (left out of what it learns)": {
            **DECLINES_COUNTED,
            "calendar": CALENDAR,
        },
    }
    for label, settings in configs.items():
        false: dict[str, int] = {}
        caught: dict[str, datetime] = {}
        other_rules = 0
        for gateway, rule, at in firings(parse_config(settings), source, end, COUNTED_FROM):
            wave = plan.drops[gateway]
            if rule != "decline_rate":
                other_rules += 1
            elif wave.start <= at <= wave.end:
                caught.setdefault(gateway, at)
            else:
                place = decline_place(at)
                false[place] = false.get(place, 0) + 1
        total = sum(n for place, n in false.items() if not place.startswith("on the sale"))
        delays = [(caught[g] - plan.drops[g].start) / timedelta(minutes=1) for g in caught]
        median = f"{statistics.median(delays):.0f} min" if delays else "-"
        print(f"{label}:")
        print(
            f"  false decline_rate alerts: {total} = {total / months:.2f} per gateway-month "
            "(budget 0.33, all rules together)"
        )
        for place in sorted(false):
            print(f"    {place}: {false[place]}")
        print(f"  decline waves caught {len(delays)}/{len(plan.drops)}, median delay {median}")
        print(f"  other rules' alerts: {other_rules}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-volume", type=int, default=4, help="healthy gateways per volume")
    parser.add_argument("--drops", type=int, default=16, help="gateways with a 40%% drop")
    parser.add_argument(
        "--part",
        choices=("volume", "declines"),
        default="volume",
        help="the volume rules' gateways, or the declines' (decline_rate)",
    )
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if args.part == "declines":
        declines_part(max(args.per_volume // 2, 1), args.seed)
        print(f"{time.perf_counter() - began:.0f} s")
        return 0
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
