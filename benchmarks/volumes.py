"""The volume rules on a business volume (``volumes:``): the NYC taxi trace as a table of rides.

The trace (benchmarks/nyc_taxi.py: NYC taxi passengers per 30 minutes, Numenta Anomaly
Benchmark, five labelled anomaly windows) becomes one row per ride in a SQLite table, with a
tenth as many cancelled rides that ``where: {status: [paid]}`` must leave out. The volume is
read the way the daemon reads it (:func:`detector.volume_source.open_volumes`: one
``GROUP BY`` per minute bucket in the database) and replayed with the settings the daemon
judges a volume with (:func:`detector.volume_source.volume_config`, default alerts.yaml; the
failure-rate rules run too in a replay, and find nothing in rows without failures). Side by
side, in the same run, the same counts replayed as one gateway's payments
(``benchmarks/detection.py``'s taxi part): a volume is a gateway with only totals, judged
with the same settings and budget share, so the volume alerts should be the same.

    .venv/bin/python benchmarks/volumes.py                 # the whole trace, 5-15 minutes
    .venv/bin/python benchmarks/volumes.py --from 2014-10-01
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.nyc_taxi import TAXI, score_taxi, taxi_counts
from detector.backtest import replay
from detector.config import parse_config
from detector.model import Counts
from detector.source import FrameSource
from detector.volume_source import open_volumes, volume_config


def write_rides(path: Path, counts: Counts) -> str:
    """One row per ride of ``counts`` (its payments per minute) plus a cancelled ride per
    ten, spread over each minute, in a new SQLite database; its URL."""
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE rides (id INTEGER PRIMARY KEY, created_at DATETIME NOT NULL, "
            "status VARCHAR(10) NOT NULL)"
        )
        connection.exec_driver_sql("CREATE TABLE per_minute (minute INTEGER, n INTEGER)")
        connection.execute(
            sa.text("INSERT INTO per_minute VALUES (:minute, :n)"),
            [
                {"minute": int(m), "n": int(n)}
                for m, n in zip(counts.minute, counts.volume, strict=True)
            ],
        )
        # Rows made by the database: a Python loop over millions of rides would dominate.
        # Timestamps are written as SQLAlchemy writes them, so bound times compare as text.
        connection.exec_driver_sql(
            "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq "
            "WHERE i < (SELECT MAX(n + n / 10) FROM per_minute)) "
            "INSERT INTO rides (created_at, status) "
            "SELECT datetime(minute * 60 + i * 59 / (n + n / 10), 'unixepoch') || '.000000', "
            "CASE WHEN i % 11 = 10 THEN 'cancelled' ELSE 'paid' END "
            "FROM per_minute JOIN seq ON seq.i < n + n / 10"
        )
        connection.exec_driver_sql("CREATE INDEX rides_created_at ON rides (created_at)")
        connection.exec_driver_sql("DROP TABLE per_minute")
    engine.dispose()
    return url


def run(taxi_from: str | None, seed: int, per_minute: float) -> dict[str, Any] | None:
    loaded = taxi_counts(TAXI, per_minute, seed, taxi_from)
    if loaded is None:
        return None
    counts, start, end, windows = loaded
    default = parse_config({}, env={})
    began = time.perf_counter()
    gateway = score_taxi(replay(default, FrameSource(counts), start, end), start, end, windows)
    gateway["seconds"] = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        url = write_rides(Path(folder) / "rides.db", counts)
        written = time.perf_counter() - began
        config = parse_config(
            {
                "source": {"url": url},
                "volumes": {"rides": {"table": "rides", "where": {"status": ["paid"]}}},
            },
            env={},
        )
        volumes = open_volumes(config, strict=True)
        assert volumes is not None
        began = time.perf_counter()
        try:
            paid = int(volumes.read(start, end).volume.sum())
            events = replay(volume_config(config), volumes, start, end)
            volume = score_taxi(events, start, end, windows)
        finally:
            volumes.dispose()
        volume["seconds"] = time.perf_counter() - began
    rows = int(counts.volume.sum())
    return {
        "gateway": gateway,
        "volume": volume,
        "rows": rows,
        "paid_read": paid,
        "write_seconds": written,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="taxi_from", help="start of the trace (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-minute", type=float, default=20.0)
    args = parser.parse_args()
    result = run(args.taxi_from, args.seed, args.per_minute)
    out = sys.stdout
    if result is None:
        out.write(f"NYC taxi trace: skipped, {TAXI} not found (it lives outside the repo)\n")
        return
    gateway, volume = result["gateway"], result["volume"]
    out.write(
        f"NYC TAXI trace (NAB) as a volumes: table, {args.per_minute:g} rides/min "
        f"({result['rows']:,} paid rides and a tenth as many cancelled, written in "
        f"{result['write_seconds']:.0f} s), {volume['from'][:10]} to {volume['to'][:10]}, "
        f"seed {args.seed}; alerts after the first week\n"
        f"  paid rides read back by the volume's GROUP BY: {result['paid_read']:,}\n"
    )
    out.write(f"{'':44}{'as a volume':>14}{'as a gateway':>14}\n")
    for as_volume, as_gateway in zip(volume["windows"], gateway["windows"], strict=True):
        span = f"labelled window {as_volume['from'][:16]} .. {as_volume['to'][5:16]}"
        out.write(f"  {span:42}{as_volume['volume_alerts']:>14}{as_gateway['volume_alerts']:>14}\n")
    detected = [sum(w["volume_alerts"] > 0 for w in r["windows"]) for r in (volume, gateway)]
    out.write(
        f"  {'windows with an alert':42}{detected[0]:>11} / {len(volume['windows'])}"
        f"{detected[1]:>11} / {len(gateway['windows'])}\n"
    )
    out.write(
        f"  {'alerts outside (' + str(volume['outside_days']) + ' days)':42}"
        f"{volume['volume_alerts_outside']:>14}{gateway['volume_alerts_outside']:>14}\n"
        f"  {'  per month':42}{volume['volume_alerts_outside_per_month']:>14.2f}"
        f"{gateway['volume_alerts_outside_per_month']:>14.2f}\n"
        f"  {'replay seconds (the volume: SQL read too)':42}{volume['seconds']:>14.0f}"
        f"{gateway['seconds']:>14.0f}\n"
    )


if __name__ == "__main__":
    main()
