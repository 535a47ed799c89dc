"""How much memory a backtest needs as its range grows: 7 days against 30 by default.

Writes the longest range of simulated payments (the simulator's default gateways) into a
database once, then replays each range in a fresh process and prints the peak resident
memory the replay added (the process's high-water mark less its size before the replay),
its time and the alert transitions, side by side. A backtest that streams its range a day
at a time needs about the same memory for 30 days as for 7.

    .venv/bin/python benchmarks/backtest_memory.py [--db URL] [--days 7 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector.backtest import replay
from detector.config import parse_config
from detector.db import connect
from detector.simulate import Incident, simulate
from detector.source import SqlSource

__all__ = ["main"]

START = datetime(2026, 10, 5, tzinfo=UTC)


def _memory_kb(field: str) -> int:
    """A memory figure of this process from /proc (VmRSS: resident now, VmHWM: its peak).

    Not ``getrusage``: its peak survives ``exec``, so a child would inherit its parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure(url: str, days: float) -> None:
    """Replay ``days`` in this process; print its figures as one JSON line."""
    config = parse_config({"source": {"url": url}}, env={})
    source = SqlSource(connect(url), config.source)
    before = _memory_kb("VmRSS")
    began = time.perf_counter()
    events = list(replay(config, source, START, START + timedelta(days=days)))
    seconds = time.perf_counter() - began
    peak = _memory_kb("VmHWM")
    source.engine.dispose()
    print(
        json.dumps(
            {"days": days, "added_mb": (peak - before) / 1024, "s": seconds, "n": len(events)}
        )
    )


def _replayed(url: str, days: float) -> dict[str, float]:
    """The figures of replaying ``days`` in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--db", url, "--measure", str(days)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL to fill (default: a temporary SQLite file)")
    parser.add_argument("--days", type=float, nargs="+", default=[7.0, 30.0])
    parser.add_argument("--measure", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        _measure(args.db, args.measure)
        return
    folder = Path(tempfile.mkdtemp(prefix="detector-bench-"))
    url = args.db or f"sqlite:///{folder / 'payments.db'}"

    longest = max(args.days)
    incident = Incident(
        "adyen", START + timedelta(days=3, hours=14), timedelta(hours=1), failure_rate=0.1
    )
    began = time.perf_counter()
    rows = simulate(url, START, longest, incidents=[incident], seed=1)
    print(f"wrote {rows:,} payments over {longest:g} days in {time.perf_counter() - began:.0f}s")
    print(f"\n{'range':>8} {'memory added':>13} {'replay':>9} {'transitions':>12}")
    for days in args.days:
        figures = _replayed(url, days)
        print(
            f"{days:>6g} d {figures['added_mb']:>10.0f} MB {figures['s']:>7.1f} s "
            f"{figures['n']:>12}"
        )


if __name__ == "__main__":
    main()
