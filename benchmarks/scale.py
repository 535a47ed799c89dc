"""What a first start and a steady tick cost at 100, 1,000 or 10,000 gateways, next to the
bare SQL each needs, and the memory they take.

Writes ``--days`` of payments (default 2: the volume history then holds two of its four
weeks) for ``--gateways`` gateways, ``--per-minute`` payments each a minute, into SQLite
(executemany), PostgreSQL (COPY) or DuckDB (a file, inserted from the frames), then measures
on each, side by side in one run:

- first tick: a fresh engine's first tick, the whole of a first ``detector check`` or a
  daemon's start (the warm-up read of ``source.warmup`` per minute, the volume history per
  quarter hour, the rules), against the bare SQL of those two reads: the same statements
  run by the driver, its rows fetched as the driver's tuples and dropped. The same two
  reads by the source, into counts, are timed against it too (reads/SQL);
- steady tick: the ticks of the next minutes (within one hour: the history is re-read once
  an hour), against the bare SQL of the incremental read each issues.

Each repeat times the bare SQL and the tick alternately, so both see the same load; the
medians of the ratios are printed. Memory is traced (``tracemalloc``, numpy's arrays
included) in a separate run: the peak during the first tick and a steady tick, and what
the engine holds afterwards per gateway; and the peak of the larger of the first tick's two
reads alone.

    .venv/bin/python benchmarks/scale.py [--gateways 100 1000 10000]
        [--dialects sqlite postgresql duckdb] [--days 2] [--per-minute 1] [--repeat 3] [--ticks 10]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import seconds
from detector.config import Config, parse_config
from detector.db import connect
from detector.engine import Engine
from detector.rules import VolumeHistory
from detector.simulate.schema import payments_table
from detector.source import SqlSource
from detector.timeutil import naive_utc

__all__ = ["main"]

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # the data ends here, a whole hour
FIRST_TICK = END - timedelta(minutes=20)  # steady ticks follow within the same hour
POSTGRES_URL = os.environ.get(
    "DETECTOR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_ROWS_PER_CHUNK = 200_000


def _payments(gateways: int, days: float, per_minute: int) -> Iterator[pd.DataFrame]:
    """Seeded payments in chunks: 2% failed, 1% pending, in the columns' order."""
    rng = np.random.default_rng(14)
    names = np.array([f"gw{i:05d}" for i in range(gateways)], dtype=object)
    minutes = int(days * 1440)
    first = END - timedelta(minutes=minutes)
    per_chunk = max(1, _ROWS_PER_CHUNK // (gateways * per_minute))
    for lo in range(0, minutes, per_chunk):
        span = min(per_chunk, minutes - lo)
        n = span * gateways * per_minute
        minute = lo + np.repeat(np.arange(span), gateways * per_minute)
        at = np.datetime64(naive_utc(first), "us") + (
            minute * 60_000_000 + rng.integers(0, 60_000_000, n)
        ).astype("timedelta64[us]")
        draw = rng.random(n)
        status = np.where(draw < 0.02, "failed", np.where(draw < 0.03, "pending", "succeeded"))
        error_code = np.full(n, None, dtype=object)
        error_code[status == "failed"] = "timeout"
        offset = lo * gateways * per_minute
        yield pd.DataFrame(
            {
                "id": [f"p{k}" for k in range(offset, offset + n)],
                "created_at": at,
                "gateway": np.tile(names, span * per_minute),
                "status": status,
                "error_code": error_code,
                "amount": 10,
                "currency": "USD",
                "method": np.where(draw < 0.5, "card", "wallet"),
                "country": "US",
            }
        )


def _create(engine: sa.Engine, name: str) -> sa.Table:
    """The payments table, its indexes built after the rows are in (faster)."""
    table = payments_table(name)
    table.drop(engine, checkfirst=True)
    indexes = list(table.indexes)
    table.indexes.clear()
    table.create(engine)
    table.indexes.update(indexes)
    return table


def _fill(url: str, name: str, gateways: int, days: float, per_minute: int) -> int:
    engine = sa.create_engine(url)
    table = _create(engine, name)
    rows = 0
    with engine.begin() as connection:
        dbapi: Any = connection.connection.dbapi_connection
        for frame in _payments(gateways, days, per_minute):
            rows += len(frame)
            columns = ", ".join(frame.columns)  # the rest (latency_ms) stays NULL
            if engine.dialect.name == "postgresql":
                text = io.StringIO()
                frame.to_csv(text, header=False, index=False, date_format="%Y-%m-%d %H:%M:%S.%f")
                with (
                    dbapi.cursor() as cursor,
                    cursor.copy(f"COPY {name} ({columns}) FROM STDIN (FORMAT csv)") as copy,
                ):
                    copy.write(text.getvalue())
            elif engine.dialect.name == "duckdb":
                dbapi.register("frame", frame)  # DuckDB scans the pandas frame itself
                connection.exec_driver_sql(
                    f"INSERT INTO {name} ({columns}) SELECT {columns} FROM frame"  # noqa: S608
                )
                dbapi.unregister("frame")
            else:
                frame["created_at"] = frame["created_at"].dt.strftime("%Y-%m-%d %H:%M:%S.%f")
                frame = frame.astype(object).where(frame.notna(), None)
                marks = ", ".join("?" * len(frame.columns))
                dbapi.executemany(
                    f"INSERT INTO {name} ({columns}) VALUES ({marks})",  # noqa: S608 - our own table name
                    frame.itertuples(index=False, name=None),
                )
        for index in table.indexes:
            index.create(connection)
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"ANALYZE {name}")
    engine.dispose()
    return rows


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


@dataclass
class Figures:
    first: float
    first_bare: float
    first_ratio: float
    steady: float
    steady_bare: float
    steady_ratio: float
    read_ratio: float  # the first tick's two reads by the source / their bare SQL
    read_peak: int = 0  # the larger of the first tick's two reads
    first_peak: int = 0
    steady_peak: int = 0
    held: int = 0


def _measure(config: Config, source: SqlSource, repeat: int, ticks: int) -> Figures:
    firsts: list[tuple[float, float]] = []
    read_ratios: list[float] = []
    steadies: list[tuple[float, float]] = []
    for _ in range(repeat):
        engine = Engine(config, source)
        reads = _first_reads(engine, source, FIRST_TICK)
        bare = seconds(_bare, source, reads)
        firsts.append((bare, seconds(engine.tick, FIRST_TICK)))
        read_ratios.append(seconds(_read, source, reads) / seconds(_bare, source, reads))
        now = FIRST_TICK
        for _ in range(ticks):
            now += config.schedule.interval
            start, end = engine._read_range(now)
            read = [(source._counts_queries[()], start, end)]
            steadies.append((seconds(_bare, source, read), seconds(engine.tick, now)))
    return Figures(
        statistics.median(t for _, t in firsts),
        statistics.median(b for b, _ in firsts),
        statistics.median(t / b for b, t in firsts),
        statistics.median(t for _, t in steadies),
        statistics.median(b for b, _ in steadies),
        statistics.median(t / b for b, t in steadies),
        statistics.median(read_ratios),
    )


def _memory(config: Config, source: SqlSource, figures: Figures) -> None:
    tracemalloc.start()
    try:
        engine = Engine(config, source)
        for query, start, end in _first_reads(engine, source, FIRST_TICK):
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            if query is source._quarter_hourly_query:
                source.quarter_hourly(start, end)
            else:
                source.read(start, end)
            figures.read_peak = max(figures.read_peak, tracemalloc.get_traced_memory()[1] - before)
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        engine.tick(FIRST_TICK)
        held, figures.first_peak = tracemalloc.get_traced_memory()
        figures.held = held - before
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        engine.tick(FIRST_TICK + config.schedule.interval)
        figures.steady_peak = tracemalloc.get_traced_memory()[1] - base
        figures.first_peak -= before
    finally:
        tracemalloc.stop()


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
    parser.add_argument("--per-minute", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=10)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="detector-scale-"))
    header = (
        f"{'database':<10} {'gateways':>8} {'first tick':>10} {'bare SQL':>9} {'ratio':>6} "
        f"{'reads/SQL':>9} "
        f"{'steady':>9} {'bare SQL':>9} {'ratio':>6} {'peak read':>9} {'peak first':>10} "
        f"{'peak steady':>11} "
        f"{'held/gateway':>12}"
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
            rows = _fill(url, name, gateways, args.days, args.per_minute)
            print(
                f"{dialect}: wrote {rows:,} payments ({gateways:,} gateways, {args.days:g} days)"
                f" in {time.perf_counter() - began:.1f} s",
                flush=True,
            )
            config = parse_config({"source": {"url": url, "table": name}}, env={})
            source = SqlSource(connect(url), config.source)
            figures = _measure(config, source, args.repeat, args.ticks)
            _memory(config, source, figures)
            source.engine.dispose()
            if dialect == "postgresql":
                with sa.create_engine(url).begin() as connection:
                    connection.exec_driver_sql(f"DROP TABLE {name}")
            lines.append(
                f"{dialect:<10} {gateways:>8,} {figures.first:>8.2f} s {figures.first_bare:>7.2f} s"
                f" {figures.first_ratio:>6.2f} {figures.read_ratio:>9.2f}"
                f" {figures.steady * 1000:>6.0f} ms"
                f" {figures.steady_bare * 1000:>6.0f} ms {figures.steady_ratio:>6.2f}"
                f" {figures.read_peak / 1e6:>6.0f} MB"
                f" {figures.first_peak / 1e6:>7.0f} MB {figures.steady_peak / 1e6:>8.1f} MB"
                f" {figures.held / gateways / 1e3:>9.1f} KB"
            )
            print(lines[-1], flush=True)
    print(f"\nmedians of {args.repeat} first ticks and {args.repeat * args.ticks} steady ticks")
    print(header)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
