"""The only SQL against the business-volume tables (``volumes:``): rows per (series, minute).

Each volume is one ``GROUP BY`` in its database, on the same per-dialect minute buckets as
the payments (:func:`~detector.buckets.time_bucket`), with its ``where`` values bound. Its
series (the volume, or one per combination of its ``by`` values) read as a gateway whose
every row is a payment, so that the volume rules take them as they are. A backtest reads
them a day at a time, as it reads the payments (:func:`detector.backtest.streamed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from detector.buckets import QUARTER_HOUR, time_bucket
from detector.config import VOLUME_LABEL, Config, VolumeConfig
from detector.db import connect, error_text, table_columns
from detector.model import Counts
from detector.rules import series_name
from detector.source import (
    SchemaError,
    Source,
    SourceError,
    check_at_start,
)
from detector.source_arrays import as_text, read_columns
from detector.source_details import NONE_VALUE
from detector.timeutil import naive_utc

__all__ = [
    "VolumeSource",
    "VolumeTable",
    "open_volumes",
    "volume_config",
    "volume_dimensions",
]


IntArray = npt.NDArray[np.int64]


class VolumeTable:
    """One configured volume: its counting query and its series' names and labels."""

    def __init__(self, name: str, config: VolumeConfig, engine: Engine):
        self.name, self.config, self.engine = name, config, engine
        schema, _, table = config.table.rpartition(".")
        self._timestamp = sa.column(config.timestamp, sa.DateTime())
        self._by: list[sa.ColumnClause[Any]] = [sa.column(column) for column in config.by]
        where: dict[str, sa.ColumnClause[Any]] = {c: sa.column(c) for c in config.where}
        self.table = sa.table(
            table, self._timestamp, *self._by, *where.values(), schema=schema or None
        )
        # The allowed values are bound parameters (``expanding``): no value is SQL text.
        self._conditions: list[ColumnElement[bool]] = [
            where[column].in_(sa.bindparam(f"where_{i}", list(values), expanding=True))
            for i, (column, values) in enumerate(config.where.items())
        ]
        self._queries = {minutes: self._counts_query(minutes) for minutes in (1, QUARTER_HOUR)}
        # The alert labels of each series name read so far.
        self.series: dict[str, dict[str, str]] = {}

    def _counts_query(self, minutes: int) -> sa.Select[Any]:
        bucket = time_bucket(self._timestamp, minutes)
        by: list[ColumnElement[Any]] = [
            as_text(column).label(f"d{i}") for i, column in enumerate(self._by)
        ]
        return (
            sa.select(bucket.label("minute"), sa.func.count().label("rows"), *by)
            .select_from(self.table)
            .where(
                self._timestamp >= sa.bindparam("start", type_=sa.DateTime()),
                self._timestamp < sa.bindparam("end", type_=sa.DateTime()),
                *self._conditions,
            )
            .group_by(bucket, *self._by)
            .order_by(bucket)
        )

    def labels(self, values: tuple[object, ...]) -> dict[str, str]:
        """The alert labels of the series with these ``by`` values (NULL reads "(none)")."""
        return {
            VOLUME_LABEL: self.name,
            **{
                column: NONE_VALUE if value is None else str(value)
                for column, value in zip(self.config.by, values, strict=True)
            },
        }

    def read(
        self, start: datetime, end: datetime, minutes: int = 1
    ) -> tuple[IntArray, IntArray, npt.NDArray[np.object_]]:
        """Of ``[start, end)``, per row of the result: its minute bucket, its rows and its
        series' name (the series' labels are kept in ``series``), read into arrays."""
        params = {"start": naive_utc(start), "end": naive_utc(end)}
        kinds = "ii" + "t" * len(self.config.by)
        try:
            with self.engine.connect() as connection:
                columns = read_columns(connection, self._queries[minutes], params, kinds)
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"volumes.{self.name}: cannot read: {error_text(exc)}") from exc
        bucket, rows = columns.integers[:2]
        if not self.config.by:
            labels = self.labels(())
            name = series_name(self.name, volume_dimensions(labels))
            self.series.setdefault(name, labels)
            return bucket, rows, np.full(bucket.size, name, dtype=object)
        # One name per distinct combination of ``by`` values, not per row.
        codes = np.stack(columns.codes, axis=1)
        distinct, which = np.unique(codes, axis=0, return_inverse=True)
        names = np.empty(len(distinct), dtype=object)
        for i, combination in enumerate(distinct):
            values = tuple(
                None if code < 0 else columns.names[j][code] for j, code in enumerate(combination)
            )
            labels = self.labels(values)
            names[i] = series_name(self.name, volume_dimensions(labels))
            self.series.setdefault(names[i], labels)
        return bucket, rows, names[which.ravel()]

    def check(self) -> None:
        """Fail with the key path if the table or a configured column does not exist."""
        key = f"volumes.{self.name}"
        try:
            present = set(table_columns(self.engine, self.config.table))
        except sa.exc.NoSuchTableError as exc:
            raise SchemaError(f"{key}.table: table {self.config.table!r} does not exist") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"{key}: cannot read its database ({error_text(exc)})") from exc
        wanted = {"timestamp": self.config.timestamp}
        wanted |= {f"where.{column}": column for column in self.config.where}
        wanted |= {f"by[{i}]": column for i, column in enumerate(self.config.by)}
        for path, column in wanted.items():
            if column.lower() not in present:
                raise SchemaError(
                    f"{key}.{path}: column {column!r} not found in table "
                    f"{self.config.table!r} (it has: {', '.join(sorted(present))})"
                )


class VolumeSource(Source):
    """Every configured volume's series as the rows of one source: each series is named
    like a dimension series (``visits (country=BR)``), its labels in :attr:`labels`."""

    def __init__(self, tables: list[VolumeTable]):
        self.tables = tables
        self.labels: dict[str, dict[str, str]] = {}  # series name -> alert labels

    def check(self) -> None:
        for table in self.tables:
            table.check()

    def dispose(self) -> None:
        """Close the connections of every volume's database."""
        for engine in {id(t.engine): t.engine for t in self.tables}.values():
            engine.dispose()

    def read(self, start: datetime, end: datetime, dimensions: tuple[str, ...] = ()) -> Counts:
        return self._counts(start, end, 1)

    def quarter_hourly(self, start: datetime, end: datetime) -> Counts:
        return self._counts(start, end, QUARTER_HOUR)

    def _counts(self, start: datetime, end: datetime, minutes: int) -> Counts:
        reads = [table.read(start, end, minutes) for table in self.tables]
        for table in self.tables:
            self.labels.update(table.series)
        if not any(bucket.size for bucket, _, _ in reads):
            return Counts.empty()
        # Sorted by minute across the tables, as Counts are (``between`` bisects them).
        minute = np.concatenate([bucket for bucket, _, _ in reads]) * minutes
        order = np.argsort(minute, kind="stable")
        count = np.concatenate([rows for _, rows, _ in reads])[order]
        return Counts(
            np.concatenate([names for _, _, names in reads])[order],
            minute[order],
            count,
            np.zeros_like(count),
            count,
        )


def volume_dimensions(labels: Mapping[str, str]) -> dict[str, str]:
    """A volume series' labels but its name: its ``by`` values."""
    return {k: v for k, v in labels.items() if k != VOLUME_LABEL}


def volume_config(config: Config) -> Config:
    """The settings the volumes are read and judged with: those of the payments without
    the gateways' own settings or dimension series. (The rules keep their settings and
    their share of the false-alert budget; only the volume rules run on a volume.)"""
    detection = config.detection
    series = {"series": ()}
    return config.model_copy(
        update={
            "detection": detection.model_copy(
                update={"sla_breach": detection.sla_breach.model_copy(update=series)}
            ),
            "gateways": {},
        }
    )


def open_volumes(
    config: Config, *, strict: bool, query_timeout: timedelta | None = None
) -> VolumeSource | None:
    """The configured volumes (None without any), read-only, one engine per database; a
    missing table or column is always fatal, an unreachable database only if ``strict``."""
    if not config.volumes:
        return None
    engines: dict[str, Engine] = {}
    tables = []
    for name, volume in config.volumes.items():
        url = volume.url or config.source.url
        if url not in engines:
            key = f"volumes.{name}.url" if volume.url else "source.url"
            engines[url] = connect(url, query_timeout=query_timeout, name=key)
        tables.append(VolumeTable(name, volume, engines[url]))
    source = VolumeSource(tables)
    check_at_start(source.check, source.dispose, strict=strict)
    return source
