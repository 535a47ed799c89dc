"""Whether the payments table can be read as alerts.yaml maps it: what the timestamp column
holds. Pure judgement of what :class:`~detector.source.SqlSource` fetched (the column's
declared type and a few of its newest values); no SQL here.

A timestamp the database cannot turn into minutes is the worst kind of mistake: every time
range the detector reads comes back empty and every gateway looks healthy. So the column is
judged at start-up, and the message says what to run to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from detector.config import Config

__all__ = ["SQLITE_TIMESTAMP", "data_warnings", "timestamp_problem"]

# What SQLite must hold: UTC text that sorts as time sorts (SQLAlchemy writes this form).
SQLITE_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$")
# ISO 8601 as many writers produce it: a T, a Z or an offset (+01:00).
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


def timestamp_problem(
    dialect: str, table: str, column: str, declared: Any, sample: Sequence[Any]
) -> str | None:
    """What is wrong with the timestamp column ``column`` of ``table``, and what to do about
    it, or None if the detector can read it.

    ``declared``: the column's type as the database reports it; ``sample``: a few of its
    newest non-null values as the driver returns them (SQLite only; elsewhere the type
    decides).

    >>> timestamp_problem("sqlite", "payments", "created_at", None, ["2026-12-04 21:17:45"])
    >>> print(timestamp_problem("sqlite", "payments", "created_at", None,
    ...                         ["2026-12-04T21:17:45Z"]))  # doctest: +ELLIPSIS
    column 'created_at' holds ISO text such as '2026-12-04T21:17:45Z'...
    """
    if dialect != "sqlite":
        if isinstance(declared, sa.DateTime):
            return None
        return (
            f"column {column!r} is {declared}, not a timestamp: the database cannot compute "
            f"its minutes (payments would go uncounted). {_convert_column(dialect, table, column)}"
        )
    for value in sample:
        if isinstance(value, int | float):
            return (
                f"column {column!r} holds numbers such as {value!r}, but on SQLite the "
                "detector reads UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'; if they are seconds "
                "since 1970, convert them: "
                + _update(table, column, f"strftime('%Y-%m-%d %H:%M:%f', {column}, 'unixepoch')")
            )
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        if SQLITE_TIMESTAMP.match(text):
            continue
        if _ISO.match(text):
            shifted = (
                " (and its offset puts rows at their local minute, not UTC's)"
                if _offset(text)
                else ""
            )
            return (
                f"column {column!r} holds ISO text such as {text!r}, which SQLite compares "
                f"as text: every time range the detector reads misses these rows{shifted}. "
                "Store UTC as 'YYYY-MM-DD HH:MM:SS[.ffffff]' (what SQLAlchemy writes); to "
                "convert (offsets to UTC): "
                + _update(table, column, f"strftime('%Y-%m-%d %H:%M:%f', {column})")
            )
        return (
            f"column {column!r} holds {text[:40]!r}, which is not a time; on SQLite the "
            "detector reads UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'"
        )
    return None


def _update(table: str, column: str, expression: str) -> str:
    """The statement a user runs to rewrite the column (advice printed, never executed)."""
    return " ".join(("UPDATE", table, "SET", column, "=", expression))


def _offset(text: str) -> bool:
    """Whether ISO text ends in a UTC offset such as ``+01:00`` (not ``Z``)."""
    return re.search(r"[+-]\d{2}:?\d{2}$", text) is not None


def _convert_column(dialect: str, table: str, column: str) -> str:
    if dialect == "postgresql":
        return (
            f"Convert it: ALTER TABLE {table} ALTER COLUMN {column} TYPE timestamptz "
            f"USING {column}::timestamptz (text without an offset is read as UTC)"
        )
    if dialect in ("mysql", "mariadb"):
        return (
            f"Convert it to DATETIME(6) holding UTC: ALTER TABLE {table} MODIFY {column} "
            "DATETIME(6) (values must first read 'YYYY-MM-DD HH:MM:SS')"
        )
    if dialect == "duckdb":
        return (
            f"Convert it: ALTER TABLE {table} ALTER {column} TYPE TIMESTAMPTZ USING "
            f"CAST({column} AS TIMESTAMPTZ) (after SET TimeZone = 'UTC', text without an "
            "offset is read as UTC)"
        )
    return "Give it a timestamp type holding UTC."


def data_warnings(
    config: Config,
    statuses: Sequence[tuple[Any, int]],
    gateways: Sequence[tuple[Any, int]],
    span: str,
) -> list[str]:
    """What alerts.yaml names that the data never shows, and the reverse: a status value
    listed under none of ``source.statuses`` (its rows are skipped), a failed or succeeded
    status that never appears, a gateway under ``gateways:`` that no payment has (names are compared
    exactly: ``Adyen`` is not ``adyen``). ``statuses``/``gateways``: the values read over
    ``span`` (e.g. "the last 7 days") with their rows.

    >>> from detector.config import parse_config
    >>> config = parse_config({"gateways": {"Adyen": {}}}, env={})
    >>> data_warnings(config, [("succeeded", 9), ("failed", 1)], [("adyen", 10)], "the last 7 days")
    ["gateways.Adyen: no payment of the last 7 days has gateway 'Adyen'; did you mean 'adyen'?"]
    """
    if not statuses and not gateways:
        return [f"source.table: no payments in {span}; status values and gateway names not checked"]
    warnings = []
    listed = config.source.statuses
    seen_statuses = {str(value) for value, _ in statuses if value is not None}
    kinds = ("failed", "succeeded", "pending", "declined")
    for value, rows in statuses:
        if value is not None and not any(str(value) in getattr(listed, kind) for kind in kinds):
            warnings.append(
                f"source.statuses: status {str(value)!r} ({rows} rows in {span}) is listed "
                "under none of failed, succeeded, pending, declined: its rows are skipped"
            )
    every = {status for kind in kinds for status in getattr(listed, kind)}
    # Only the final outcomes: a week without a pending or declined payment is ordinary.
    for kind in ("failed", "succeeded"):
        for status in getattr(listed, kind):
            if status not in seen_statuses:
                warnings.append(
                    f"source.statuses.{kind}: no payment of {span} has status {status!r}"
                    + _did_you_mean(status, seen_statuses - every)
                )
    names = {str(value) for value, _ in gateways if value is not None}
    for gateway in config.gateways:
        if gateway not in names:
            warnings.append(
                f"gateways.{gateway}: no payment of {span} has gateway {gateway!r}"
                + _did_you_mean(gateway, names)
            )
    return warnings


def _did_you_mean(name: str, present: set[str]) -> str:
    """``; did you mean 'adyen'?`` for a value differing only in case or blanks."""
    key = name.strip().lower()
    close = sorted(value for value in present if value.strip().lower() == key)
    return f"; did you mean {close[0]!r}?" if close else ""
