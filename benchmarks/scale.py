"""What a first start, a restart, a steady and an hourly tick cost at 100, 1,000 or 10,000
gateways, next to the bare SQL each needs, and the memory they take.

Writes one payment per gateway every ``--every`` minutes (default 1) over ``--days`` (default
2: the volume history then holds two of its four weeks) for ``--gateways`` gateways, generated
inside SQLite, PostgreSQL or DuckDB (a file) by one INSERT ... SELECT, then measures on each,
side by side in one run:

- first tick: a fresh engine's first tick, the whole of a first ``detector check`` (the
  warm-up read of ``source.warmup`` per minute, the volume history per quarter hour, the
  rules), against the bare SQL of those two reads: the same statements run by the driver,
  its rows fetched as the driver's tuples and dropped. The same two reads by the source,
  into counts, are timed against it too (reads/SQL);
- steady tick: the ticks of the next minutes (within one hour), against the bare SQL of the
  incremental read each issues;
- hourly tick: the first tick of the next hour (the weeks of quarter hours brought up to
  date), against the bare SQL of its two reads;
- start and restart: a daemon's first start on an empty state store (its first tick, the
  weeks saved), and a daemon started again five minutes later on the store it left (the
  saved weeks read back, then the quarter hours late rows may have changed and the warm-up's
  minutes), against the bare SQL of the restart's reads of the payments and of the store.

Each repeat times the bare SQL and the tick alternately, so both see the same load; the
medians of the ratios are printed. Memory is traced (``tracemalloc``, numpy's arrays
included) in a separate run: the peak during the first tick, a steady tick and the hourly
tick, and what the engine holds after its first tick per gateway; and the peak of the larger
of the first tick's two reads alone. The process's peak resident memory (VmHWM) ends the run.

    .venv/bin/python benchmarks/scale.py [--gateways 100 1000 10000]
        [--dialects sqlite postgresql duckdb] [--days 2] [--every 1] [--repeat 3] [--ticks 10]
        [--starts N] [--keep]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import seconds
from detector import store_tables
from detector.config import Config, parse_config
from detector.db import connect
from detector.engine import Engine
from detector.notify import build_receivers
from detector.rules import VolumeHistory
from detector.rules.quarter_hours import reread_slots
from detector.service.daemon import Daemon
from detector.simulate.schema import payments_table
from detector.source import SqlSource
from detector.stats.seasonal import SLOT_MINUTES, SLOTS_PER_HOUR
from detector.store import StateStore
from detector.timeutil import naive_utc

__all__ = ["main"]

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # the data ends here, a whole hour
FIRST_TICK = END - timedelta(minutes=20)  # steady ticks follow within the same hour
POSTGRES_URL = os.environ.get(
    "DETECTOR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
HOURLY_TICK = END + timedelta(seconds=30)  # the first tick of the next hour
RESTART = FIRST_TICK + timedelta(minutes=5)  # a restart within the hour


def _create(engine: sa.Engine, name: str) -> sa.Table:
    """The payments table, its indexes built after the rows are in (faster)."""
    table = payments_table(name)
    table.drop(engine, checkfirst=True)
    indexes = list(table.indexes)
    table.indexes.clear()
    table.create(engine)
    table.indexes.update(indexes)
    return table


def _numbers(dialect: str, name: str, count: int) -> str:
    """A FROM item of the integers 0 .. count - 1 as column ``i`` (``name`` its alias)."""
    if dialect == "postgresql":
        return f"generate_series(0, {count - 1}) AS {name}(i)"
    if dialect == "duckdb":
        return f"(SELECT range AS i FROM range({count})) AS {name}"  # noqa: S608 - integers
    return f"{name}"  # SQLite: a recursive common table expression of that name


def _fill(url: str, name: str, gateways: int, days: float, every: int, keep: bool) -> int:
    """One payment per gateway every ``every`` minutes over ``days`` before ``END`` (the
    gateways' seconds staggered; 2% failed, 1% pending, by a fixed hash of gateway and
    payment), generated inside the database: no row crosses the driver. With ``keep``, a
    table of that name holding as many rows is taken as written by an earlier run."""
    engine = sa.create_engine(url)
    per_gateway = int(days * 1440) // every
    if keep and sa.inspect(engine).has_table(name):
        with engine.connect() as connection:
            held = connection.execute(sa.select(sa.func.count()).select_from(sa.table(name)))
            if held.scalar() == per_gateway * gateways:
                engine.dispose()
                return per_gateway * gateways
    table = _create(engine, name)
    dialect = engine.dialect.name
    first = (END - timedelta(minutes=per_gateway * every)).strftime("%Y-%m-%d %H:%M:%S")
    offset = f"(m.i * {every * 60} + (g.i * 37) % {every * 60})"
    created_at = {
        "postgresql": f"TIMESTAMP '{first}' + {offset} * INTERVAL '1 second'",
        "duckdb": f"TIMESTAMP '{first}' + to_seconds({offset})",
        "sqlite": f"strftime('%Y-%m-%d %H:%M:%S', '{first}', '+' || {offset} || ' seconds')"
        " || '.000000'",
    }[dialect]
    gateway = (
        "printf('gw%05d', g.i)"
        if dialect == "sqlite"
        else "'gw' || lpad(CAST(g.i AS VARCHAR), 5, '0')"
    )
    recursive = ""  # our own table name and integers below, nothing a user typed
    if dialect == "sqlite":
        recursive = (
            f"WITH RECURSIVE m(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM m WHERE i < "  # noqa: S608
            f"{per_gateway - 1}), g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < "
            f"{gateways - 1}) "
        )
    hash_ = "((g.i * 7919 + m.i * 1009) % 1000)"
    insert = (
        f"INSERT INTO {name} (id, created_at, gateway, status, error_code, amount, currency,"  # noqa: S608
        f" method, country) {recursive}"
        f"SELECT 'p' || CAST(m.i * {gateways} + g.i AS VARCHAR), {created_at}, {gateway},"
        f" CASE WHEN {hash_} < 20 THEN 'failed' WHEN {hash_} < 30 THEN 'pending'"
        f" ELSE 'succeeded' END, CASE WHEN {hash_} < 20 THEN 'timeout' END, 10, 'USD',"
        f" CASE WHEN (m.i + g.i) % 2 = 0 THEN 'card' ELSE 'wallet' END, 'US'"
        f" FROM {_numbers(dialect, 'm', per_gateway)}"
        f" CROSS JOIN {_numbers(dialect, 'g', gateways)}"
    )
    with engine.begin() as connection:
        connection.execute(sa.text(insert))  # text(): its % are escaped for the driver
        for index in table.indexes:
            index.create(connection)
        if dialect == "postgresql":
            connection.exec_driver_sql(f"ANALYZE {name}")
    engine.dispose()
    return per_gateway * gateways


def _bare(source: SqlSource, reads: list[tuple[sa.Select[Any], datetime, datetime]]) -> None:
    """The statements run by the driver; its rows fetched as its tuples and dropped."""
    with source.engine.connect() as connection:
        for query, start, end in reads:
            result = connection.execute(query, {"start": naive_utc(start), "end": naive_utc(end)})
            result.cursor.fetchall()
            result.close()


def _read(source: SqlSource, reads: list[tuple[sa.Select[Any], datetime, datetime]]) -> None:
    """The same reads by the source, into counts."""
    for query, start, end in reads:
        if query is source._quarter_hourly_query:
            source.quarter_hourly(start, end)
        else:
            source.read(start, end)


def _first_reads(engine: Engine, source: SqlSource, now: datetime) -> list[Any]:
    """The two reads of a first tick: the warm-up per minute, the history per quarter hour."""
    start, end = engine._read_range(now)
    hour = (int(now.timestamp()) // 60 - 1) // 60
    history_start = datetime.fromtimestamp((hour - VolumeHistory.hours_needed()) * 3600, UTC)
    history_end = datetime.fromtimestamp(hour * 3600, UTC)
    return [
        (source._counts_queries[()], start, end),
        (source._quarter_hourly_query, history_start, history_end),
    ]


def _hourly_reads(engine: Engine, source: SqlSource, now: datetime) -> list[Any]:
    """The reads of the first tick of an hour, on an engine holding the hour before's weeks:
    the minutes since its last read, and the quarter hours since the weeks end (from as far
    back as late rows may change them)."""
    start, end = engine._read_range(now)
    end_slot = (int(now.timestamp()) // 60 - 1) // 60 * SLOTS_PER_HOUR
    late = int(engine.config.source.max_late_arrival.total_seconds() // 60)
    held = end_slot if engine.quarter_hours is None else engine.quarter_hours.end_slot
    first_slot = min(held, end_slot) - reread_slots(late)
    return [
        (source._counts_queries[()], start, end),
        (
            source._quarter_hourly_query,
            datetime.fromtimestamp(first_slot * SLOT_MINUTES * 60, UTC),
            datetime.fromtimestamp(end_slot * SLOT_MINUTES * 60, UTC),
        ),
    ]


def _bare_store(store: StateStore) -> None:
    """The state store's saved weeks fetched as the driver's tuples and dropped."""
    with store.engine.connect() as connection:
        for table in (store_tables.history_gateways, store_tables.quarter_hours):
            result = connection.execute(sa.select(table))
            result.cursor.fetchall()
            result.close()


@dataclass
class Figures:
    first: float = 0.0
    first_bare: float = 0.0
    first_ratio: float = 0.0
    steady: float = 0.0
    steady_bare: float = 0.0
    steady_ratio: float = 0.0
    hourly: float = 0.0
    hourly_bare: float = 0.0
    hourly_ratio: float = 0.0
    read_ratio: float = 0.0  # the first tick's two reads by the source / their bare SQL
    start: float = 0.0  # a daemon's first start on an empty state store, its first tick
    restart: float = 0.0  # ... started again on the store the first start left
    restart_bare: float = 0.0  # the restart's reads of the payments and of the store
    read_peak: int = 0  # the larger of the first tick's two reads
    first_peak: int = 0
    steady_peak: int = 0
    hourly_peak: int = 0
    held: int = 0


def _progress(text: str) -> None:
    """Each figure as it is taken: a run at 10,000 gateways takes a while."""
    print(f"  {text}", flush=True)


def _measure(config: Config, source: SqlSource, repeat: int, ticks: int, figures: Figures) -> None:
    firsts: list[tuple[float, float]] = []
    read_ratios: list[float] = []
    steadies: list[tuple[float, float]] = []
    hourlies: list[tuple[float, float]] = []
    for _ in range(repeat):
        engine = Engine(config, source)
        reads = _first_reads(engine, source, FIRST_TICK)
        bare = seconds(_bare, source, reads)
        firsts.append((bare, seconds(engine.tick, FIRST_TICK)))
        _progress(f"first tick {firsts[-1][1]:.2f} s, its bare SQL {bare:.2f} s")
        read_ratios.append(seconds(_read, source, reads) / seconds(_bare, source, reads))
        _progress(f"its reads / bare SQL {read_ratios[-1]:.2f}")
        now = FIRST_TICK
        for _ in range(ticks):
            now += config.schedule.interval
            start, end = engine._read_range(now)
            read = [(source._counts_queries[()], start, end)]
            steadies.append((seconds(_bare, source, read), seconds(engine.tick, now)))
        reads = _hourly_reads(engine, source, HOURLY_TICK)
        hourlies.append((seconds(_bare, source, reads), seconds(engine.tick, HOURLY_TICK)))
        _progress(f"steady tick {steadies[-1][1]:.3f} s, hourly tick {hourlies[-1][1]:.2f} s")
    figures.first = statistics.median(t for _, t in firsts)
    figures.first_bare = statistics.median(b for b, _ in firsts)
    figures.first_ratio = statistics.median(t / b for b, t in firsts)
    figures.steady = statistics.median(t for _, t in steadies)
    figures.steady_bare = statistics.median(b for b, _ in steadies)
    figures.steady_ratio = statistics.median(t / b for b, t in steadies)
    figures.hourly = statistics.median(t for _, t in hourlies)
    figures.hourly_bare = statistics.median(b for b, _ in hourlies)
    figures.hourly_ratio = statistics.median(t / b for b, t in hourlies)
    figures.read_ratio = statistics.median(read_ratios)


@contextmanager
def _state_store(url: str, folder: Path, run: int) -> Iterator[StateStore]:
    """A fresh state store: a SQLite file, or a database created on the PostgreSQL server."""
    if not url.startswith("postgresql"):
        store = StateStore.open(f"sqlite:///{folder / f'state-{uuid.uuid4().hex[:8]}'}.db")
        yield store
        store.engine.dispose()
        return
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    database = f"scale_state_{run}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {database}")
    try:
        store = StateStore.open(sa.make_url(url).set(database=database).render_as_string(False))
        yield store
        store.engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.dispose()


def _start(config: Config, source: SqlSource, store: StateStore, at: datetime) -> None:
    """Start a daemon on ``store`` and run its first tick at ``at``."""
    receivers = build_receivers(config, requests.Session(), io.StringIO())
    Daemon(config, source, store, receivers, clock=lambda: at).tick()


def _starts(config: Config, source: SqlSource, folder: Path, repeat: int, figures: Figures) -> None:
    """A daemon's first start on an empty state store against its restart, a few minutes
    later, on the store the first start left (the saved weeks read back, then only the
    quarter hours late rows may have changed and the warm-up's minutes)."""
    starts: list[float] = []
    restarts: list[tuple[float, float]] = []
    for run in range(repeat):
        with _state_store(config.source.url, folder, run) as store:
            starts.append(seconds(_start, config, source, store, FIRST_TICK))
            _progress(f"first start {starts[-1]:.1f} s")
            engine = Engine(config, source)
            engine.quarter_hours = store.load_history(engine.history_key)
            reads = _hourly_reads(engine, source, RESTART)
            bare = seconds(_bare, source, reads) + seconds(_bare_store, store)
            restarts.append((bare, seconds(_start, config, source, store, RESTART)))
            _progress(f"restart {restarts[-1][1]:.1f} s, its bare SQL {bare:.2f} s")
    figures.start = statistics.median(starts)
    figures.restart = statistics.median(t for _, t in restarts)
    figures.restart_bare = statistics.median(b for b, _ in restarts)


def _traced_peak(run: Any, *args: Any) -> tuple[int, int]:
    """Bytes traced above the start: the peak while ``run(*args)`` ran, and held after it."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    run(*args)
    held, peak = tracemalloc.get_traced_memory()
    return peak - before, held - before


def _memory(config: Config, source: SqlSource, figures: Figures) -> None:
    tracemalloc.start()
    try:
        engine = Engine(config, source)
        for query, start, end in _first_reads(engine, source, FIRST_TICK):
            read = source.quarter_hourly if query is source._quarter_hourly_query else source.read
            figures.read_peak = max(figures.read_peak, _traced_peak(read, start, end)[0])
        figures.first_peak, figures.held = _traced_peak(engine.tick, FIRST_TICK)
        _progress(
            f"first tick's peak {figures.first_peak / 1e6:.0f} MB, held {figures.held / 1e6:.0f} MB"
        )
        at = FIRST_TICK + config.schedule.interval
        figures.steady_peak = _traced_peak(engine.tick, at)[0]
        figures.hourly_peak = _traced_peak(engine.tick, HOURLY_TICK)[0]
    finally:
        tracemalloc.stop()


def _high_water_mark() -> float:
    """This process's peak resident memory in MB (VmHWM), 0 where /proc has none."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1e3 if found else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, nargs="+", default=[100])
    parser.add_argument(
        "--dialects",
        nargs="+",
        choices=["sqlite", "postgresql", "duckdb"],
        default=["sqlite", "postgresql"],
    )
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--every", type=int, default=1, help="minutes between a gateway's payments")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument(
        "--starts", type=int, default=None, help="daemon starts and restarts (default --repeat)"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the PostgreSQL payments table, and reuse one of the same size",
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="detector-scale-"))
    header = (
        f"{'database':<10} {'gateways':>8} {'first tick':>10} {'bare SQL':>9} {'ratio':>6} "
        f"{'reads/SQL':>9} {'steady':>9} {'bare SQL':>9} {'ratio':>6} "
        f"{'hourly':>9} {'bare SQL':>9} {'ratio':>6} {'start':>8} {'restart':>8} "
        f"{'bare SQL':>9} {'peak read':>9} {'peak first':>10} {'peak steady':>11} "
        f"{'peak hourly':>11} {'held/gateway':>12}"
    )
    lines = []
    for gateways in args.gateways:
        for dialect in args.dialects:
            name = f"scale_payments_{gateways}"
            url = {
                "postgresql": POSTGRES_URL,
                "sqlite": f"sqlite:///{folder / name}.db",
                "duckdb": f"duckdb:///{folder / name}.duckdb",
            }[dialect]
            began = time.perf_counter()
            rows = _fill(url, name, gateways, args.days, args.every, args.keep)
            print(
                f"{dialect}: wrote {rows:,} payments ({gateways:,} gateways, {args.days:g} days)"
                f" in {time.perf_counter() - began:.1f} s",
                flush=True,
            )
            config = parse_config({"source": {"url": url, "table": name}}, env={})
            source = SqlSource(connect(url), config.source)
            figures = Figures()
            starts = args.repeat if args.starts is None else args.starts
            if starts:
                _starts(config, source, folder, starts, figures)
            _measure(config, source, args.repeat, args.ticks, figures)
            _memory(config, source, figures)
            source.engine.dispose()
            if dialect == "postgresql" and not args.keep:
                with sa.create_engine(url).begin() as connection:
                    connection.exec_driver_sql(f"DROP TABLE {name}")
            lines.append(
                f"{dialect:<10} {gateways:>8,} {figures.first:>8.2f} s {figures.first_bare:>7.2f} s"
                f" {figures.first_ratio:>6.2f} {figures.read_ratio:>9.2f}"
                f" {figures.steady * 1000:>6.0f} ms"
                f" {figures.steady_bare * 1000:>6.0f} ms {figures.steady_ratio:>6.2f}"
                f" {figures.hourly:>7.2f} s {figures.hourly_bare * 1000:>6.0f} ms"
                f" {figures.hourly_ratio:>6.1f}"
                f" {figures.start:>6.1f} s {figures.restart:>6.1f} s"
                f" {figures.restart_bare:>7.2f} s"
                f" {figures.read_peak / 1e6:>6.0f} MB"
                f" {figures.first_peak / 1e6:>7.0f} MB {figures.steady_peak / 1e6:>8.1f} MB"
                f" {figures.hourly_peak / 1e6:>8.0f} MB"
                f" {figures.held / gateways / 1e3:>9.1f} KB"
            )
            print(lines[-1], flush=True)
    print(
        f"\nmedians of {args.repeat} first ticks, {args.repeat * args.ticks} steady ticks,"
        f" {args.repeat} hourly ticks; peak resident memory of this process"
        f" {_high_water_mark():,.0f} MB"
    )
    print(header)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
