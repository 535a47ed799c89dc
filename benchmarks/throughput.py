"""How much a tick and a backtest cost next to the SQL aggregation they need.

Writes two weeks of simulated payments (about 1.3 million rows for the default gateways)
into a database, then measures side by side, in one run:

- backtest: replaying the two weeks (an aggregation query a day + 20,160 simulated ticks)
  against the SQL aggregation it needs alone: the minutes of the range and the rules'
  look-back before it in one query, and the four weeks before per quarter hour;
- live tick: one daemon tick (incremental read of the last minutes + rules + lifecycle)
  against the bare incremental read it issues.

Ratios, not seconds, are the verdict: each repeat times the two side by side (alternating,
so both see the same load on a shared machine), and the medians of ``--repeat`` runs are
printed. The backtest ratio is also given in this process's CPU time, which other jobs on a
busy machine disturb less; it counts the query's work only where the database runs in
process (SQLite, the default).

    .venv/bin/python benchmarks/throughput.py [--db URL] [--days 14] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import seconds, wall_and_cpu
from detector.backtest import Reads, aggregate, replay
from detector.config import Config, parse_config
from detector.db import connect
from detector.engine import Engine
from detector.simulate import Incident, simulate
from detector.source import FrameSource, SqlSource
from detector.timeutil import minute_start

__all__ = ["main"]

START = datetime(2026, 11, 2, tzinfo=UTC)


def _median_seconds(action: Callable[[], object], repeat: int) -> float:
    return statistics.median(seconds(action) for _ in range(repeat))


def _side_by_side(
    baseline: Callable[[], object], measured: Callable[[], object], repeat: int
) -> tuple[float, float, float, float]:
    """Median elapsed seconds of each action, and the medians of their ratios in elapsed and
    in CPU time, the two run alternately."""
    runs = [(wall_and_cpu(baseline), wall_and_cpu(measured)) for _ in range(repeat)]
    return (
        statistics.median(b[0] for b, _ in runs),
        statistics.median(m[0] for _, m in runs),
        statistics.median(m[0] / b[0] for b, m in runs),
        statistics.median(m[1] / b[1] for b, m in runs),
    )


class _TickCounts(logging.Handler):
    """Catches the replay's closing count of ticks, and of those left out as quiet."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: tuple[int, ...] = ()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("replayed") and isinstance(record.args, tuple):
            self.counts = tuple(a for a in record.args if isinstance(a, int))[:2]


def _phases(config: Config, source: SqlSource, end: datetime) -> None:
    """One more backtest, timed in its two phases: the aggregation, then the replay of ticks
    served from it, with how many ticks were evaluated and how many left out as quiet."""
    logger = logging.getLogger("detector.backtest")
    catcher, level = _TickCounts(), logger.level
    logger.addHandler(catcher)
    logger.setLevel(logging.INFO)
    try:
        frame: list[FrameSource] = []
        aggregation = seconds(lambda: frame.append(aggregate(config, source, START, end)))
        ticks = seconds(lambda: list(replay(config, frame[0], START, end)))
    finally:
        logger.removeHandler(catcher)
        logger.setLevel(level)
    total, quiet = catcher.counts or (0, 0)
    print(f"  of one backtest: aggregation {aggregation:.3f} s, ticks {ticks:.3f} s")
    print(f"    ({total - quiet:,} ticks evaluated, {quiet:,} known quiet and left out)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL to fill (default: a temporary SQLite file)")
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="detector-bench-"))
    url = args.db or f"sqlite:///{folder / 'payments.db'}"
    end = START + timedelta(days=args.days)
    began = time.perf_counter()
    incident = Incident(
        "adyen", START + timedelta(days=3, hours=14), timedelta(hours=1), failure_rate=0.1
    )
    rows = simulate(url, START, args.days, incidents=[incident], seed=1)
    took = time.perf_counter() - began
    print(f"wrote {rows:,} payments over {args.days:g} days in {took:.1f}s ({url})")

    config: Config = parse_config({"source": {"url": url}}, env={})
    source = SqlSource(connect(url), config.source)

    # Backtest vs the aggregation it needs.
    reads = Reads.of(config, START)

    def needed_sql() -> None:
        history, first = minute_start(reads.quarters_from), minute_start(reads.minutes_from)
        source.quarter_hourly(history, first)
        source.read(first, end)

    events: list[object] = []
    sql, backtest, ratio, cpu_ratio = _side_by_side(
        needed_sql,
        lambda: events.extend(replay(config, source, START, end)),
        args.repeat,
    )
    ticks = int((end - START) / config.schedule.interval) + 1
    transitions = len(events) // args.repeat
    print(f"\nbacktest of {args.days:g} days ({ticks:,} ticks, {transitions} transitions)")
    print(f"  SQL aggregation it needs   {sql:8.3f} s")
    print(f"  whole backtest             {backtest:8.3f} s")
    print(f"  ratio backtest / SQL       {ratio:8.2f}   (in CPU time {cpu_ratio:.2f})")
    _phases(config, source, end)

    # A live tick vs the bare incremental read it issues.
    engine = Engine(config, source)
    now = START + timedelta(days=args.days / 2)
    engine.tick(now)  # warm-up read fills the window
    tick_times, read_times = [], []
    for _ in range(60):
        now += config.schedule.interval
        start, _ = engine._read_range(now)
        began = time.perf_counter()
        source.read(start, now)
        read_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        engine.tick(now)
        tick_times.append(time.perf_counter() - began)
    tick, read = statistics.median(tick_times), statistics.median(read_times)
    tick_ratio = statistics.median(t / r for t, r in zip(tick_times, read_times, strict=True))
    print("\nlive tick (median of 60, incremental read of the late-arrival look-back)")
    print(f"  bare SQL read              {read * 1000:8.2f} ms")
    print(f"  whole tick                 {tick * 1000:8.2f} ms")
    print(f"  ratio tick / SQL           {tick_ratio:8.2f}")
    source.engine.dispose()


if __name__ == "__main__":
    main()
