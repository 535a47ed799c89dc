"""Writing simulated payments into a database."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Connection, Engine, create_engine

from detector.simulate.gateways import DEFAULT_GATEWAYS, GatewayProfile
from detector.simulate.incidents import Incident
from detector.simulate.payments import generate
from detector.simulate.schema import PAYMENT_COLUMNS, create_schema, payments_table
from detector.timeutil import naive_utc

__all__ = ["simulate", "write"]


def write(
    engine: Engine, frame: pd.DataFrame, table: str = "payments", chunk_rows: int = 50_000
) -> int:
    """Insert the rows of ``frame`` (as from `generate`) and return how many were written.

    Each chunk of ``chunk_rows`` rows is committed on its own, so a reader sees the data
    arrive and a failure keeps the chunks already written.
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    payments = payments_table(table)
    dialect = engine.dialect
    compiled = payments.insert().compile(dialect=dialect)
    # Drivers with "?" or "%s" placeholders take one INSERT of many VALUES groups, which
    # SQLite runs about 1.6 times faster than the same rows sent one by one.
    multirow = compiled.positiontup is not None and dialect.paramstyle in ("qmark", "format")
    names = list(compiled.positiontup or PAYMENT_COLUMNS)
    columns = _driver_values(frame, sqlite_text=multirow and dialect.name == "sqlite")
    matrix = np.column_stack([columns[name] for name in names])
    for first in range(0, len(matrix), chunk_rows):
        chunk = matrix[first : first + chunk_rows]
        with engine.begin() as connection:
            if multirow:
                _insert_multirow(connection, compiled.string, chunk)
            else:
                connection.execute(
                    payments.insert(),
                    [dict(zip(names, row, strict=True)) for row in chunk.tolist()],
                )
    return len(matrix)


def _driver_values(frame: pd.DataFrame, sqlite_text: bool) -> dict[str, npt.NDArray[np.object_]]:
    """Columns of ``frame`` as object arrays of the Python values a DB-API driver binds."""
    created_at = frame["created_at"].to_numpy(dtype="datetime64[us]")
    # Text in SQLAlchemy's own SQLite format, so that these rows compare and read back exactly
    # like rows bound through SQLAlchemy.
    timestamps = _sqlite_timestamps(created_at) if sqlite_text else created_at
    values = {
        "created_at": timestamps.astype(object),
        "amount": frame["amount"].to_numpy(dtype=np.float64).astype(object),
    }
    for name in set(PAYMENT_COLUMNS) - set(values):
        # A copy, so that writing None for the missing values leaves the frame untouched;
        # the column finds its missing values faster than a scan of the object array would.
        values[name] = frame[name].to_numpy(dtype=object, copy=True)
        values[name][frame[name].isna().to_numpy()] = None
    return values


def _insert_multirow(
    connection: Connection, single_row: str, rows: npt.NDArray[np.object_]
) -> None:
    """Insert ``rows`` with statements of many VALUES groups, built from a one-row INSERT."""
    dialect = connection.dialect
    width = rows.shape[1]
    per_statement = max(
        1, min(dialect.insertmanyvalues_page_size, dialect.insertmanyvalues_max_parameters // width)
    )
    head, _, group = single_row.rpartition(" VALUES ")
    full = len(rows) - len(rows) % per_statement
    if full:
        params = list(map(tuple, rows[:full].reshape(-1, per_statement * width).tolist()))
        connection.exec_driver_sql(f"{head} VALUES {', '.join([group] * per_statement)}", params)
    if full < len(rows):
        rest = rows[full:]
        connection.exec_driver_sql(
            f"{head} VALUES {', '.join([group] * len(rest))}", tuple(rest.ravel().tolist())
        )


def _sqlite_timestamps(created_at: npt.NDArray[np.datetime64]) -> npt.NDArray[np.str_]:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` strings, SQLAlchemy's storage format for SQLite."""
    text = np.datetime_as_string(created_at.astype("datetime64[us]"), unit="us").astype("U26")
    # Swap the ISO "T" for a space in place: each string is 26 UCS-4 code points.
    text.view(np.uint32).reshape(text.size, 26)[:, 10] = ord(" ")
    return text


def simulate(
    url_or_engine: str | Engine,
    start: datetime,
    days: float,
    gateways: Sequence[GatewayProfile] = DEFAULT_GATEWAYS,
    incidents: Iterable[Incident] = (),
    seed: int = 0,
    table: str = "payments",
) -> int:
    """Create the payments table and fill it with ``days`` of traffic from ``start``.

    Generates and inserts one UTC day at a time so memory stays bounded; returns the number
    of rows written.
    """
    if days < 0:
        raise ValueError("days must be zero or more")
    engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    incidents = tuple(incidents)
    start = naive_utc(start)
    end = start + timedelta(days=days)
    try:
        create_schema(engine, table)
        written = 0
        chunk_start = start
        while chunk_start < end:
            # Chunks end at UTC midnight: generate() draws whole days, so none is drawn twice.
            midnight = datetime.combine(chunk_start.date(), datetime.min.time()) + timedelta(days=1)
            chunk_end = min(midnight, end)
            frame = generate(chunk_start, chunk_end, gateways, incidents, seed)
            written += write(engine, frame, table)
            chunk_start = chunk_end
        return written
    finally:
        if engine is not url_or_engine:
            engine.dispose()
