"""Time buckets for the count queries: whole minutes, quarter hours or days since the
epoch of a timestamp column, compiled for SQLite, PostgreSQL, MariaDB and DuckDB, so that every
``GROUP BY`` on time runs in the database."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["DAY", "QUARTER_HOUR", "time_bucket"]

# Minutes in the buckets the seasonal volume history is aggregated to.
QUARTER_HOUR = 15
# Minutes in a (UTC) day, the buckets of the SLA report.
DAY = 24 * 60


class _Bucket(FunctionElement[int]):
    """Whole ``seconds``-long buckets since the epoch of a timestamp column, per dialect."""

    type = sa.BigInteger()
    inherit_cache = True
    seconds = 60


class _MinuteBucket(_Bucket):
    inherit_cache = True
    name = "minute_bucket"


class _QuarterHourBucket(_Bucket):
    inherit_cache = True
    name = "quarter_hour_bucket"
    seconds = QUARTER_HOUR * 60


class _DayBucket(_Bucket):
    inherit_cache = True
    name = "day_bucket"
    seconds = DAY * 60


@compiles(_Bucket, "sqlite")
def _bucket_sqlite(element: _Bucket, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / {element.seconds})"


@compiles(_Bucket, "postgresql")
def _bucket_postgresql(element: _Bucket, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {column}) / {element.seconds}) AS BIGINT)"


@compiles(_Bucket, "duckdb")
def _bucket_duckdb(element: _Bucket, compiler: Any, **kw: Any) -> str:
    # epoch() is the seconds (with their fraction) of a TIMESTAMP read as UTC, or of the
    # instant of a TIMESTAMPTZ.
    column = compiler.process(element.clauses, **kw)
    return f"CAST(FLOOR(epoch({column}) / {element.seconds}) AS BIGINT)"


@compiles(_Bucket, "mysql")
@compiles(_Bucket, "mariadb")
def _bucket_mysql(element: _Bucket, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {column}) DIV {element.seconds})"


_BUCKETS: dict[int, type[_Bucket]] = {
    1: _MinuteBucket,
    QUARTER_HOUR: _QuarterHourBucket,
    DAY: _DayBucket,
}


def time_bucket(column: ColumnElement[Any], minutes: int = 1) -> ColumnElement[int]:
    """Whole ``minutes``-long buckets (1, ``QUARTER_HOUR`` or ``DAY``) since the epoch of a
    timestamp column, compiled for SQLite, PostgreSQL, MariaDB and DuckDB: what every count query
    groups by."""
    return _BUCKETS[minutes](column)
