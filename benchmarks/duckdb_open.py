"""Whether a DuckDB payments file could be kept open between reads: the steady tick with the
file opened for each read (as the detector does) beside one with a read-only connection
kept open, and whether another process can write the file meanwhile.

Writes ``--days`` of payments for ``--gateways`` gateways into a DuckDB file (as
``benchmarks/scale.py`` does), ticks two engines alternately through the same steady
minutes (each after a first tick), and prints the median steady tick of each and their
ratio. Then, with each engine's connections as they stand after its last tick, a second
process opens the file to insert a row (as a loader would) and the outcome is printed.

    .venv/bin/python benchmarks/duckdb_open.py [--gateways 1000] [--days 2] [--ticks 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scale import FIRST_TICK, _fill
from benchmarks.timing import seconds
from detector.config import parse_config
from detector.db import _duckdb_in_utc, connect
from detector.engine import Engine
from detector.source import SqlSource

__all__ = ["main"]

# A loader's write: open the file read-write, insert a row, commit, close.
_WRITE = """
import sys, duckdb
try:
    connection = duckdb.connect(sys.argv[1])
    connection.execute("INSERT INTO {table} (id, created_at, gateway, status) "
                       "VALUES ('loader', TIMESTAMP '2026-11-20 11:59:00', 'gw00000', 'succeeded')")
    connection.close()
    print("written")
except duckdb.Error as exc:
    print(str(exc).split(":")[0] + ": " + str(exc).split(":")[1].split('"')[0].strip())
"""


def _kept_open(url: str) -> sa.Engine:
    """A read-only engine whose connection stays open in its pool between reads."""
    engine = sa.create_engine(url, connect_args={"read_only": True})
    sa.event.listen(engine, "connect", _duckdb_in_utc)
    return engine


def _loader(path: str, table: str) -> str:
    """What a second process writing the file gets."""
    code = _WRITE.format(table=table)
    done = subprocess.run(
        [sys.executable, "-c", code, path], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--ticks", type=int, default=10)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="detector-duckdb-"))
    name = "payments"
    path = str(folder / f"{name}.duckdb")
    url = f"duckdb:///{path}"
    began = time.perf_counter()
    rows = _fill(url, name, args.gateways, args.days, 1, keep=False)
    print(
        f"wrote {rows:,} payments ({args.gateways:,} gateways, {args.days:g} days, "
        f"{Path(path).stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - began:.0f} s"
    )
    config = parse_config({"source": {"url": url, "table": name}}, env={})
    per_read = SqlSource(connect(url), config.source)
    kept = SqlSource(_kept_open(url), config.source)
    engines = {"opened per read": Engine(config, per_read), "kept open": Engine(config, kept)}
    for engine in engines.values():
        engine.tick(FIRST_TICK)
    ticks: dict[str, list[float]] = {label: [] for label in engines}
    now = FIRST_TICK
    for _ in range(args.ticks):
        now += config.schedule.interval
        for label, engine in engines.items():  # alternately: both see the same load
            ticks[label].append(seconds(engine.tick, now))
    medians = {label: statistics.median(times) for label, times in ticks.items()}

    print(f"\nmedian of {args.ticks} steady ticks, and a second process writing the file after")
    print(f"{'connection':<16} {'steady tick':>12}  another process writing the file")
    kept.engine.dispose()  # the file as the detector leaves it between ticks
    outcomes = {"opened per read": _loader(path, name)}
    engines["kept open"].tick(now + config.schedule.interval)  # its connection stays open
    outcomes["kept open"] = _loader(path, name)
    for label, median in medians.items():
        print(f"{label:<16} {median * 1000:>9.0f} ms  {outcomes[label]}")
    ratio = medians["kept open"] / medians["opened per read"]
    print(f"kept open / opened per read: {ratio:.2f}")
    per_read.engine.dispose()
    kept.engine.dispose()
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
