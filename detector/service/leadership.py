"""This replica's hold on the leader lease (:mod:`detector.service.lease`), as far as it
knows: whether it leads and until when, who else does, and why taking the lease failed.

Only the leader evaluates-and-notifies; the daemon asks :meth:`Leadership.hold` before each
tick and :meth:`Leadership.leading` before each delivery pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Gauge

from detector.service.lease import Lease, lease_problem
from detector.store import StoreError

__all__ = ["Leadership"]

# The lease's log lines are the daemon's: they name the daemon's logger, as operators filter.
log = logging.getLogger("detector.service.daemon")


class Leadership:
    """Takes and renews ``lease``; ``on_taken`` runs when this replica becomes the leader
    (before it acts as one), and ``gauge`` shows whether it leads."""

    def __init__(
        self,
        lease: Lease | None,
        clock: Callable[[], datetime],
        gauge: Gauge,
        on_taken: Callable[[], None],
    ):
        self.lease = lease
        self.clock = clock
        self._gauge = gauge
        self._on_taken = on_taken
        # Without a lease (tests, one-off use) this process is always the one that notifies.
        self.leader = lease is None
        self._lock = threading.Lock()
        self._until = datetime.max.replace(tzinfo=UTC)
        # Why the last attempt to take or renew the lease failed, if it did; who else holds
        # it as last read (None: nobody, or unreadable); when the renewal in flight began.
        self._error: str | None = None
        self._other_leader: str | None = None
        self._renewing_since: datetime | None = None
        gauge.set(1 if self.leader else 0)

    def leading(self) -> bool:
        """Whether this replica's clock says the lease it last renewed has not expired: a
        renewal stuck on a frozen state connection does not keep it leading."""
        return self.leader and self.clock() < self._until

    @property
    def role(self) -> str:
        """``leader`` while :meth:`leading`, else ``follower``."""
        return "leader" if self.leading() else "follower"

    @property
    def holder(self) -> str | None:
        """The replica leading as far as this one knows (None: nobody, or unknown)."""
        if self.lease is None:
            return None
        return self.lease.holder if self.role == "leader" else self._other_leader

    def problem(self) -> str | None:
        """Why nobody may be notifying, as far as this replica can tell (None: fine)."""
        if self.lease is None:
            return None
        return lease_problem(
            self.clock(),
            leading=self.leader,
            until=self._until,
            renewing_since=self._renewing_since,
            error=self._error,
            other=self._other_leader,
        )

    def hold(self, now: datetime, *, renew_only: bool = False) -> bool:
        """Take or renew the lease; a replica that just took over runs ``on_taken``.

        Only the tick thread takes the lease (``renew_only`` is for the renewal job), so the
        engine's state is never swapped under a tick in flight.
        """
        if self.lease is None:
            return True
        with self._lock:
            if renew_only and not self.leader:
                return False
            self._renewing_since = now
            try:
                held = self.lease.acquire(now)
                self._error = None
            except StoreError as exc:
                log.error("%s; acting as a follower until it can be renewed", exc)
                held = False
                self._error = str(exc)
            finally:
                self._renewing_since = None
            self._other_leader = None if held else self._read_other_leader(now)
            if held and not self.leader:
                self._on_taken()
            elif not held and self.leader:
                log.warning("lost the leader lease; following from now on")
            self.leader = held
            if held:
                self._until = now + self.lease.ttl
            self._gauge.set(1 if held else 0)
            return held

    def lost(self) -> None:
        """The lease turned out to be someone else's (a tick's save was fenced out)."""
        with self._lock:
            self.leader = False
            self._gauge.set(0)

    def release(self) -> None:
        """Give the lease up (on shutdown), so that a follower need not wait for it to
        expire."""
        if self.lease is None or not self.leader:
            return
        try:
            self.lease.release()
        except StoreError as exc:
            log.warning("%s; a follower takes over when it expires", exc)
            return
        self.leader = False
        log.info("released the leader lease")

    def _read_other_leader(self, now: datetime) -> str | None:
        assert self.lease is not None
        try:
            holder = self.lease.current_holder(now)
        except StoreError as exc:
            self._error = self._error or str(exc)
            return None
        return holder if holder != self.lease.holder else None
