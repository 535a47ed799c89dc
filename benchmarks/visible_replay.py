"""What ``detector backtest --as-visible`` costs, beside the daemon's ticks and the backtest
of the final table, on the same SQLite payments table.

The table holds ``--days`` of the five default simulated gateways (about 70 payments a
minute) with an insert time (each failed row written 0-2 minutes late) and an update time
(every row settled 0-2 minutes after it was written). Over the last ``--hours``, each run
times, side by side:

- the backtest of the final table (``replay``: one aggregation, the rules an hour at once);
- the daemon's ticks: its engine ticked every minute on the same table (a read per tick);
- the as-visible backtest (``replay_as_visible``): the same ticks, each reading the table
  as it stood then.

Medians of ``--repeat`` runs, each timing the three in turn (the ratios are the medians of
each run's own); the per-tick figures exclude nothing (the first tick reads
the warm-up and the weeks of volume history, as a starting daemon does). Each is run with
the default ``alerts.yaml`` and with ``source.max_late_arrival: 5m``: the as-visible replay
sees the late rows and widens its re-read as the live daemon would, while the daemon's ticks
on the final table see none, so the second run compares reads of the same width.

    .venv/bin/python benchmarks/visible_replay.py      # about 2 minutes on 2 shared cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from benchmarks.timing import seconds
from detector.backtest import replay, replay_as_visible
from detector.config import Config, parse_config
from detector.db import connect
from detector.engine import Engine
from detector.simulate import simulate
from detector.source import SqlSource

__all__ = ["main"]

END = datetime(2026, 11, 19, tzinfo=UTC)  # a Thursday midnight
# The daemon's re-read sized from the lateness it sees (the late failed rows widen it, in the
# as-visible replay as they would live), and fixed at source.late_arrival.
MODES = {"sized from observed lateness (default)": "60m", "late_arrival only (5 min)": "5m"}


def _table(url: str, days: float) -> int:
    """The simulated payments, with insert and update times made in SQL (seeded by rowid)."""
    rows = simulate(url, END - timedelta(days=days), days, seed=5)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE payments ADD inserted_at DATETIME"))
        connection.execute(sa.text("ALTER TABLE payments ADD updated_at DATETIME"))
        connection.execute(
            sa.text(
                "UPDATE payments SET inserted_at = strftime('%Y-%m-%d %H:%M:%f', created_at, "
                "'+' || (CASE WHEN status = 'failed' THEN (rowid * 7919) % 120 ELSE 0 END) "
                "|| ' seconds')"
            )
        )
        connection.execute(
            sa.text(
                "UPDATE payments SET updated_at = strftime('%Y-%m-%d %H:%M:%f', inserted_at, "
                "'+' || ((rowid * 104729) % 120) || ' seconds')"
            )
        )
    engine.dispose()
    return rows


def _config(url: str, max_late_arrival: str) -> Config:
    columns = {"inserted_at": "inserted_at", "updated_at": "updated_at"}
    source = {"url": url, "columns": columns, "max_late_arrival": max_late_arrival}
    return parse_config({"source": source}, env={})


def _final(config: Config, start: datetime) -> int:
    source = SqlSource(connect(config.source.url), config.source)
    try:
        return len(list(replay(config, source, start, END)))
    finally:
        source.engine.dispose()


def _daemon(config: Config, start: datetime) -> int:
    source = SqlSource(connect(config.source.url), config.source)
    engine, now, transitions = Engine(config, source), start, 0
    try:
        while now <= END:
            transitions += len(engine.tick(now).transitions)
            now += config.schedule.interval
    finally:
        source.engine.dispose()
    return transitions


def _visible(config: Config, start: datetime) -> int:
    source = SqlSource(connect(config.source.url), config.source, as_visible=True)
    try:
        return len(list(replay_as_visible(config, source, start, END)))
    finally:
        source.engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=2.0, help="days in the table (default 2)")
    parser.add_argument("--hours", type=float, default=6.0, help="hours replayed (default 6)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each (default 5)")
    args = parser.parse_args(argv)
    start = END - timedelta(hours=args.hours)
    ticks = int(args.hours * 60) + 1
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'payments.db'}"
        rows = _table(url, args.days)
        print(f"{rows} payments over {args.days:g} days; {ticks} ticks over {args.hours:g} h")
        for mode, cap in MODES.items():
            _compare(_config(url, cap), start, ticks, args.repeat, mode)


def _compare(config: Config, start: datetime, ticks: int, repeat: int, mode: str) -> None:
    runs = {"backtest of the final table": _final, "daemon's ticks": _daemon}
    runs["backtest --as-visible"] = _visible
    # Each repeat times the three in turn, so that they share the machine's load; the
    # ratios are the medians of each repeat's own.
    timed = [
        {name: seconds(run, config, start) for name, run in runs.items()} for _ in range(repeat)
    ]
    print(f"\nre-read {mode}")
    print(f"{'replay':<28} {'seconds':>8} {'ms per tick':>12} {'x daemon':>9}")
    for name in runs:
        total = statistics.median(t[name] for t in timed)
        ratio = statistics.median(t[name] / t["daemon's ticks"] for t in timed)
        print(f"{name:<28} {total:>8.2f} {1000 * total / ticks:>12.1f} {ratio:>9.2f}")


if __name__ == "__main__":
    main()
