"""The payments table's counts per (gateway, minute) and the start-up check of the table.

The follow-up reads about one gateway (evidence, breakdown, amounts, skipped rows) are in
:mod:`detector.source_details`, on the columns and conditions a :class:`SqlSource` builds.

The database does the aggregation (``GROUP BY gateway, minute`` over an indexed time range
with bound parameters); Python only receives one row per gateway and minute.
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from detector import source_details
from detector.buckets import DAY, QUARTER_HOUR, time_bucket
from detector.config import SourceConfig
from detector.db import error_text, table_columns
from detector.errors import DetectorError
from detector.model import Counts, grouped
from detector.source_arrays import as_text, read_columns
from detector.source_details import NONE_VALUE, Amounts, Breakdown, count_where, skipped_text
from detector.table_check import timestamp_problem
from detector.timeutil import epoch_minute, naive_utc
from detector.visibility import AS_OF, Visibility

__all__ = [
    "FrameSource",
    "ReadFailed",
    "SchemaError",
    "Source",
    "SourceError",
    "SqlSource",
    "check_at_start",
]

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]


class SourceError(DetectorError):
    """The payments database could not be read."""


class ReadFailed(SourceError):
    """Reading the payments failed for a reason other than the database's answer: out of
    memory, or a bug. Reported like an unreachable database (``source_down``), with the
    cause in the message, rather than escaping the tick."""


class SchemaError(SourceError):
    """The configured table or one of its columns does not exist: a configuration mistake."""


# The columns only ``detector backtest --as-visible`` reads: their errors say so, and how to
# do without them.
_VISIBLE_ONLY = {
    key: f"; only `detector backtest --as-visible` reads source.columns.{key}: name the "
    "column that holds each row's time of "
    + ("insert" if key == "inserted_at" else "last update")
    + ", or remove the key"
    for key in ("inserted_at", "updated_at")
}

# The least time between two warnings about rows skipped for the same reason.
_SKIPPED_WARNING_EVERY = timedelta(hours=1)


class Source(ABC):
    """Where a tick gets its counts from."""

    @abstractmethod
    def read(self, start: datetime, end: datetime, dimensions: tuple[str, ...] = ()) -> Counts:
        """Counts of payments with ``start <= timestamp < end``.

        With ``dimensions`` (labels of ``source.columns.dimensions``) the counts also carry
        their ``detail`` per value of those dimensions, where the source has it.
        """

    def quarter_hourly(self, start: datetime, end: datetime) -> Counts:
        """Counts per (gateway, quarter hour) for whole quarters in ``[start, end)``."""
        return self.read(start, end).by_buckets(QUARTER_HOUR)

    def daily(self, start: datetime, end: datetime) -> Counts:
        """Counts per (gateway, UTC day) for whole days in ``[start, end)``; ``minute`` is
        the day's first minute."""
        return self.read(start, end).by_buckets(DAY)

    def evidence(
        self,
        gateway: str,
        start: datetime,
        end: datetime,
        limit: int = 5,
        series: Mapping[str, str] | None = None,
    ) -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
        """Top error codes and a few recent failed payment ids, declines left out; none
        where not available.

        ``series`` narrows them to the payments with these dimension values.
        """
        return (), ()

    def breakdown(self, gateway: str, start: datetime, end: datetime) -> Breakdown | None:
        """Payments per combination of the configured dimensions; None where not available."""
        return None

    def amounts(
        self,
        gateway: str,
        start: datetime,
        end: datetime,
        series: Mapping[str, str] | None = None,
    ) -> Amounts | None:
        """The gateway's payments and money per currency in ``[start, end)``; None where the
        source has no amounts (``source.columns.amount``) or they could not be read."""
        return None

    def only(self, gateways: Sequence[str]) -> Source:
        """This source, reading the payments of ``gateways`` alone (``ha.partitions``)."""
        raise SourceError(f"{type(self).__name__} cannot be split into partitions")

    def gateway_names(self, start: datetime, end: datetime) -> list[str]:
        """Every gateway with payments in ``[start, end)``."""
        raise SourceError(f"{type(self).__name__} cannot be split into partitions")


def check_at_start(check: Callable[[], None], dispose: Callable[[], None], *, strict: bool) -> None:
    """Run a source's start-up ``check``: a missing table or column is always fatal, an
    unreachable database only if ``strict`` (otherwise it is logged and every tick retries).
    What is fatal first closes the source's connections (``dispose``)."""
    try:
        check()
    except SourceError as exc:
        if strict or isinstance(exc, SchemaError):
            dispose()
            raise
        log.warning("%s; will keep retrying every tick", exc)


# Columns of a counts query before the dimension values.
_COUNT_COLUMNS = 8


class SqlSource(Source):
    """Reads the configured payments table through SQLAlchemy (SQLite, PostgreSQL, MariaDB).

    With ``latency_threshold`` (``Config.latency_threshold``) the counts also carry the
    payments with a latency and those slower than it. ``as_visible`` reads the table as it
    stood at ``as_of`` (``source.columns.inserted_at``/``updated_at``, see
    :mod:`detector.visibility`).
    """

    def __init__(
        self,
        engine: Engine,
        config: SourceConfig,
        latency_threshold: timedelta | None = None,
        *,
        as_visible: bool = False,
    ):
        self.engine = engine
        self.config = config
        self._visibility = Visibility(config) if as_visible else None
        # The moment an as-visible source reads the table as of; None: each read's end.
        self.as_of: datetime | None = None
        self._latency_threshold_ms = (
            None if latency_threshold is None else latency_threshold.total_seconds() * 1000
        )
        columns = config.columns
        schema, _, name = config.table.rpartition(".")
        self._timestamp = sa.column(columns.timestamp, sa.DateTime())
        self._gateway = sa.column(columns.gateway, sa.String())
        # The status column as stored, and the status counted (as_of's, where as visible).
        self._stored_status = status = sa.column(columns.status, sa.String())
        self._status: ColumnElement[Any] = status
        self._id = sa.column(columns.id, sa.String())
        self._error_code = (
            sa.column(columns.error_code, sa.String()) if columns.error_code else None
        )
        wanted: list[sa.ColumnClause[Any]] = [
            self._timestamp,
            self._gateway,
            status,
            self._id,
        ]
        if self._error_code is not None:
            wanted.append(self._error_code)
        self._amount = sa.column(columns.amount, sa.Numeric()) if columns.amount else None
        self._currency = sa.column(columns.currency, sa.String()) if columns.currency else None
        wanted += [c for c in (self._amount, self._currency) if c is not None]
        latency = (
            sa.column(columns.latency_ms, sa.Float())
            if columns.latency_ms and self._latency_threshold_ms is not None
            else None
        )
        if latency is not None:
            wanted.append(latency)
        self._latency: ColumnElement[Any] | None = latency
        self._dimensions = {
            label: sa.column(column, sa.String()) for label, column in columns.dimensions.items()
        }
        wanted += self._dimensions.values()
        if self._visibility is not None:
            wanted += self._visibility.columns
        self.table = sa.table(name, *wanted, schema=schema or None)
        # The gateways read, where ha.partitions gives this replica some of them (only()).
        self.gateways: tuple[str, ...] | None = None
        if self._visibility is not None:
            # Every query below counts the status (and latency) a row had at as_of.
            self._status = self._visibility.status(self._status)
            if self._latency is not None:
                self._latency = self._visibility.settled_value(self._latency)
        self._build_queries()

    def _build_queries(self) -> None:
        """The count queries, built once (and again for a narrowed copy, :meth:`only`)."""
        self._counts_queries: dict[tuple[str, ...], sa.Select[Any]] = {
            (): self._build_counts_query(time_bucket(self._timestamp))
        }
        self._quarter_hourly_query = self._build_counts_query(
            time_bucket(self._timestamp, QUARTER_HOUR)
        )
        self._daily_query = self._build_counts_query(time_bucket(self._timestamp, DAY))
        # When each reason for skipped rows was last logged (the end of the read).
        self._warned: dict[str, datetime] = {}

    def _in_window(self) -> ColumnElement[bool]:
        return sa.and_(
            self._timestamp >= sa.bindparam("start", type_=sa.DateTime()),
            self._timestamp < sa.bindparam("end", type_=sa.DateTime()),
            *([self._visibility.visible()] if self._visibility is not None else []),
            *(
                [self._gateway.in_(sa.bindparam("gateways", expanding=True))]
                if self.gateways is not None
                else []
            ),
        )

    def _params(self, start: datetime, end: datetime, **more: Any) -> dict[str, Any]:
        """The bound values of a query of ``[start, end)`` (and the moment read as of)."""
        params = {"start": naive_utc(start), "end": naive_utc(end), **more}
        if self._visibility is not None:
            params[AS_OF] = naive_utc(self.as_of or end)
        if self.gateways is not None:
            params["gateways"] = list(self.gateways)
        return params

    def only(self, gateways: Sequence[str]) -> SqlSource:
        """The same table on the same engine, every count query narrowed to ``gateways``
        by a bound list (``gateway IN (...)``), so the database groups their rows alone and
        can use an index on the gateway column."""
        narrowed = copy.copy(self)
        narrowed.gateways = tuple(gateways)
        narrowed._build_queries()
        return narrowed

    def gateway_names(self, start: datetime, end: datetime) -> list[str]:
        query = (
            sa.select(self._gateway)
            .select_from(self.table)
            .where(self._in_window(), self._gateway.is_not(None))
            .group_by(self._gateway)
        )
        try:
            with self.engine.connect() as connection:
                found = connection.execute(query, self._params(start, end)).scalars()
                return sorted(str(name) for name in found)
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"cannot read payments: {error_text(exc)}") from exc

    def _build_counts_query(
        self, bucket: ColumnElement[int], dimensions: tuple[str, ...] = ()
    ) -> sa.Select[Any]:
        statuses = self.config.statuses
        minute = bucket
        columns = [self._dimensions[label] for label in dimensions]
        return (
            sa.select(
                as_text(self._gateway).label("gateway"),
                minute.label("minute"),
                sa.func.count().label("all_rows"),
                count_where(self._status.in_(statuses.failed)).label("failed"),
                count_where(self._status.in_(statuses.succeeded)).label("succeeded"),
                count_where(self._status.in_(statuses.pending)).label("pending"),
                self._count_of_declines(),
                self._count_of_declined_failures(),
                *(as_text(column).label(f"d{i}") for i, column in enumerate(columns)),
                *self._latency_counts(),
            )
            .select_from(self.table)
            .where(self._in_window())
            .group_by(self._gateway, minute, *columns)
            .order_by(minute)
        )

    def _latency_counts(self) -> list[ColumnElement[Any]]:
        """The payments with a latency, and those slower than ``detection.latency.threshold``
        (a bound parameter); none without ``source.columns.latency_ms``. A NULL latency
        (a pending payment) is in neither."""
        if self._latency is None:
            return []
        threshold = sa.bindparam("latency_threshold", self._latency_threshold_ms, type_=sa.Float())
        return [
            sa.func.count(self._latency).label("timed"),
            count_where(self._latency > threshold).label("slow"),
        ]

    def _decline_code(self) -> ColumnElement[bool] | None:
        """Whether a row's error code is a decline's (``source.declines``); None if no code is."""
        declines = self.config.declines
        if self._error_code is None or not declines.configured:
            return None
        matches: list[ColumnElement[bool]] = []
        if declines.error_codes:
            matches.append(self._error_code.in_(declines.error_codes))
        if declines.error_code_match is not None:
            # SQLite's REGEXP is Python's re.search, registered by SQLAlchemy's pysqlite
            # dialect on every connection; PostgreSQL's is ~, MariaDB's REGEXP.
            matches.append(self._error_code.regexp_match(declines.error_code_match))
        return sa.or_(*matches)

    def _count_of_declines(self) -> ColumnElement[Any]:
        """Rows with a status of their own for declines (``statuses.declined``)."""
        declined = self.config.statuses.declined
        if not declined:
            return sa.literal_column("0").label("declined")
        return count_where(self._status.in_(declined)).label("declined")

    def _count_of_declined_failures(self) -> ColumnElement[Any]:
        """Rows with a failed status whose error code makes them declines."""
        code = self._decline_code()
        if code is None:
            return sa.literal_column("0").label("declined_failed")
        failed = self._status.in_(self.config.statuses.failed)
        return count_where(sa.and_(failed, code)).label("declined_failed")

    def _technical_failure(self) -> ColumnElement[bool]:
        """A failed payment that is not a decline: what counts against the SLA."""
        failed = self._status.in_(self.config.statuses.failed)
        code = self._decline_code()
        if code is None:
            return failed
        # A NULL error code is no decline: the CASE reads an unknown match as none.
        return sa.and_(failed, sa.case((code, 1), else_=0) == 0)

    def check(self, *, every_column: bool = False) -> None:
        """Fail with a clear message if the table or a configured column does not exist, or
        a time column read holds what the database cannot compare as time.
        ``every_column``: also the insert and update time columns where this source does
        not read them (only ``detector backtest --as-visible`` does), for ``validate --db``."""
        columns = self.config.columns
        names = {
            "id": columns.id,
            "timestamp": columns.timestamp,
            "gateway": columns.gateway,
            "status": columns.status,
        }
        for key in ("error_code", "latency_ms", "amount", "currency"):
            if getattr(columns, key):
                names[key] = getattr(columns, key)
        for label, column in columns.dimensions.items():
            names[f"dimensions.{label}"] = column
        names.update(self._time_columns(every_column))
        try:
            types = table_columns(self.engine, self.config.table)
        except sa.exc.NoSuchTableError as exc:
            raise SchemaError(f"source.table: table {self.config.table!r} does not exist") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(
                f"source.url: cannot read the payments database ({error_text(exc)})"
            ) from exc
        for key, column in names.items():
            if column.lower() not in types:
                raise SchemaError(
                    f"source.columns.{key}: column {column!r} not found in table "
                    f"{self.config.table!r} (it has: {', '.join(sorted(types))})"
                    + _VISIBLE_ONLY.get(key, "")
                )
        amount = columns.amount
        if amount and not isinstance(types[amount.lower()], sa.Numeric | sa.Integer):
            raise SchemaError(
                f"source.columns.amount: column {amount!r} is {types[amount.lower()]}, not a "
                "number; name a numeric column (DECIMAL, NUMERIC, INTEGER, FLOAT)"
            )
        self._check_times(types, every_column)

    def _check_times(self, types: Mapping[str, Any], every_column: bool) -> None:
        """Fail if a time column read holds what the database cannot compare as time."""
        for key, column in self._time_columns(every_column).items():
            problem = timestamp_problem(
                self.engine.dialect.name,
                self.config.table,
                column,
                types[column.lower()],
                self._newest_timestamps(column) if self.engine.dialect.name == "sqlite" else (),
            )
            if problem:
                raise SchemaError(f"source.columns.{key}: {problem}{_VISIBLE_ONLY.get(key, '')}")

    def _time_columns(self, every_column: bool = False) -> dict[str, str]:
        """The time columns read, by key: the timestamp, and the insert and update times
        where the table is read as visible (or ``every_column``)."""
        columns = self.config.columns
        keys = ["timestamp"]
        if self._visibility is not None or every_column:
            keys += [key for key in ("inserted_at", "updated_at") if getattr(columns, key)]
        return {key: getattr(columns, key) for key in keys}

    def _newest_timestamps(self, column: str, limit: int = 20) -> list[Any]:
        """A few of a time column's newest values as stored (SQLite keeps any type)."""
        raw: sa.ColumnClause[Any] = sa.column(column)
        query = sa.select(raw).select_from(self.table).where(raw.is_not(None)).order_by(raw.desc())
        try:
            with self.engine.connect() as connection:
                return list(connection.execute(query.limit(limit)).scalars())
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"cannot read payments: {error_text(exc)}") from exc

    def values(self, key: str, start: datetime, end: datetime) -> list[tuple[Any, int]]:
        """The values of the ``gateway`` or ``status`` column in ``[start, end)`` with their
        rows, most rows first (at most 200)."""
        column = {"gateway": self._gateway, "status": self._stored_status}[key]
        rows = sa.func.count().label("rows")
        query = (
            sa.select(column, rows)
            .select_from(self.table)
            .where(self._in_window())
            .group_by(column)
            .order_by(rows.desc())
            .limit(200)
        )
        try:
            with self.engine.connect() as connection:
                found = connection.execute(query, self._params(start, end))
                return [(value, int(count)) for value, count in found]
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"cannot read payments: {error_text(exc)}") from exc

    def read(self, start: datetime, end: datetime, dimensions: tuple[str, ...] = ()) -> Counts:
        query = self._counts_queries.get(dimensions)
        if query is None:
            query = self._build_counts_query(time_bucket(self._timestamp), dimensions)
            self._counts_queries[dimensions] = query
        counts = self._counts(query, start, end, dimensions)
        if counts.invalid:
            skipped, per_gateway = source_details.skipped_rows(self, start, end)
            counts = replace(counts, skipped=skipped, unlisted_values=per_gateway)
            self._warn_skipped(counts.skipped, start, end)
        if not dimensions:
            return counts
        # One row per (gateway, minute) as without dimensions, summed here from the detail.
        total = grouped(counts.gateway, counts.minute, counts)
        return replace(
            total,
            invalid=counts.invalid,
            invalid_minutes=counts.invalid_minutes,
            invalid_per_minute=counts.invalid_per_minute,
            skipped=counts.skipped,
            unlisted_values=counts.unlisted_values,
            detail=counts,
        )

    def quarter_hourly(self, start: datetime, end: datetime) -> Counts:
        return self._bucketed(self._quarter_hourly_query, QUARTER_HOUR, start, end)

    def daily(self, start: datetime, end: datetime) -> Counts:
        return self._bucketed(self._daily_query, DAY, start, end)

    def _bucketed(
        self, query: sa.Select[Any], minutes: int, start: datetime, end: datetime
    ) -> Counts:
        """Counts of a query grouped by ``minutes``-long buckets, ``minute`` in minutes."""
        counts = self._counts(query, start, end)
        return replace(
            counts,
            minute=counts.minute * minutes,
            invalid_minutes=counts.invalid_minutes * minutes,
        )

    def _warn_skipped(
        self, skipped: tuple[tuple[str, int], ...], start: datetime, end: datetime
    ) -> None:
        """Log the reasons for skipped rows, each at most once per hour of ``end``."""
        fresh = [
            (reason, rows)
            for reason, rows in skipped
            if reason not in self._warned or end - self._warned[reason] >= _SKIPPED_WARNING_EVERY
        ]
        if not fresh:
            return
        for reason, _ in fresh:
            self._warned[reason] = end
        log.warning(
            "skipped payment rows from %s to %s: %s (statuses listed under none of "
            "source.statuses, or no gateway; each reason is logged at most once an hour)",
            naive_utc(start).isoformat(timespec="seconds"),
            naive_utc(end).isoformat(timespec="seconds"),
            skipped_text(tuple(fresh)),
        )

    def _counts(
        self,
        query: sa.Select[Any],
        start: datetime,
        end: datetime,
        dimensions: tuple[str, ...] = (),
    ) -> Counts:
        params = self._params(start, end)
        # The latency counts, where read, follow the dimension values.
        latency = "ii" if self._latency is not None else ""
        kinds = "t" + "i" * (_COUNT_COLUMNS - 1) + "t" * len(dimensions) + latency
        try:
            with self.engine.connect() as connection:
                columns = read_columns(connection, query, params, kinds)
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"cannot read payments: {error_text(exc)}") from exc
        except MemoryError as exc:
            raise ReadFailed(
                f"cannot read payments: out of memory holding the counts from {start:%F %R} to "
                f"{end:%F %R}; give the detector more memory (docs/operations.md, sizing)"
            ) from exc
        except Exception as exc:
            log.exception("reading the payments failed unexpectedly")
            raise ReadFailed(f"cannot read payments: {type(exc).__name__}: {exc}") from exc
        if not columns.rows:
            return Counts.empty()
        gateway = columns.text(0)
        integers = columns.integers
        minute, all_rows, failed, succeeded, pending, declined, declined_failed = integers[:7]
        valid = columns.codes[0] >= 0
        skipped = np.where(valid, all_rows - failed - succeeded - pending - declined, all_rows)
        invalid_minutes, invalid_per_minute = _per_minute(minute, skipped)
        # A read without bad rows keeps its arrays as they are, copying none.
        keep = slice(None) if valid.all() else valid
        # Empty where the latency column is not set: the counts then hold zeros.
        none = np.zeros(0, dtype=np.int64)
        timed, slow = (c[keep] for c in integers[7:]) if latency else (none, none)
        values = None
        if dimensions:
            values = np.column_stack(
                [columns.text(1 + i, null=NONE_VALUE)[keep] for i in range(len(dimensions))]
            )
        return Counts(
            gateway[keep],
            minute[keep],
            (failed + succeeded + declined)[keep],
            (failed - declined_failed)[keep],
            (failed + succeeded + pending + declined)[keep],
            int(skipped.sum()),
            dimensions=dimensions,
            values=values,
            declines=(declined + declined_failed)[keep],
            invalid_minutes=invalid_minutes,
            invalid_per_minute=invalid_per_minute,
            timed=timed,
            slow=slow,
            unlisted=skipped[valid],
        )

    def evidence(
        self,
        gateway: str,
        start: datetime,
        end: datetime,
        limit: int = 5,
        series: Mapping[str, str] | None = None,
    ) -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
        return source_details.evidence(self, gateway, start, end, limit, series)

    def breakdown(self, gateway: str, start: datetime, end: datetime) -> Breakdown | None:
        return source_details.breakdown(self, gateway, start, end)

    def amounts(
        self,
        gateway: str,
        start: datetime,
        end: datetime,
        series: Mapping[str, str] | None = None,
    ) -> Amounts | None:
        return source_details.amounts(self, gateway, start, end, series)


def _per_minute(minute: IntArray, rows: IntArray) -> tuple[IntArray, IntArray]:
    """``rows`` summed per minute, only the minutes with any: (minutes ascending, sums)."""
    minutes, where = np.unique(minute, return_inverse=True)
    sums = np.bincount(where.ravel(), weights=rows, minlength=minutes.size).astype(np.int64)
    return minutes[sums > 0], sums[sums > 0]


class FrameSource(Source):
    """Serves already-aggregated counts, as a backtest does after one bulk query.

    Only complete minutes before ``end`` are served, so a replay never sees the future.
    """

    def __init__(self, counts: Counts, evidence_from: Source | None = None):
        self.counts = counts
        self._evidence_from = evidence_from
        self._quarter_hourly: Counts | None = None

    def read(self, start: datetime, end: datetime, dimensions: tuple[str, ...] = ()) -> Counts:
        counts = self.counts.between(epoch_minute(start), epoch_minute(end))
        if counts.detail is not None and counts.detail.dimensions != dimensions:
            return replace(counts, detail=None)  # aggregated for other dimensions
        return counts

    def quarter_hourly(self, start: datetime, end: datetime) -> Counts:
        if self._quarter_hourly is None:  # aggregated once: a replay asks every simulated hour
            self._quarter_hourly = self.counts.by_buckets(QUARTER_HOUR)
        return self._quarter_hourly.between(epoch_minute(start), epoch_minute(end))

    def evidence(
        self,
        gateway: str,
        start: datetime,
        end: datetime,
        limit: int = 5,
        series: Mapping[str, str] | None = None,
    ) -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
        if self._evidence_from is None:
            return (), ()
        return self._evidence_from.evidence(gateway, start, end, limit, series)

    def breakdown(self, gateway: str, start: datetime, end: datetime) -> Breakdown | None:
        if self._evidence_from is None:
            return None
        return self._evidence_from.breakdown(gateway, start, end)

    def amounts(
        self,
        gateway: str,
        start: datetime,
        end: datetime,
        series: Mapping[str, str] | None = None,
    ) -> Amounts | None:
        if self._evidence_from is None:
            return None
        return self._evidence_from.amounts(gateway, start, end, series)
