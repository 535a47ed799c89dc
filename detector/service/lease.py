"""The leader lease: one row in the state database that lets exactly one replica notify.

A replica holds the lease while ``expires_at`` is in the future and renews it well before
then. Taking it over is a single conditional ``UPDATE ... WHERE holder = me OR expires_at <
now`` (or the ``INSERT`` of the first row), which the database applies atomically, so two
replicas can never both believe they hold it. Replicas compare their own clocks with the
stored expiry: keep them NTP-synchronised to well within the TTL.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from detector.db import create_tables
from detector.store import store_errors
from detector.timeutil import iso_z, naive_utc

__all__ = ["Lease", "lease_problem", "lease_table", "whole_seconds"]

log = logging.getLogger(__name__)

metadata = sa.MetaData()

lease_table = sa.Table(
    "detector_lease",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    # Incremented on every change of holder, so logs can tell leadership terms apart.
    sa.Column("term", sa.Integer, nullable=False),
)


def whole_seconds(moment: datetime) -> datetime:
    # MariaDB keeps whole seconds; truncating everywhere keeps the dialects identical.
    return naive_utc(moment).replace(microsecond=0)


class Lease:
    """A named lease held by ``holder`` for ``ttl`` at a time.

    >>> from datetime import datetime, timedelta, UTC
    >>> engine = sa.create_engine("sqlite://")
    >>> t0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    >>> a = Lease(engine, "a", timedelta(seconds=30))
    >>> b = Lease(engine, "b", timedelta(seconds=30))
    >>> a.acquire(t0), b.acquire(t0), b.acquire(t0 + timedelta(seconds=31))
    (True, False, True)
    >>> engine.dispose()
    """

    def __init__(self, engine: Engine, holder: str, ttl: timedelta, name: str = "leader"):
        self.engine = engine
        self.holder = holder
        self.ttl = ttl
        self.name = name
        self.term: int | None = None  # the term this replica holds, if any
        with store_errors("create the lease table"):
            create_tables(engine, metadata)

    def acquire(self, now: datetime) -> bool:
        """Take or renew the lease until ``now + ttl``; False while another replica holds it."""
        expires = whole_seconds(now + self.ttl)
        with store_errors("renew the leader lease"), self.engine.begin() as connection:
            renewed = connection.execute(
                lease_table.update()
                .where(lease_table.c.name == self.name, lease_table.c.holder == self.holder)
                .values(expires_at=expires)
            )
            if renewed.rowcount == 1:
                return True
            taken = connection.execute(
                lease_table.update()
                .where(
                    lease_table.c.name == self.name, lease_table.c.expires_at <= whole_seconds(now)
                )
                .values(holder=self.holder, expires_at=expires, term=lease_table.c.term + 1)
            )
            if taken.rowcount == 1:
                self.term = self._current_term(connection)
                return True
        return self._insert_first(expires)

    def fence(self, connection: sa.Connection, now: datetime) -> bool:
        """Renew inside the caller's transaction; False if another replica took the lease.

        The renewal locks the lease row until that transaction ends, so no replica can
        take over between this check and the caller's commit.
        """
        renewed = connection.execute(
            lease_table.update()
            .where(lease_table.c.name == self.name, lease_table.c.holder == self.holder)
            .values(expires_at=whole_seconds(now + self.ttl))
        )
        return bool(renewed.rowcount == 1)

    def _current_term(self, connection: sa.Connection) -> int:
        value = connection.execute(
            sa.select(lease_table.c.term).where(lease_table.c.name == self.name)
        ).scalar_one()
        return int(value)

    def _insert_first(self, expires: datetime) -> bool:
        with store_errors("take the leader lease"):
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        lease_table.insert().values(
                            name=self.name, holder=self.holder, expires_at=expires, term=1
                        )
                    )
            except sa.exc.IntegrityError:
                return False  # the row exists and someone else holds it
        self.term = 1
        return True

    def release(self) -> None:
        """Give the lease up now, so a follower takes over at its next attempt."""
        with store_errors("release the leader lease"), self.engine.begin() as connection:
            connection.execute(
                lease_table.update()
                .where(lease_table.c.name == self.name, lease_table.c.holder == self.holder)
                .values(expires_at=datetime(1970, 1, 1))
            )
        self.term = None

    def current_holder(self, now: datetime) -> str | None:
        """Who holds the lease at ``now``, if anyone."""
        with store_errors("read the leader lease"), self.engine.connect() as connection:
            row = connection.execute(
                sa.select(lease_table.c.holder, lease_table.c.expires_at).where(
                    lease_table.c.name == self.name
                )
            ).first()
        if row is None or row.expires_at <= whole_seconds(now):
            return None
        return str(row.holder)


def lease_problem(
    now: datetime,
    *,
    leading: bool,
    until: datetime,
    renewing_since: datetime | None,
    error: str | None,
    other: str | None,
) -> str | None:
    """Why nobody may be notifying, as a replica can tell from its own side; None if it leads
    or another replica does.

    ``leading``/``until``: this replica took the lease and, by its own clock, holds it until
    then (``now + ttl`` of its last successful renewal); ``renewing_since``: a renewal in
    flight; ``error``: why its last attempt to take or renew failed; ``other``: the replica
    it last read as the holder (None: nobody).

    >>> from datetime import UTC
    >>> t0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    >>> print(lease_problem(t0, leading=False, until=t0, renewing_since=None,
    ...                     error="read-only", other=None))
    cannot take the leader lease: read-only; no other replica holds it, so nobody notifies
    >>> lease_problem(t0, leading=False, until=t0, renewing_since=None, error="...", other="b")
    """
    if leading and now >= until:
        waiting = (
            f"; the renewal started at {iso_z(renewing_since)} has not returned"
            if renewing_since
            else ""
        )
        return (
            f"this replica's leader lease lapsed at {iso_z(until)} without a renewal{waiting}: "
            "it notifies nothing, and no other leader is known"
        )
    if not leading and error and other is None:
        return (
            f"cannot take the leader lease: {error}; no other replica holds it, so nobody notifies"
        )
    return None
