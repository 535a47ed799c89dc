"""How much memory a backtest needs as its range grows: 7 days against 30 by default.

Writes the longest range of simulated payments (the simulator's default gateways) into a
database once, then replays each range in a fresh process and prints the peak resident
memory the replay added (the process's high-water mark less its size before the replay),
its time and the alert transitions, side by side. A backtest that streams its range a day
at a time needs about the same memory for 30 days as for 7.

Each range is replayed twice, alternately: without business volumes, and with one
(``volumes:``) counting the succeeded payments of the same table per country, read by the
volume SQL; the last column is the cost of the replay with the volume over the one without.
With ``--repeat N`` each figure is the median of N runs, the ratio the median of theirs.

    .venv/bin/python benchmarks/backtest_memory.py [--db URL] [--days 7 30] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
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
from detector.volume_source import open_volumes

__all__ = ["main"]

START = datetime(2026, 10, 5, tzinfo=UTC)


def _memory_kb(field: str) -> int:
    """A memory figure of this process from /proc (VmRSS: resident now, VmHWM: its peak).

    Not ``getrusage``: its peak survives ``exec``, so a child would inherit its parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


# The business volume of the runs with one: the succeeded payments per country.
VOLUMES = {"orders": {"table": "payments", "where": {"status": ["succeeded"]}, "by": ["country"]}}


def _measure(url: str, days: float, volumes: bool) -> None:
    """Replay ``days`` in this process (with :data:`VOLUMES` if ``volumes``); print its
    figures as one JSON line."""
    config = parse_config(
        {"source": {"url": url}, **({"volumes": VOLUMES} if volumes else {})}, env={}
    )
    source = SqlSource(connect(url), config.source)
    volume_source = open_volumes(config, strict=True)
    before = _memory_kb("VmRSS")
    began = time.perf_counter()
    end = START + timedelta(days=days)
    events = list(replay(config, source, START, end, volume_source))
    seconds = time.perf_counter() - began
    peak = _memory_kb("VmHWM")
    source.engine.dispose()
    if volume_source is not None:
        volume_source.dispose()
    print(
        json.dumps(
            {"days": days, "added_mb": (peak - before) / 1024, "s": seconds, "n": len(events)}
        )
    )


def _replayed(url: str, days: float, volumes: bool) -> dict[str, float]:
    """The figures of replaying ``days`` in a fresh process."""
    with_volumes = ["--volumes"] if volumes else []
    out = subprocess.run(
        [sys.executable, __file__, "--db", url, "--measure", str(days), *with_volumes],
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
    parser.add_argument("--repeat", type=int, default=1, help="runs per range (medians)")
    parser.add_argument("--measure", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--volumes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        _measure(args.db, args.measure, args.volumes)
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
    print(
        f"\n{'':>8} {'without volumes':^37} {'with a volume':^37}\n"
        f"{'range':>8}"
        + f" {'memory added':>13} {'replay':>9} {'transitions':>12}" * 2
        + f" {'cost with/without':>18}"
    )
    for days in args.days:
        runs = [
            (_replayed(url, days, volumes=False), _replayed(url, days, volumes=True))
            for _ in range(args.repeat)
        ]
        without, with_volume = (
            {key: statistics.median(run[i][key] for run in runs) for key in runs[0][i]}
            for i in (0, 1)
        )
        ratio = statistics.median(run[1]["s"] / run[0]["s"] for run in runs)
        print(
            f"{days:>6g} d"
            + "".join(
                f" {f['added_mb']:>10.0f} MB {f['s']:>7.1f} s {f['n']:>12}"
                for f in (without, with_volume)
            )
            + f" {ratio:>18.2f}"
        )


if __name__ == "__main__":
    main()
