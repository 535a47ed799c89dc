"""Drains the outbox: each receiver's due notifications in order, with backoff between retries.

Each receiver is drained in a thread of its own, and a pass does not wait for a receiver
still busy with an earlier pass: a slow or failing receiver delays only its own messages,
never another receiver's. Due entries of one receiver with the same group key go out as one
message (:meth:`Receiver.send_group`). A retryable failure postpones that receiver's queue
(exponential backoff with jitter); a permanent one (a 4xx other than 408 and 429) is recorded
and not tried again. Error texts are stored and logged with every receiver's secrets masked.
"""

from __future__ import annotations

import logging
import random
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from detector.notify.base import DeliveryError, Receiver
from detector.notify.redact import redact
from detector.store import OutboxEntry, StateStore

__all__ = ["DeliveryReport", "Dispatcher", "backoff_delay"]

log = logging.getLogger(__name__)


def backoff_delay(attempts: int, base: timedelta, cap: timedelta, rng: random.Random) -> timedelta:
    """Delay before retry number ``attempts``: doubling from ``base`` up to ``cap``, jittered.

    The jitter (50-100% of the nominal delay) keeps replicas and receivers from retrying
    in lockstep.

    >>> rng = random.Random(0)
    >>> base, cap = timedelta(seconds=2), timedelta(seconds=60)
    >>> [round(backoff_delay(n, base, cap, rng).total_seconds(), 1) for n in (1, 2, 3, 10)]
    [1.8, 3.5, 5.7, 37.8]
    """
    nominal = min(base * (1 << max(attempts - 1, 0)), cap)
    return nominal * rng.uniform(0.5, 1.0)


@dataclass
class DeliveryReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0


class Dispatcher:
    """Sends what the outbox holds through the configured receivers."""

    def __init__(
        self,
        store: StateStore,
        receivers: Mapping[str, Receiver],
        clock: Callable[[], datetime],
        *,
        base_delay: timedelta = timedelta(seconds=2),
        max_delay: timedelta = timedelta(minutes=5),
        rng: random.Random | None = None,
        on_result: Callable[[str, str], None] | None = None,
    ):
        self.store = store
        self.receivers = receivers
        self.clock = clock
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.rng = rng or random.Random()
        # Called with (receiver, "delivered" | "retried" | "failed"), e.g. to count metrics.
        self.on_result = on_result
        self._lock = threading.Lock()
        self._drains: dict[str, threading.Thread] = {}
        self._finished = DeliveryReport()
        self._stopped = threading.Event()

    def deliver_due(self, *, wait: bool = True) -> DeliveryReport:
        """Start draining every receiver with due entries and no drain in flight.

        With ``wait``, block until every drain in flight has finished; without it, return
        at once (the daemon's delivery job, so that passes keep coming while one receiver
        is slow). Returns what the drains that finished since the last call did.
        """
        with self._lock:
            busy = set(self._drains)
            queues: dict[str, list[OutboxEntry]] = {}
            for entry in self.store.due(self.clock()):
                if entry.receiver not in busy:
                    queues.setdefault(entry.receiver, []).append(entry)
            for name, entries in queues.items():
                # Daemon threads: a request still in flight when the shutdown grace is up
                # must not keep the process alive (the outbox keeps the entry for later).
                drain = threading.Thread(
                    target=self._drain, args=(name, entries), name=f"deliver-{name}", daemon=True
                )
                self._drains[name] = drain
                drain.start()
            running = list(self._drains.values())
        if wait:
            for drain in running:
                drain.join()
        with self._lock:
            report, self._finished = self._finished, DeliveryReport()
        return report

    def stop(self) -> None:
        """Send nothing more: a drain in flight ends after the message it is sending."""
        self._stopped.set()

    def busy(self) -> bool:
        """Whether a drain is still in flight."""
        with self._lock:
            return bool(self._drains)

    def _drain(self, name: str, entries: list[OutboxEntry]) -> None:
        report = DeliveryReport()
        try:
            receiver = self.receivers.get(name)
            # One message per group, groups in the order their first entry was queued.
            batches: dict[str, list[OutboxEntry]] = {}
            for entry in entries:
                batches.setdefault(entry.group_key, []).append(entry)
            for batch in batches.values():
                if self._stopped.is_set():
                    break  # shutting down: what is left stays in the outbox
                outcome = self._send(name, receiver, batch)
                setattr(report, outcome, getattr(report, outcome) + len(batch))
                self._count(name, outcome, len(batch))
                if outcome == "retried":
                    break  # keep this receiver's messages in order; try again after the delay
        except Exception:
            # The state database failing mid-drain, say: the entries stay due for a later pass.
            log.exception("delivery to %s interrupted; the next pass tries again", name)
        finally:
            with self._lock:
                del self._drains[name]
                self._finished.delivered += report.delivered
                self._finished.retried += report.retried
                self._finished.failed += report.failed

    def _send(self, name: str, receiver: Receiver | None, batch: list[OutboxEntry]) -> str:
        """Send one group's entries as one message; returns the outcome for all of them."""
        notifications = [entry.notification for entry in batch]
        keys = ", ".join(n.idempotency_key for n in notifications)
        if receiver is None:
            self.store.given_up(batch, self.clock(), f"receiver {name!r} is no longer configured")
            return "failed"
        try:
            receiver.send_group(notifications)
        except DeliveryError as exc:
            error = self._redact(str(exc))
            if exc.retryable:
                attempts = max(entry.attempts for entry in batch) + 1
                delay = backoff_delay(attempts, self.base_delay, self.max_delay, self.rng)
                if exc.retry_after is not None:  # the destination asked for a longer pause
                    delay = max(delay, exc.retry_after)
                now = self.clock()
                self.store.retry_later(batch, now, now + delay, error)
                log.warning(
                    "delivery to %s failed (attempt %d), retrying in %.0fs: %s [keys %s]",
                    name,
                    attempts,
                    delay.total_seconds(),
                    error,
                    keys,
                )
                return "retried"
            self.store.given_up(batch, self.clock(), error)
            log.error("delivery to %s failed permanently: %s [keys %s]", name, error, keys)
            return "failed"
        except Exception as exc:  # a receiver bug must not stop the others
            error = self._redact(f"{type(exc).__name__}: {exc}")
            self.store.given_up(batch, self.clock(), error)
            # Where it broke instead of the traceback, whose last line would quote the
            # exception unmasked.
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error(
                "receiver %s crashed at %s:%s [keys %s]: %s",
                name,
                where.filename,
                where.lineno,
                keys,
                error,
            )
            return "failed"
        self.store.delivered(batch, self.clock())
        log.info(
            "delivered %s to %s [keys %s]",
            ", ".join(f"{n.event} {n.rule} {n.labels.get('gateway', '')}" for n in notifications),
            name,
            keys,
        )
        return "delivered"

    def _redact(self, text: str) -> str:
        """``text`` with the secrets of every configured receiver masked."""
        return redact(text, {s for r in self.receivers.values() for s in r.secrets})

    def _count(self, receiver: str, outcome: str, count: int) -> None:
        if self.on_result is not None:
            for _ in range(count):
                self.on_result(receiver, outcome)
