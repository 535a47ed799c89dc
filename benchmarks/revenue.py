"""What the revenue at risk costs a firing alert, next to the evidence query it already runs.

Writes simulated payments (amounts in several currencies) into a database, then times side
by side, alternating, in one run:

- the evidence a firing ``sla_breach`` already reads (top error codes, sample payment ids)
  for the hour of an incident;
- the amounts query that values it (``GROUP BY currency`` over the same hour);
- the amounts query that values a ``volume_drop`` (the 24 hours before it);
- a live tick's incremental read (the last 6 minutes of every gateway), for scale.

The amounts are read once per alert that starts firing, never on a tick. Ratios of medians
of ``--repeat`` alternating runs are the verdict.

    .venv/bin/python benchmarks/revenue.py [--db URL] [--days 3] [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import seconds
from detector.config import parse_config
from detector.db import connect
from detector.simulate import Incident, simulate
from detector.source import SqlSource

__all__ = ["main"]

START = datetime(2026, 11, 2, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL to fill (default: a temporary SQLite file)")
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="detector-bench-"))
    url = args.db or f"sqlite:///{folder / 'payments.db'}"
    began = START + timedelta(days=args.days - 1, hours=14)
    incident = Incident("adyen", began, timedelta(hours=1), failure_rate=0.1)
    rows = simulate(url, START, args.days, incidents=[incident], seed=1)
    print(f"wrote {rows:,} payments over {args.days:g} days ({url})")

    columns = {"amount": "amount", "currency": "currency"}
    config = parse_config({"source": {"url": url, "columns": columns}}, env={})
    source = SqlSource(connect(url), config.source)
    end = began + timedelta(hours=1)
    actions: dict[str, Callable[[], object]] = {
        "evidence of the hour": lambda: source.evidence("adyen", began, end),
        "amounts of the hour": lambda: source.amounts("adyen", began, end),
        "amounts of the day before": lambda: source.amounts(
            "adyen", began - timedelta(days=1), began
        ),
        "tick read (6 min)": lambda: source.read(end - timedelta(minutes=6), end),
    }
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(args.repeat):
        for name, action in actions.items():
            times[name].append(seconds(action))
    source.engine.dispose()

    base = times["evidence of the hour"]
    print(f"\nmedian of {args.repeat} alternating runs; ratio to the evidence query")
    for name, runs in times.items():
        ratio = statistics.median(s / b for s, b in zip(runs, base, strict=True))
        print(f"  {name:<28} {statistics.median(runs) * 1000:8.2f} ms   {ratio:6.2f}")


if __name__ == "__main__":
    main()
