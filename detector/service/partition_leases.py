"""Partition leases (``ha.partitions``): the gateways split into partitions, each replica
holding the leases of a fair share of them, so that several replicas share the ticks.

The leases are rows of the leader lease's table (:mod:`detector.service.lease`):
``partition-K`` for each partition, held by one replica until its ``expires_at``, and one
``replica-…`` row per live replica (its membership, renewed like its leases) so that a
replica holding nothing yet is counted when the shares are computed.

At each balancing pass (every tick) a replica renews its membership and its partitions,
then reads every row and, with R live replicas and N partitions:

- gives up what it holds beyond ``ceil(N / R)``; and, while some live replica holds fewer
  than ``floor(N / R)``, the replica holding the most (ties: the smallest name) gives up
  one, so a replica that joins gets its share;
- takes free partitions (expired, released or never taken) up to ``ceil(N / R)``, but only
  while no live replica holds fewer than it does: the replicas with the fewest take first,
  so a partition given up is not taken back by the one that gave it.

Each take is the lease's conditional ``UPDATE ... WHERE expires_at <= now`` (or the
``INSERT`` of a first row), which the database applies atomically: two replicas never hold
one partition. A dead replica's partitions are free once their lease expires, and taken by
the others at their next tick: within the TTL plus one interval.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from detector.db import create_tables
from detector.partitions import GLOBAL_PARTITION
from detector.service.lease import lease_table, metadata, whole_seconds
from detector.store import StoreError, store_errors

__all__ = ["PartitionLeases", "partition_name"]

# The lease's log lines are the daemon's: they name the daemon's logger, as operators filter.
log = logging.getLogger("detector.service.daemon")

_RELEASED = datetime(1970, 1, 1)


def partition_name(partition: int) -> str:
    """The lease row of a partition: ``partition-3``."""
    return f"partition-{partition}"


def _member_name(holder: str) -> str:
    # Replica ids may be 200 characters; the row name holds 64.
    return "replica-" + hashlib.blake2b(holder.encode(), digest_size=16).hexdigest()


def fair_shares(partitions: int, replicas: int) -> tuple[int, int]:
    """The fewest and the most partitions a replica should hold.

    >>> fair_shares(4, 3), fair_shares(3, 3), fair_shares(3, 1)
    ((1, 2), (1, 1), (3, 3))
    """
    return partitions // replicas, math.ceil(partitions / replicas)


class PartitionLeases:
    """This replica's leases on ``count`` partitions, each held for ``ttl`` at a time."""

    def __init__(
        self,
        engine: Engine,
        holder: str,
        ttl: timedelta,
        count: int,
    ):
        self.engine = engine
        self.holder = holder
        self.ttl = ttl
        self.count = count
        # What this replica holds, by its last successful renewal, and until when by its
        # own clock; the holder of every partition as last read (None: free).
        self.held: frozenset[int] = frozenset()
        self.until = datetime.min.replace(tzinfo=UTC)
        self.assignment: dict[int, str | None] = dict.fromkeys(range(count))
        # The partitions the last balancing pass took (expired or free ones): another
        # replica may have ticked them since this one last did.
        self.taken: frozenset[int] = frozenset()
        self.error: str | None = None
        self._lock = threading.Lock()
        self._member = _member_name(holder)
        with store_errors("create the lease table"):
            create_tables(engine, metadata)

    def holding(self, now: datetime) -> frozenset[int]:
        """The partitions held at ``now`` by this replica's clock: none once the last
        renewal is a TTL old (a renewal stuck on a frozen database holds nothing)."""
        return self.held if now < self.until else frozenset()

    def holds_global(self, now: datetime) -> bool:
        """Whether this replica does the work of no gateway (it holds partition 0)."""
        return GLOBAL_PARTITION in self.holding(now)

    # --- balancing --------------------------------------------------------------------------

    def balance(self, now: datetime) -> frozenset[int]:
        """Renew, give up the surplus and take a fair share; the partitions held after it."""
        with self._lock:
            try:
                held = self._balance(now)
            except StoreError as exc:
                log.error("%s; ticking no partition until it can be renewed", exc)
                self.error = str(exc)
                return self.holding(now)
            self.error = None
            self._hold(held, now)
            return held

    def renew(self, now: datetime) -> None:
        """Between ticks: keep the membership and the partitions held, change nothing."""
        with self._lock:
            try:
                with store_errors("renew the partition leases"), self.engine.begin() as conn:
                    self._renew_member(conn, now)
                    held = self.held if self.fence(conn, now, self.held) else frozenset()
            except StoreError as exc:
                log.error("%s", exc)
                self.error = str(exc)
                return
            self._hold(held, now)

    def _hold(self, held: frozenset[int], now: datetime) -> None:
        lost = self.held - held
        if lost:
            log.warning("no longer holds partition(s) %s", _listed(lost))
        gained = held - self.held
        if gained:
            log.info("took partition(s) %s; holds %s", _listed(gained), _listed(held))
        self.held = held
        self.until = now + self.ttl

    def _balance(self, now: datetime) -> frozenset[int]:
        self.taken = frozenset()
        live, assignment = self._read(now)
        mine = {p for p, holder in assignment.items() if holder == self.holder}
        counts = dict.fromkeys(live, 0)
        for holder in assignment.values():
            if holder in counts:
                counts[holder] += 1
        fewest, most = fair_shares(self.count, len(live))
        surplus = self._surplus(mine, counts, fewest, most)
        if surplus:
            self._release(surplus)
            mine -= set(surplus)
            assignment.update(dict.fromkeys(surplus))
            counts[self.holder] = len(mine)
        if len(mine) < most and len(mine) <= min(counts.values()):
            # Start at a place of this replica's own, so replicas taking at the same time
            # rarely race for the same row.
            free = [p for p in range(self.count) if assignment[p] is None]
            start = int(self._member[-8:], 16) % max(1, len(free))
            for partition in free[start:] + free[:start]:
                if len(mine) >= most:
                    break
                if self._take(partition, now):
                    mine.add(partition)
                    assignment[partition] = self.holder
                    self.taken |= {partition}
        self.assignment = assignment
        return frozenset(mine)

    def _read(self, now: datetime) -> tuple[set[str], dict[int, str | None]]:
        """Renew this replica's rows, then read the live replicas and who holds each
        partition (None: free)."""
        with store_errors("balance the partition leases"), self.engine.begin() as connection:
            self._renew_member(connection, now)
            self._renew_all(connection, now)
            rows = connection.execute(
                sa.select(lease_table.c.name, lease_table.c.holder).where(
                    lease_table.c.expires_at > whole_seconds(now)
                )
            ).all()
        live = {row.holder for row in rows if row.name.startswith("replica-")} | {self.holder}
        assignment: dict[int, str | None] = dict.fromkeys(range(self.count))
        for row in rows:
            partition = row.name.removeprefix("partition-")
            if partition.isdigit() and int(partition) < self.count:
                assignment[int(partition)] = row.holder
        return live, assignment

    def _surplus(self, mine: set[int], counts: dict[str, int], fewest: int, most: int) -> list[int]:
        """What this replica gives up: beyond ``most``; or one partition, if it holds the
        most of the replicas above ``fewest`` while another holds fewer than that."""
        if len(mine) > most:
            return sorted(mine, reverse=True)[: len(mine) - most]
        if len(mine) > fewest and min(counts.values()) < fewest:
            richest = min(counts, key=lambda holder: (-counts[holder], holder))
            if richest == self.holder:
                return [max(mine)]
        return []

    def _renew_member(self, connection: sa.Connection, now: datetime) -> None:
        expires = whole_seconds(now + self.ttl)
        renewed = connection.execute(
            lease_table.update()
            .where(lease_table.c.name == self._member)
            .values(holder=self.holder, expires_at=expires)
        )
        if renewed.rowcount == 0:
            connection.execute(
                lease_table.insert().values(
                    name=self._member, holder=self.holder, expires_at=expires, term=1
                )
            )

    def _renew_all(self, connection: sa.Connection, now: datetime) -> None:
        """Renew every partition this replica holds (those it held past expiry are lost)."""
        connection.execute(
            lease_table.update()
            .where(
                lease_table.c.name.like("partition-%"),
                lease_table.c.holder == self.holder,
                lease_table.c.expires_at > whole_seconds(now),
            )
            .values(expires_at=whole_seconds(now + self.ttl))
        )

    def _take(self, partition: int, now: datetime) -> bool:
        expires = whole_seconds(now + self.ttl)
        name = partition_name(partition)
        with store_errors("take a partition lease"):
            with self.engine.begin() as connection:
                taken = connection.execute(
                    lease_table.update()
                    .where(
                        lease_table.c.name == name,
                        lease_table.c.expires_at <= whole_seconds(now),
                    )
                    .values(holder=self.holder, expires_at=expires, term=lease_table.c.term + 1)
                )
                if taken.rowcount == 1:
                    return True
                exists = connection.execute(
                    sa.select(lease_table.c.name).where(lease_table.c.name == name)
                ).first()
            if exists is not None:
                return False
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        lease_table.insert().values(
                            name=name, holder=self.holder, expires_at=expires, term=1
                        )
                    )
            except sa.exc.IntegrityError:
                return False  # another replica inserted it first
        return True

    def _release(self, partitions: Iterable[int]) -> None:
        names = [partition_name(p) for p in partitions]
        with store_errors("release partition leases"), self.engine.begin() as connection:
            connection.execute(
                lease_table.update()
                .where(lease_table.c.name.in_(names), lease_table.c.holder == self.holder)
                .values(expires_at=_RELEASED)
            )
        log.info("gave up partition(s) %s for another replica to take", ", ".join(names))

    # --- the tick's commit ------------------------------------------------------------------

    def fence(self, connection: sa.Connection, now: datetime, held: frozenset[int]) -> bool:
        """Renew ``held`` inside the caller's transaction; False if any of them is no longer
        this replica's.

        The renewal locks the lease rows until that transaction ends, so no replica can
        take one of them over between this check and the caller's commit.
        """
        if not held:
            return True
        renewed = connection.execute(
            lease_table.update()
            .where(
                lease_table.c.name.in_([partition_name(p) for p in sorted(held)]),
                lease_table.c.holder == self.holder,
                lease_table.c.expires_at > whole_seconds(now),
            )
            .values(expires_at=whole_seconds(now + self.ttl))
        )
        return bool(renewed.rowcount == len(held))

    def lost(self) -> None:
        """A tick's save was fenced out: hold nothing until the next balancing pass."""
        with self._lock:
            self.held = frozenset()

    def release(self) -> None:
        """Give every partition and the membership up (on shutdown), so that the others
        take over at their next tick instead of after the TTL."""
        with self._lock:
            names = [partition_name(p) for p in self.held] + [self._member]
            try:
                with store_errors("release partition leases"), self.engine.begin() as conn:
                    conn.execute(
                        lease_table.update()
                        .where(lease_table.c.name.in_(names), lease_table.c.holder == self.holder)
                        .values(expires_at=_RELEASED)
                    )
            except StoreError as exc:
                log.warning("%s; the others take over when they expire", exc)
                return
            if self.held:
                log.info("released partition(s) %s", _listed(self.held))
            self.held = frozenset()


def _listed(partitions: Iterable[int]) -> str:
    return ", ".join(str(p) for p in sorted(partitions)) or "none"
