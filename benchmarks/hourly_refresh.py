"""What the hourly tick and a restart cost, with the volume rules' weeks kept incrementally.

Writes four weeks and a few hours of payments for ``--gateways`` gateways (one payment per
gateway every ``--every`` minutes, 1% of them failed) into a database, then measures in
one run, side by side:

- the hourly tick (the first of an hour: it brings the weeks of quarter hours up to date)
  against a steady tick of the same engine, medians over the hours; and the same hourly
  tick of an engine made to read the four weeks whole every hour;
- a restart (a daemon started on the state store a first start left, an hour later: it
  reads the saved weeks back and then only the hours since) against the first start (an
  empty state store: it reads the weeks whole), medians of ``--repeat``;
- saving and reading back 4 weeks of quarter hours of ``--store-gateways`` busy gateways
  (made up in memory) in the state store.

    .venv/bin/python benchmarks/hourly_refresh.py [--db URL] [--gateways 100 1000]
        [--every 30] [--repeat 3] [--store-gateways 10000]

``--db`` names a PostgreSQL server's database to create a database next to (dropped at the
end); without it, temporary SQLite files.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import requests
import sqlalchemy as sa

from detector.config import Config, parse_config
from detector.db import connect
from detector.engine import Engine
from detector.notify import build_receivers
from detector.rules.quarter_hours import HISTORY_SLOTS, QuarterHourTable
from detector.service.daemon import Daemon
from detector.simulate import create_schema, write
from detector.source import SqlSource
from detector.stats.seasonal import SLOT_MINUTES
from detector.store import StateStore
from detector.store_history import HistoryUpdate
from detector.timeutil import epoch_minute

__all__ = ["main"]

END = datetime(2026, 11, 30, 12, tzinfo=UTC)
HOURS = 4  # hours of ticks measured after the first start
STEADY_PER_HOUR = 4
DAYS = 28


def _payments(gateways: int, every: int) -> pd.DataFrame:
    """One payment per gateway every ``every`` minutes over the weeks before ``END``, the
    gateways' times staggered, 1% failed."""
    start = END - timedelta(days=DAYS, hours=2)
    steps = int((END - start) / timedelta(minutes=every))
    offsets = np.arange(steps)[None, :] * every * 60 + np.arange(gateways)[:, None] % (every * 60)
    seconds = offsets.ravel()
    names = np.repeat([f"gw{g:05d}" for g in range(gateways)], steps)
    failed = np.random.default_rng(1).random(seconds.size) < 0.01
    return pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(seconds.size)],
            "created_at": pd.Timestamp(start.replace(tzinfo=None))
            + pd.to_timedelta(seconds, unit="s"),
            "gateway": names,
            "status": np.where(failed, "failed", "succeeded"),
            "error_code": pd.Series(np.where(failed, "timeout", "")).replace("", None),
            "amount": 10.0,
            "currency": "EUR",
            "method": "card",
            "country": "DE",
            "latency_ms": np.nan,  # latency is not watched here
        }
    )


@contextmanager
def _database(server: str | None, folder: Path, name: str) -> Iterator[str]:
    """A fresh database: a SQLite file, or one created on the PostgreSQL server."""
    if server is None:
        yield f"sqlite:///{folder / f'{name}.db'}"
        return
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    database = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {database}"))
        yield sa.make_url(server).set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()


def _tick(engine: Engine, at: datetime) -> float:
    began = time.perf_counter()
    engine.tick(at)
    return time.perf_counter() - began


def _start(config: Config, source: SqlSource, store: StateStore, at: datetime) -> float:
    """Seconds to start a daemon on ``store`` and run its first tick at ``at``."""
    began = time.perf_counter()
    receivers = build_receivers(config, requests.Session(), io.StringIO())
    Daemon(config, source, store, receivers, clock=lambda: at).tick()
    return time.perf_counter() - began


def _ticks(url: str) -> tuple[float, float, float]:
    """Medians: steady tick, hourly tick kept incrementally, hourly tick reading the weeks."""
    config = parse_config({"source": {"url": url}}, env={})
    kept = Engine(config, SqlSource(connect(url), config.source))
    whole = Engine(config, SqlSource(connect(url), config.source))
    now = END - timedelta(hours=HOURS, seconds=-30)
    kept.tick(now)
    whole.tick(now)
    steady, hourly, reread = [], [], []
    for _ in range(HOURS):
        for minute in range(1, STEADY_PER_HOUR + 1):
            steady.append(_tick(kept, now + timedelta(minutes=minute)))
        now += timedelta(hours=1)
        whole.quarter_hours = None  # the weeks read whole, as every hour of a full re-read
        hourly.append(_tick(kept, now))
        reread.append(_tick(whole, now))
    return statistics.median(steady), statistics.median(hourly), statistics.median(reread)


def _starts(url: str, server: str | None, folder: Path, repeat: int) -> tuple[float, float]:
    """Medians: first start (empty state store), restart an hour later (the saved weeks)."""
    config = parse_config({"source": {"url": url}}, env={})
    firsts, restarts = [], []
    for run in range(repeat):
        with _database(server, folder, f"state{run}") as state:
            store = StateStore.open(state)
            source = SqlSource(connect(url), config.source)

            firsts.append(_start(config, source, store, END - timedelta(hours=1, seconds=-30)))
            restarts.append(_start(config, source, store, END + timedelta(seconds=30)))
            store.engine.dispose()
            source.engine.dispose()
    return statistics.median(firsts), statistics.median(restarts)


def _store_round_trip(gateways: int, server: str | None, folder: Path) -> tuple[float, float, int]:
    """This process's CPU seconds to save 4 weeks of quarter hours of ``gateways`` busy
    gateways in a state store and to read them back, and the bytes they take."""
    rng = np.random.default_rng(2)
    end = epoch_minute(END) // SLOT_MINUTES
    names = tuple(f"gw{g:05d}" for g in range(gateways))
    payments = rng.poisson(rng.uniform(5, 300, (gateways, 1)), (gateways, HISTORY_SLOTS))
    failures = rng.binomial(payments, 0.01)
    declines = np.zeros_like(payments)
    cells = np.stack([payments, payments, failures, declines, np.ones_like(payments)]).astype(
        np.int32
    )
    table = QuarterHourTable(end, names, cells)
    with _database(server, folder, "roundtrip") as state:
        store = StateStore.open(state)
        began = time.process_time()
        update = HistoryUpdate("bench", table, table.hours().start)
        store.save_tick(None, {}, [], END, history=[update])
        saved = time.process_time() - began
        began = time.process_time()
        store.load_history("bench")
        loaded = time.process_time() - began
        with store.engine.connect() as connection:
            size = connection.execute(
                sa.text("SELECT SUM(LENGTH(data)) FROM detector_quarter_hours")
            ).scalar()
        store.engine.dispose()
    return saved, loaded, int(size or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a PostgreSQL database URL (default: SQLite files)")
    parser.add_argument("--gateways", type=int, nargs="*", default=[100, 1000])
    parser.add_argument(
        "--every", type=int, default=30, help="minutes between a gateway's payments"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--store-gateways",
        type=int,
        default=10_000,
        help="gateways of the state store round trip (0: skip it)",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="detector-bench-"))
    server = args.db
    for gateways in args.gateways:
        with _database(server, folder, f"payments{gateways}") as url:
            frame = _payments(gateways, args.every)
            writer = connect(url, read_only=False)
            create_schema(writer)
            written = write(writer, frame)
            writer.dispose()
            kind = url.split(":")[0]
            print(f"\n{gateways:,} gateways: {written:,} payments over {DAYS} days ({kind})")
            steady, hourly, reread = _ticks(url)
            print(f"  steady tick                    {steady * 1000:9.1f} ms")
            print(
                f"  hourly tick, kept              {hourly * 1000:9.1f} ms  x{hourly / steady:.2f}"
            )
            print(
                f"  hourly tick, weeks read whole  {reread * 1000:9.1f} ms  x{reread / steady:.2f}"
            )
            first, restart = _starts(url, server, folder, args.repeat)
            print(f"  first start (empty store)      {first:9.2f} s")
            print(
                f"  restart (saved weeks)          {restart:9.2f} s  ratio {restart / first:6.2f}"
            )

    if args.store_gateways:
        saved, loaded, size = _store_round_trip(args.store_gateways, server, folder)
        print(f"\nstate store, 4 weeks of {args.store_gateways:,} gateways' quarter hours:")
        print(f"  {size / 1e6:.1f} MB; saved in {saved:.2f} s, read back in {loaded:.2f} s of CPU")


if __name__ == "__main__":
    main()
