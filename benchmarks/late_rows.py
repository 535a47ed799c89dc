"""Late and batched rows, replayed tick by tick as production writes them.

Each row is inserted into a SQLite payments table at its insert time, not its
``created_at``, and the daemon's engine ticks every simulated minute after the rows
inserted by then (``detector.simulate.arrivals``). Two tables:

- *late failures*: a gateway of 20 payments a minute (1.5% failing) whose failed rows a
  timeout reaper writes 8-12 minutes late, with a 15-minute total outage; per seed, whether
  ``outage`` fires, its delay after the outage began, and the ``volume_drop`` alerts, beside
  the backtest of the final table;
- *batches*: a gateway of 10 payments a minute, 8 days of history, whose rows a job copies
  every 10 minutes; the alerts of 6 hours of a daemon running for half an hour already.

Each is run with the default ``alerts.yaml`` (the re-read sized from the lateness observed)
and with ``source.max_late_arrival: 5m`` (the re-read stays ``late_arrival``), side by side.

- *slow settlement*: a gateway of 20 payments a minute failing 1.5%, whose successes are
  written ``pending`` and settle a median 8 minutes later (failures final at once); per seed
  6 hours healthy and 6 hours with technical failures 1.5% -> 8% for an hour (false alerts:
  any alert but that one's ``sla_breach``; caught and delay), with the settlement estimate
  (default) and with the rules judging the minutes as they stand, beside the backtest of
  the final table.

- *first start*: the batched gateway's daemon started on an empty state store (nothing
  learnt of the lateness): ``volume_drop`` alerts in its first hour, and with the traffic at
  10% from 5 minutes before the start, whether and how long after the start it fires; with
  the first-start hold (default) and without it, side by side.
- *series settlement*: a gateway of 100 payments a minute whose successes settle a median 8
  minutes later, watched per method and per country, 2 h healthy then Brazil failing 30%
  for an hour: false alerts (any but Brazil's, or the gateway's that Brazil lifts above
  the SLA, in its hour) and Brazil's delay, with the
  series judged as their gateway (default) and as their minutes stand.
- *nowcast*: a gateway of 20 payments a minute, 8 days of history, 30% of whose rows an
  asynchronous pipeline writes 5-10 minutes late (smooth), and the batched table above;
  per seed the delay of a volume drop to 20% on the trickling table with the newest
  minutes nowcast (default), judged on complete minutes only, and in the backtest of the
  final table; and the volume alerts of 4 healthy hours per seed of each table from a
  daemon's start, both ways.

    .venv/bin/python benchmarks/late_rows.py --part late --part batches   # about 2 minutes
    .venv/bin/python benchmarks/late_rows.py --part settle --seeds 2   # about 15 minutes
    .venv/bin/python benchmarks/late_rows.py --part first-start --seeds 3   # about 5 minutes
    .venv/bin/python benchmarks/late_rows.py --part series --seeds 2   # about 20 minutes
    .venv/bin/python benchmarks/late_rows.py --part nowcast --seeds 3   # about 20 minutes
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import sqlalchemy as sa

from detector.alerts import notification_for
from detector.backtest import replay
from detector.config import Config, parse_config
from detector.db import connect
from detector.engine import Engine
from detector.model import Notification
from detector.rules import RuleResult
from detector.series import DimensionSeries
from detector.simulate import GatewayProfile, Incident, create_schema, generate
from detector.simulate.arrivals import Arrivals, Times, batched, failed_late, settled_late, trickled
from detector.source import SqlSource

__all__ = ["main"]

DAY = datetime(2026, 11, 17, tzinfo=UTC)  # a Tuesday
MODES = {"auto (default)": "60m", "late_arrival only": "5m"}
REAPED = GatewayProfile("stripe", per_minute=20, failure_rate=0.015)
BATCHED = GatewayProfile("adyen", per_minute=10, failure_rate=0.01)


def _config(url: str, max_late_arrival: str) -> Config:
    source = {"url": url, "table": "payments", "max_late_arrival": max_late_arrival}
    return parse_config({"source": source}, env={})


def _live(
    config: Config,
    arrivals: Arrivals,
    begin: datetime,
    end: datetime,
    started: timedelta,
    settlement: bool = True,
    nowcast: bool = True,
) -> list[Notification]:
    def change(engine: Engine) -> None:
        if not settlement:  # the minutes judged as they stand
            engine.settlement = None
        if not nowcast:  # the volume rules judge complete minutes only
            engine.arrival = None

    return _ticked(config, arrivals, begin, end, started, change)


def _table(folder: Path, name: str) -> tuple[str, sa.Engine]:
    url = f"sqlite:///{folder / name}.db"
    engine = sa.create_engine(url)
    create_schema(engine, "payments")
    return url, engine


def _firing(notifications: list[Notification], rule: str) -> list[datetime]:
    return [
        datetime.fromisoformat(n.at)
        for n in notifications
        if n.rule == rule and n.event == "firing"
    ]


def late_failures(folder: Path, seeds: int) -> None:
    print("late failures: failed rows written 8-12 min late, a 15-min total outage")
    print(f"{'re-read':<20} {'outage caught':>14} {'median delay':>13} {'volume_drop':>12}")
    backtest_delays: list[float] = []
    for mode, cap in MODES.items():
        caught, delays, drops = 0, [], 0
        for seed in range(seeds):
            start = DAY + timedelta(hours=12, minutes=7 * seed)
            outage = Incident("stripe", start, timedelta(minutes=15), failure_rate=1.0)
            begin, end = DAY + timedelta(hours=10), start + timedelta(hours=1)
            frame = generate(DAY + timedelta(hours=7), end, [REAPED], [outage], seed=seed)
            url, engine = _table(folder, f"late-{cap}-{seed}")
            arrivals = Arrivals(engine, "payments", frame, failed_late(frame, 8, 12, seed))
            config = _config(url, cap)
            live = _live(config, arrivals, begin, end, timedelta(0))
            fired = [t for t in _firing(live, "outage") if t >= start]
            caught += bool(fired)
            if fired:
                delays.append((fired[0] - start).total_seconds() / 60)
            drops += len(_firing(live, "volume_drop"))
            if cap == "60m":
                arrivals.until(end + timedelta(hours=1))
                source = SqlSource(connect(url), config.source)
                final = [n for n in replay(config, source, begin, end)]
                source.engine.dispose()
                backtest = [t for t in _firing(final, "outage") if t >= start]
                if backtest:
                    backtest_delays.append((backtest[0] - start).total_seconds() / 60)
            engine.dispose()
        delay = f"{statistics.median(delays):.0f} min" if delays else "-"
        print(f"{mode:<20} {f'{caught}/{seeds}':>14} {delay:>13} {drops:>12}")
    delay = f"{statistics.median(backtest_delays):.0f} min" if backtest_delays else "-"
    print(f"{'backtest (final)':<20} {f'{len(backtest_delays)}/{seeds}':>14} {delay:>13}")


def batches(folder: Path, seeds: int) -> None:
    print("\nbatches: rows copied every 10 min; 6 h of a daemon started 30 min before")
    print(f"{'re-read':<20} {'volume_drop firing':>19} {'other alerts':>13}")
    begin = DAY + timedelta(hours=10)
    end = begin + timedelta(hours=6)
    for mode, cap in MODES.items():
        drops, others = 0, 0
        for seed in range(seeds):
            frame = generate(DAY - timedelta(days=8), end, [BATCHED], seed=100 + seed)
            url, engine = _table(folder, f"batch-{cap}-{seed}")
            arrivals = Arrivals(engine, "payments", frame, batched(frame, 10, 3 + seed))
            live = _live(_config(url, cap), arrivals, begin, end, timedelta(minutes=30))
            drops += len(_firing(live, "volume_drop"))
            others += len([n for n in live if n.event == "firing" and n.rule != "volume_drop"])
            engine.dispose()
        print(f"{mode:<20} {drops:>19} {others:>13}")


SETTLING = GatewayProfile("stripe", per_minute=20, failure_rate=0.015)
SETTLE_MODES = {"settlement (default)": True, "minutes as they stand": False}


def slow_settlement(folder: Path, seeds: int) -> None:
    print("\nslow settlement: successes pending a median 8 min, failures final at once")
    print(
        f"{'judged':<22} {'false alerts (12 h)':>27} {'1.5% -> 8% caught':>18} {'median delay':>13}"
    )
    begin, end = DAY + timedelta(hours=10), DAY + timedelta(hours=16)
    start = DAY + timedelta(hours=13)
    backtest_delays: list[float] = []
    for mode, settlement in SETTLE_MODES.items():
        false_alerts, caught, delays = 0, 0, []
        for seed in range(seeds):
            for incident in (False, True):
                incidents = (
                    [Incident("stripe", start, timedelta(hours=1), failure_rate=0.08)]
                    if incident
                    else []
                )
                frame = generate(DAY + timedelta(hours=4), end, [SETTLING], incidents, seed=seed)
                url, engine = _table(folder, f"settle-{settlement}-{incident}-{seed}")
                created = frame["created_at"].to_numpy(dtype="datetime64[us]")
                arrivals = Arrivals(
                    engine, "payments", frame, created, settled_late(frame, 8, seed)
                )
                config = _config(url, "60m")
                live = _live(config, arrivals, begin, end, timedelta(minutes=30), settlement)
                firing = [n for n in live if n.event == "firing"]
                if not incident:
                    false_alerts += len(firing)
                else:
                    fired = [datetime.fromisoformat(n.at) for n in firing if n.rule == "sla_breach"]
                    fired = [t for t in fired if start <= t < start + timedelta(hours=1)]
                    false_alerts += len(firing) - len(fired)
                    caught += bool(fired)
                    if fired:
                        delays.append((fired[0] - start).total_seconds() / 60)
                    if settlement:
                        arrivals.until(end + timedelta(hours=2))
                        source = SqlSource(connect(url), config.source)
                        final = _firing(list(replay(config, source, begin, end)), "sla_breach")
                        source.engine.dispose()
                        final = [t for t in final if start <= t < start + timedelta(hours=1)]
                        if final:
                            backtest_delays.append((final[0] - start).total_seconds() / 60)
                engine.dispose()
        delay = f"{statistics.median(delays):.0f} min" if delays else "-"
        print(f"{mode:<22} {false_alerts:>27} {f'{caught}/{seeds}':>18} {delay:>13}")
    delay = f"{statistics.median(backtest_delays):.0f} min" if backtest_delays else "-"
    print(f"{'backtest (final)':<22} {'':>27} {f'{len(backtest_delays)}/{seeds}':>18} {delay:>13}")


def _ticked(
    config: Config,
    arrivals: Arrivals,
    begin: datetime,
    end: datetime,
    started: timedelta,
    change: Callable[[Engine], None],
) -> list[Notification]:
    """The daemon's engine, set up by ``change``, ticked every minute from ``begin`` to
    ``end`` on the rows inserted by then."""
    source = SqlSource(connect(config.source.url), config.source)
    engine = Engine(config, source, hold_first_start=True)
    change(engine)

    def tick(now: datetime) -> list[Notification]:
        transitions = engine.tick(now).transitions
        return [notification_for(t, config) for t in transitions if not t.repeat]

    try:
        return arrivals.ticked(tick, begin, end, started)
    finally:
        source.engine.dispose()


def _no_first_start_hold(engine: Engine) -> None:
    engine.hold_first_start = False


def _series_as_they_stand(engine: Engine) -> None:
    def verdicts(series: DimensionSeries) -> dict[str, RuleResult]:
        return series.verdicts(engine._restarts(series.window, True))

    setattr(engine, "_series_verdicts", verdicts)  # noqa: B010 - the minutes as read


HOLD_MODES: dict[str, Callable[[Engine], None]] = {
    "hold (default)": lambda engine: None,
    "no hold": _no_first_start_hold,
}


def first_start(folder: Path, seeds: int) -> None:
    print("\nfirst start: rows copied every 10 min, a daemon started on an empty state store")
    print(
        f"{'first start':<16} {'volume_drop (1st h)':>20} {'drop at start caught':>21}"
        f" {'median delay':>13}"
    )
    begin = DAY + timedelta(hours=10)
    end = begin + timedelta(hours=1)
    for mode, change in HOLD_MODES.items():
        false_alerts, caught, delays = 0, 0, []
        for seed in range(seeds):
            for drop in (False, True):
                incidents = (
                    [
                        Incident(
                            "adyen",
                            begin - timedelta(minutes=5),
                            timedelta(hours=2),
                            volume_factor=0.1,
                        )
                    ]
                    if drop
                    else []
                )
                frame = generate(
                    DAY - timedelta(days=8), end, [BATCHED], incidents, seed=100 + seed
                )
                url, engine = _table(folder, f"first-{mode[:2]}-{drop}-{seed}")
                # Started at a different minute of the batch cycle each seed.
                at = batched(frame, 10, (3 * seed) % 10)
                arrivals = Arrivals(engine, "payments", frame, at)
                live = _ticked(_config(url, "60m"), arrivals, begin, end, timedelta(0), change)
                fired = _firing(live, "volume_drop")
                if not drop:
                    false_alerts += len(fired)
                elif fired:
                    caught += 1
                    delays.append((fired[0] - begin).total_seconds() / 60)
                engine.dispose()
        delay = f"{statistics.median(delays):.0f} min" if delays else "-"
        print(f"{mode:<16} {false_alerts:>20} {f'{caught}/{seeds}':>21} {delay:>13}")


SERIES_MODES: dict[str, Callable[[Engine], None]] = {
    "as their gateway (default)": lambda engine: None,
    "minutes as they stand": _series_as_they_stand,
}
BUSY = GatewayProfile("stripe", per_minute=100, failure_rate=0.015)
GATEWAY_LABELS = {"rule", "gateway", "severity"}


def series_settlement(folder: Path, seeds: int) -> None:
    print(
        "\nseries settlement: 100/min, successes pending a median 8 min,"
        " series per method and country"
    )
    print(
        f"{'series judged':<28} {'false alerts (2 h)':>19} {'BR 30% caught':>14}"
        f" {'median delay':>13}"
    )
    begin = DAY + timedelta(hours=10)
    start = begin + timedelta(hours=2)
    dimensions = {"method": "method", "country": "country"}
    for mode, change in SERIES_MODES.items():
        false_alerts, caught, delays = 0, 0, []
        for seed in range(seeds):
            frame = generate(
                DAY + timedelta(hours=4), start + timedelta(hours=1), [BUSY], seed=seed
            )
            created = frame["created_at"].to_numpy(dtype="datetime64[us]")
            hit = (
                (frame["country"] == "BR").to_numpy()
                & (frame["status"] != "pending").to_numpy()
                & (created >= np.datetime64(start.replace(tzinfo=None), "us"))
            )
            failed = hit & (np.random.default_rng(seed).random(len(frame)) < 0.3)
            frame.loc[failed, ["status", "error_code"]] = ["failed", "gateway_timeout"]
            url, engine = _table(folder, f"series-{mode[:2]}-{seed}")
            arrivals = Arrivals(engine, "payments", frame, created, settled_late(frame, 8, seed))
            config = parse_config(
                {
                    "source": {
                        "url": url,
                        "table": "payments",
                        "columns": {"dimensions": dimensions},
                    },
                    "detection": {"sla_breach": {"series": [["method"], ["country"]]}},
                },
                env={},
            )
            live = _ticked(
                config, arrivals, begin, start + timedelta(hours=1), timedelta(minutes=30), change
            )
            firing = [n for n in live if n.event == "firing"]
            # Brazil's incident: its series' alerts, and the gateway's own that it lifts
            # above the SLA.
            incident = [
                n
                for n in firing
                if datetime.fromisoformat(n.at) >= start
                and (n.labels.get("country") == "BR" or set(n.labels) <= GATEWAY_LABELS)
            ]
            false_alerts += len(firing) - len(incident)
            brazil = [datetime.fromisoformat(n.at) for n in incident if "country" in n.labels]
            if brazil:
                caught += 1
                delays.append((brazil[0] - start).total_seconds() / 60)
            engine.dispose()
        delay = f"{statistics.median(delays):.0f} min" if delays else "-"
        print(f"{mode:<28} {false_alerts:>19} {f'{caught}/{seeds}':>14} {delay:>13}")


TRICKLING = GatewayProfile("stripe", per_minute=20, failure_rate=0.015)
NOWCAST_MODES = {"nowcast (default)": True, "complete minutes only": False}
HEALTHY_HOURS = 4
MONTH_HOURS = 30 * 24


def _trickled(frame: pd.DataFrame, seed: int) -> Times:
    return trickled(frame, 0.3, 5, 10, seed)


def _batched(frame: pd.DataFrame, seed: int) -> Times:
    return batched(frame, 10, 3 + seed)


def _copies(
    folder: Path, name: str, frame: pd.DataFrame, at: Times, before: datetime
) -> dict[bool, tuple[str, sa.Engine, Arrivals]]:
    """A table per nowcast mode holding the rows inserted before ``before`` (written once,
    copied), each with the arrivals of the rest."""
    _, engine = _table(folder, f"{name}-first")
    Arrivals(engine, "payments", frame, at).until(before)
    engine.dispose()
    later = at >= np.datetime64(before.replace(tzinfo=None), "us")
    tables = {}
    for nowcast in NOWCAST_MODES.values():
        path = folder / f"{name}-{nowcast}.db"
        shutil.copy(folder / f"{name}-first.db", path)
        copy = sa.create_engine(f"sqlite:///{path}")
        arrivals = Arrivals(copy, "payments", frame[later], at[later])
        tables[nowcast] = (f"sqlite:///{path}", copy, arrivals)
    return tables


def nowcasting(folder: Path, seeds: int) -> None:
    drop_delays(folder, seeds)
    healthy_hours(folder, seeds)


def drop_delays(folder: Path, seeds: int) -> None:
    print("\nnowcast: 30% of rows written 5-10 min late (trickle); a volume drop to 20%")
    print(f"{'volume judged':<22} {'caught':>7} {'median delay':>13}")
    delays: dict[str, list[float]] = {mode: [] for mode in [*NOWCAST_MODES, "backtest (final)"]}
    for seed in range(seeds):
        # At a different time of the day per seed, a daemon started 70 minutes before.
        start = DAY + timedelta(hours=11, minutes=37 * seed)
        drop = Incident("stripe", start, timedelta(hours=1), volume_factor=0.2)
        begin, end = start - timedelta(minutes=10), start + timedelta(minutes=40)
        frame = generate(DAY - timedelta(days=8), end, [TRICKLING], [drop], seed=seed)
        started = timedelta(minutes=60)
        tables = _copies(folder, f"drop-{seed}", frame, _trickled(frame, seed), begin - started)
        for mode, nowcast in NOWCAST_MODES.items():
            url, engine, arrivals = tables[nowcast]
            config = _config(url, "60m")
            live = _live(config, arrivals, begin, end, started, nowcast=nowcast)
            fired = [t for t in _firing(live, "volume_drop") if t >= start]
            if fired:
                delays[mode].append((fired[0] - start).total_seconds() / 60)
            if nowcast:
                arrivals.until(end + timedelta(hours=1))
                source = SqlSource(connect(url), config.source)
                replayed = list(replay(config, source, begin, end))
                source.engine.dispose()
                final = [t for t in _firing(replayed, "volume_drop") if t >= start]
                if final:
                    delays["backtest (final)"].append((final[0] - start).total_seconds() / 60)
            engine.dispose()
    for mode, found in delays.items():
        delay = f"{statistics.median(found):.0f} min" if found else "-"
        print(f"{mode:<22} {f'{len(found)}/{seeds}':>7} {delay:>13}", flush=True)


def healthy_hours(folder: Path, seeds: int) -> None:
    print(f"\nhealthy: {HEALTHY_HOURS} h per seed from a daemon's start; trickle as above, batch")
    print("(rows copied every 10 min); volume_drop and no_data firing")
    print(f"{'volume judged':<22} {'trickle':>8} {'batch':>6} {'per gateway-month':>18}")
    hours = HEALTHY_HOURS * seeds
    false_alerts = {mode: {"trickle": 0, "batch": 0} for mode in NOWCAST_MODES}
    for seed in range(seeds):
        begin = DAY + timedelta(hours=6 + 3 * seed)
        end = begin + timedelta(hours=HEALTHY_HOURS)
        for table, profile, insert_times in (
            ("trickle", TRICKLING, _trickled),
            ("batch", BATCHED, _batched),
        ):
            frame = generate(DAY - timedelta(days=8), end, [profile], seed=200 + seed)
            at = insert_times(frame, seed)
            tables = _copies(folder, f"{table}-{seed}", frame, at, begin)
            for mode, nowcast in NOWCAST_MODES.items():
                url, engine, arrivals = tables[nowcast]
                config = _config(url, "60m")
                live = _live(config, arrivals, begin, end, timedelta(0), nowcast=nowcast)
                volume = [n for n in live if n.rule in ("volume_drop", "no_data")]
                false_alerts[mode][table] += len([n for n in volume if n.event == "firing"])
                engine.dispose()
    for mode, found in false_alerts.items():
        month = ", ".join(f"{found[t] * MONTH_HOURS / hours:.0f}" for t in ("trickle", "batch"))
        print(f"{mode:<22} {found['trickle']:>8} {found['batch']:>6} {month:>18}")
    print(f"({hours} h of each table per mode)")


PARTS: dict[str, Callable[[Path, int], None]] = {
    "late": late_failures,
    "batches": batches,
    "settle": slow_settlement,
    "first-start": first_start,
    "series": series_settlement,
    "nowcast": nowcasting,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="runs per table (default 5)")
    parser.add_argument(
        "--part", choices=sorted(PARTS), action="append", help="run only these (default all)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.part or PARTS:
            PARTS[name](Path(folder), args.seeds)


if __name__ == "__main__":
    main()
