"""A tick's follow-up reads of the payments table about one gateway, through a
:class:`~detector.source.SqlSource`'s table, columns and conditions: the evidence of an
alert (top error codes, recent failed payment ids), the breakdown per dimension values, the
amounts per currency, and why a read's skipped rows were skipped.

Each query is aggregated in the database with bound values, as the counts are; a failure is
logged and reads as no detail, never failing the tick.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from detector.db import error_text

if TYPE_CHECKING:
    from detector.source import SqlSource

__all__ = [
    "NONE_VALUE",
    "Amounts",
    "Breakdown",
    "amounts",
    "breakdown",
    "count_where",
    "evidence",
    "skipped_rows",
    "skipped_text",
]

# These reads' log lines are the payments source's: they name its logger, as operators filter.
log = logging.getLogger("detector.source")

IntArray = npt.NDArray[np.int64]

# How a NULL error code or dimension value reads.
NONE_VALUE = "(none)"


@dataclass(frozen=True)
class Breakdown:
    """A gateway's final and failed payments per combination of dimension values."""

    dimensions: tuple[str, ...]  # label names, in the order of ``values``' columns
    values: npt.NDArray[np.object_]  # (combinations, dimensions); NULL reads "(none)"
    payments: IntArray  # final payments (failed + declined + succeeded)
    failures: IntArray  # declines excluded

    def within(self, series: Mapping[str, str]) -> Breakdown:
        """Only the combinations with these values, over the other dimensions.

        >>> b = Breakdown(("method", "country"), np.array([["card", "BR"], ["wallet", "BR"]],
        ...               dtype=object), np.array([10, 5]), np.array([3, 0]))
        >>> b.within({"method": "card"}).values.tolist()
        [['BR']]
        """
        keep = np.ones(len(self.payments), dtype=bool)
        for label, value in series.items():
            keep &= self.values[:, self.dimensions.index(label)] == value
        rest = [i for i, label in enumerate(self.dimensions) if label not in series]
        return Breakdown(
            tuple(self.dimensions[i] for i in rest),
            self.values[keep][:, rest],
            self.payments[keep],
            self.failures[keep],
        )


@dataclass(frozen=True)
class Amounts:
    """A gateway's payments and their money per currency, over a span of time."""

    currency: npt.NDArray[np.object_]  # "" without source.columns.currency; NULL reads "(none)"
    failures: npt.NDArray[np.float64]  # failed payments, declines excluded
    failed_amount: npt.NDArray[np.float64]  # their amounts summed
    payments: npt.NDArray[np.float64]  # final payments (failed + declined + succeeded)
    amount: npt.NDArray[np.float64]  # their amounts summed


def count_where(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """The rows of a group for which ``condition`` holds."""
    return sa.func.sum(sa.case((condition, 1), else_=0))


def skipped_rows(
    source: SqlSource, start: datetime, end: datetime
) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str, int], ...]]:
    """Why the rows of ``[start, end)`` that a read skipped were skipped: each status
    value listed under none of ``source.statuses`` with its rows, then the rows with a
    null gateway (and a listed status); most rows first. And the status values per
    gateway: (gateway, reason, rows), most rows first within each gateway."""
    statuses = source.config.statuses
    listed = statuses.failed + statuses.succeeded + statuses.pending + statuses.declined
    unlisted = sa.or_(source._status.is_(None), source._status.not_in(listed))
    query = (
        sa.select(
            source._gateway.label("gateway"),
            source._stored_status.label("status"),
            sa.func.count().label("rows"),
            count_where(unlisted).label("unlisted"),
        )
        .select_from(source.table)
        .where(source._in_window(), sa.or_(source._gateway.is_(None), unlisted))
        # Named by the value stored, also where the status counted is the one a row
        # had at as_of (a row not settled then counts as pending, never as skipped).
        .group_by(source._gateway, source._stored_status)
    )
    found = _rows(source, query, source._params(start, end), "the skipped status values")
    if found is None:
        return (), ()
    # Whether a status is listed is the database's answer (its collation decides).
    per_gateway = [
        (str(row.gateway), f"status {_status_text(row.status)}", int(row.unlisted))
        for row in found
        if row.unlisted and row.gateway is not None
    ]
    totals: dict[str, int] = {}
    for row in found:
        if row.unlisted:
            reason = f"status {_status_text(row.status)}"
            totals[reason] = totals.get(reason, 0) + int(row.unlisted)
    reasons = list(totals.items())
    null_gateway = sum(int(row.rows) - int(row.unlisted or 0) for row in found)
    if null_gateway:
        reasons.append(("null gateway", null_gateway))
    return (
        tuple(sorted(reasons, key=lambda reason: (-reason[1], reason[0]))),
        tuple(sorted(per_gateway, key=lambda value: (value[0], -value[2], value[1]))),
    )


def evidence(
    source: SqlSource,
    gateway: str,
    start: datetime,
    end: datetime,
    limit: int = 5,
    series: Mapping[str, str] | None = None,
) -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
    """The gateway's top error codes and most recent failed payment ids in ``[start, end)``,
    declines left out (see :meth:`detector.source.Source.evidence`)."""
    failed = sa.and_(
        source._in_window(),
        source._gateway == sa.bindparam("gateway"),
        source._technical_failure(),
        *_in_series(source, series or {}),
    )
    params = source._params(start, end, gateway=gateway)
    ids_query = (
        sa.select(source._id)
        .select_from(source.table)
        .where(failed)
        # The id breaks ties: a parallel engine (DuckDB) returns tied rows in any order,
        # and a replay must name the same payments as the live tick did.
        .order_by(source._timestamp.desc(), source._id.desc())
        .limit(limit)
    )
    try:
        with source.engine.connect() as connection:
            codes: tuple[tuple[str, int], ...] = ()
            if source._error_code is not None:
                count = sa.func.count().label("n")
                codes_query = (
                    sa.select(source._error_code, count)
                    .select_from(source.table)
                    .where(failed)
                    .group_by(source._error_code)
                    .order_by(count.desc(), source._error_code)
                    .limit(limit)
                )
                codes = tuple(
                    (str(code) if code is not None else NONE_VALUE, int(n))
                    for code, n in connection.execute(codes_query, params)
                )
            ids = tuple(str(row[0]) for row in connection.execute(ids_query, params))
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not read evidence for %s: %s", gateway, error_text(exc))
        return (), ()
    return codes, ids


def _in_series(source: SqlSource, series: Mapping[str, str]) -> list[ColumnElement[bool]]:
    """Conditions on the dimension columns; the values are bound, "(none)" is NULL."""
    return [
        source._dimensions[label].is_(None)
        if value == NONE_VALUE
        else source._dimensions[label] == sa.bindparam(f"series_{i}", value)
        for i, (label, value) in enumerate(sorted(series.items()))
    ]


def breakdown(source: SqlSource, gateway: str, start: datetime, end: datetime) -> Breakdown | None:
    """The gateway's payments per combination of the configured dimensions; None without
    dimensions or where they could not be read."""
    if not source._dimensions:
        return None
    statuses = source.config.statuses
    final = statuses.failed + statuses.succeeded + statuses.declined
    columns = list(source._dimensions.values())
    query = (
        sa.select(
            *(column.label(f"d{i}") for i, column in enumerate(columns)),
            count_where(source._status.in_(final)).label("payments"),
            count_where(source._technical_failure()).label("failed"),
        )
        .select_from(source.table)
        .where(source._in_window(), source._gateway == sa.bindparam("gateway"))
        .group_by(*columns)
    )
    params = source._params(start, end, gateway=gateway)
    rows = _rows(source, query, params, f"the dimensions of {gateway}")
    if rows is None:
        return None
    values = np.array(
        [[NONE_VALUE if v is None else str(v) for v in row[: len(columns)]] for row in rows],
        dtype=object,
    ).reshape(len(rows), len(columns))
    return Breakdown(
        tuple(source._dimensions),
        values,
        np.array([row.payments or 0 for row in rows], dtype=np.int64),
        np.array([row.failed or 0 for row in rows], dtype=np.int64),
    )


def amounts(
    source: SqlSource,
    gateway: str,
    start: datetime,
    end: datetime,
    series: Mapping[str, str] | None = None,
) -> Amounts | None:
    """The gateway's payments and money per currency (see
    :meth:`detector.source.Source.amounts`)."""
    if source._amount is None:
        return None
    statuses = source.config.statuses
    final = source._status.in_(statuses.failed + statuses.succeeded + statuses.declined)
    failed = source._technical_failure()
    currency = source._currency if source._currency is not None else sa.literal("")
    query = (
        sa.select(
            currency.label("currency"),
            count_where(failed).label("failures"),
            sa.func.sum(sa.case((failed, source._amount), else_=0)).label("failed_amount"),
            count_where(final).label("payments"),
            sa.func.sum(sa.case((final, source._amount), else_=0)).label("amount"),
        )
        .select_from(source.table)
        .where(
            source._in_window(),
            source._gateway == sa.bindparam("gateway"),
            *_in_series(source, series or {}),
        )
        .group_by(*([source._currency] if source._currency is not None else []))
    )
    params = source._params(start, end, gateway=gateway)
    rows = _rows(source, query, params, f"the amounts of {gateway}")
    if rows is None:
        return None
    figures = np.array([[value or 0 for value in row[1:]] for row in rows], dtype=np.float64)
    failures, failed_amount, payments, amount = figures.reshape(len(rows), 4).T
    return Amounts(
        np.array([NONE_VALUE if r.currency is None else str(r.currency) for r in rows], object),
        failures,
        failed_amount,
        payments,
        amount,
    )


def _status_text(status: object) -> str:
    return "NULL" if status is None else repr(str(status))


def skipped_text(skipped: tuple[tuple[str, int], ...]) -> str:
    """The reasons rows were skipped, for a log line or ``detector check``.

    >>> skipped_text((("status 'TIMEOUT'", 40), ("null gateway", 3)))
    "status 'TIMEOUT': 40 rows, null gateway: 3 rows"
    """
    return ", ".join(f"{reason}: {rows} rows" for reason, rows in skipped)


def _rows(
    source: SqlSource, query: sa.Executable, params: dict[str, Any], what: str
) -> Sequence[Any] | None:
    """The rows of a follow-up query, or None (logged as "could not read WHAT") when the
    database fails it: these reads add detail to an alert and never fail a tick."""
    try:
        with source.engine.connect() as connection:
            return connection.execute(query, params).all()
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not read %s: %s", what, error_text(exc))
        return None
