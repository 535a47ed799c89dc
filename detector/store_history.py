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
    (what was read since the last save), read from the source ``key`` names."""

    key: str
    table: QuarterHourTable
    first_hour: int


def _history_meta(connection: sa.Connection) -> dict[str, str]:
    keys = ["history_end", "history_source"]
    found = connection.execute(
        sa.select(tables.meta.c.key, tables.meta.c.value).where(tables.meta.c.key.in_(keys))
    )
    return {str(key): str(value) for key, value in found}


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


def load_history(connection: sa.Connection, key: str) -> QuarterHourTable | None:
    """The weeks of quarter hours as last saved, if read from the source ``key`` names."""
    meta = _history_meta(connection)
    if meta.get("history_source") != key or "history_end" not in meta:
        return None
    names = connection.execute(
        sa.select(tables.history_gateways.c.name).order_by(tables.history_gateways.c.number)
    )
    hours = connection.execute(sa.select(tables.quarter_hours.c.hour, tables.quarter_hours.c.data))
    return QuarterHourTable.unpack(
        int(meta["history_end"]),
        list(names.scalars()),
        [(int(hour), bytes(data)) for hour, data in hours],
    )


def save_history(connection: sa.Connection, update: HistoryUpdate) -> None:
    """Replace the saved hours from ``update.first_hour`` (or from where the saved weeks
    end, if earlier) and drop those older than the table's weeks."""
    table, hours = update.table, update.table.hours()
    meta = _history_meta(connection)
    first = max(update.first_hour, hours.start)
    numbers: dict[str, int] = {}
    if meta.get("history_source") != update.key or "history_end" not in meta:
        connection.execute(tables.quarter_hours.delete())
        connection.execute(tables.history_gateways.delete())
        first = hours.start
    else:
        first = max(min(first, int(meta["history_end"]) // SLOTS_PER_HOUR), hours.start)
        known = connection.execute(
            sa.select(tables.history_gateways.c.name, tables.history_gateways.c.number)
        )
        numbers = {str(name): int(number) for name, number in known}
    connection.execute(
        tables.quarter_hours.delete().where(
            (tables.quarter_hours.c.hour < hours.start) | (tables.quarter_hours.c.hour >= first)
        )
    )
    before = len(numbers)
    rows = [
        {"hour": hour, "data": table.pack_hour(hour, numbers)} for hour in range(first, hours.stop)
    ]
    if rows:
        connection.execute(tables.quarter_hours.insert(), rows)
    added = [{"number": n, "name": name} for name, n in numbers.items() if n >= before]
    if added:
        connection.execute(tables.history_gateways.insert(), added)
    connection.execute(
        tables.meta.delete().where(tables.meta.c.key.in_(["history_end", "history_source"]))
    )
    connection.execute(
        tables.meta.insert(),
        [
            {"key": "history_end", "value": str(table.end_slot)},
            {"key": "history_source", "value": update.key},
        ],
    )
