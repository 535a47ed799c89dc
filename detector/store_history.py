"""The volume rules' weeks of quarter hours, an hour a row, and what the engine learnt of
the payments table (how late its rows arrive, how fast they settle), as the state database
keeps them: read and written on a connection of :class:`~detector.store.StateStore`, inside
its transactions."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from detector import store_tables as tables
from detector.rules.quarter_hours import QuarterHourTable
from detector.stats.seasonal import SLOTS_PER_HOUR

__all__ = ["HistoryUpdate", "load_history", "load_learnt", "save_history", "save_learnt"]

# Meta keys of what the engine learnt of the payments table (how late its rows arrive, how
# fast they settle): "learnt." and the estimate's name, a compressed text each.
_LEARNT_PREFIX = "learnt."


@dataclass(frozen=True)
class HistoryUpdate:
    """The quarter hours to save with a tick: ``table`` from epoch hour ``first_hour`` on
    (what was read since the last save), read from the source ``key`` names; with
    ``ha.partitions``, as ``partition``'s."""

    key: str
    table: QuarterHourTable
    first_hour: int
    partition: int | None = None


@dataclass(frozen=True)
class _Kept:
    """Where one table of weeks is kept: the single leader's (``partition`` None) in
    ``detector_quarter_hours``, or a partition's in ``detector_partition_hours``."""

    partition: int | None

    @property
    def hours(self) -> sa.Table:
        return tables.quarter_hours if self.partition is None else tables.partition_hours

    @property
    def names(self) -> sa.Table:
        return tables.history_gateways if self.partition is None else tables.partition_gateways

    def rows_of(self, table: sa.Table) -> sa.ColumnElement[bool]:
        """The rows of this table of weeks in ``table`` (one of the two above)."""
        return sa.true() if self.partition is None else table.c.partition_no == self.partition

    def columns(self) -> dict[str, int]:
        return {} if self.partition is None else {"partition_no": self.partition}

    def key(self, name: str) -> str:
        """The meta key of ``name`` (history_end, history_source) for this table."""
        return name if self.partition is None else f"{name}-p{self.partition}"


def _history_meta(connection: sa.Connection, kept: _Kept) -> dict[str, str]:
    keys = {kept.key(name): name for name in ("history_end", "history_source")}
    found = connection.execute(
        sa.select(tables.meta.c.key, tables.meta.c.value).where(tables.meta.c.key.in_(list(keys)))
    )
    return {keys[str(key)]: str(value) for key, value in found}


def save_learnt(connection: sa.Connection, learnt: dict[str, str]) -> None:
    """Replace the saved estimates of these names (:meth:`~detector.engine.Engine.learnt`)."""
    keys = [_LEARNT_PREFIX + name for name in learnt]
    connection.execute(tables.meta.delete().where(tables.meta.c.key.in_(keys)))
    connection.execute(
        tables.meta.insert(),
        [{"key": _LEARNT_PREFIX + k, "value": v} for k, v in learnt.items()],
    )


def load_learnt(connection: sa.Connection) -> dict[str, str]:
    """The saved estimates, by name."""
    rows = connection.execute(
        sa.select(tables.meta.c.key, tables.meta.c.value).where(
            tables.meta.c.key.startswith(_LEARNT_PREFIX)
        )
    ).all()
    return {str(key)[len(_LEARNT_PREFIX) :]: str(value) for key, value in rows}


def load_history(
    connection: sa.Connection, key: str, partition: int | None = None
) -> QuarterHourTable | None:
    """The weeks of quarter hours as last saved (of ``partition``, with ``ha.partitions``),
    if read from the source ``key`` names."""
    kept = _Kept(partition)
    meta = _history_meta(connection, kept)
    if meta.get("history_source") != key or "history_end" not in meta:
        return None
    names = connection.execute(
        sa.select(kept.names.c.name).where(kept.rows_of(kept.names)).order_by(kept.names.c.number)
    )
    hours = connection.execute(
        sa.select(kept.hours.c.hour, kept.hours.c.data).where(kept.rows_of(kept.hours))
    )
    return QuarterHourTable.unpack(
        int(meta["history_end"]),
        list(names.scalars()),
        [(int(hour), bytes(data)) for hour, data in hours],
    )


def save_history(connection: sa.Connection, update: HistoryUpdate) -> None:
    """Replace the saved hours (of ``update.partition``) from ``update.first_hour`` (or
    from where the saved weeks end, if earlier) and drop those older than the table's
    weeks."""
    kept = _Kept(update.partition)
    table, hours = update.table, update.table.hours()
    meta = _history_meta(connection, kept)
    first = max(update.first_hour, hours.start)
    numbers: dict[str, int] = {}
    if meta.get("history_source") != update.key or "history_end" not in meta:
        connection.execute(kept.hours.delete().where(kept.rows_of(kept.hours)))
        connection.execute(kept.names.delete().where(kept.rows_of(kept.names)))
        first = hours.start
    else:
        first = max(min(first, int(meta["history_end"]) // SLOTS_PER_HOUR), hours.start)
        known = connection.execute(
            sa.select(kept.names.c.name, kept.names.c.number).where(kept.rows_of(kept.names))
        )
        numbers = {str(name): int(number) for name, number in known}
    connection.execute(
        kept.hours.delete().where(
            kept.rows_of(kept.hours),
            (kept.hours.c.hour < hours.start) | (kept.hours.c.hour >= first),
        )
    )
    before = len(numbers)
    rows = [
        {**kept.columns(), "hour": hour, "data": table.pack_hour(hour, numbers)}
        for hour in range(first, hours.stop)
    ]
    if rows:
        connection.execute(kept.hours.insert(), rows)
    added = [
        {**kept.columns(), "number": n, "name": name} for name, n in numbers.items() if n >= before
    ]
    if added:
        connection.execute(kept.names.insert(), added)
    keys = [kept.key("history_end"), kept.key("history_source")]
    connection.execute(tables.meta.delete().where(tables.meta.c.key.in_(keys)))
    connection.execute(
        tables.meta.insert(),
        [
            {"key": keys[0], "value": str(table.end_slot)},
            {"key": keys[1], "value": update.key},
        ],
    )
