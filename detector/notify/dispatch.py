"""Drains the outbox: each receiver's due notifications in order, with backoff between retries.

Receivers are served in parallel threads, so a slow or failing receiver delays only its own
messages. Due entries of one receiver with the same group key go out as one message
(:meth:`Receiver.send_group`). A retryable failure postpones that receiver's queue
(exponential backoff with jitter); a permanent one (a 4xx other than 408 and 429) is recorded and
not tried again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from detector.notify.base import DeliveryError, Receiver
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

    def deliver_due(self) -> DeliveryReport:
        """One pass over the due entries; returns what happened."""
        entries = self.store.due(self.clock())
        queues: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            queues.setdefault(entry.receiver, []).append(entry)
        report = DeliveryReport()
        if not queues:
            return report
        with ThreadPoolExecutor(max_workers=min(len(queues), 8)) as pool:
            for outcome in pool.map(self._drain, queues.items()):
                report.delivered += outcome.delivered
                report.retried += outcome.retried
                report.failed += outcome.failed
        return report

    def _drain(self, item: tuple[str, list[OutboxEntry]]) -> DeliveryReport:
        name, entries = item
        report = DeliveryReport()
        receiver = self.receivers.get(name)
        # One message per group, groups in the order their first entry was queued.
        batches: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            batches.setdefault(entry.group_key, []).append(entry)
        for batch in batches.values():
            outcome = self._send(name, receiver, batch)
            setattr(report, outcome, getattr(report, outcome) + len(batch))
            self._count(name, outcome, len(batch))
            if outcome == "retried":
                break  # keep this receiver's messages in order; try again after the delay
        return report

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
            if exc.retryable:
                attempts = max(entry.attempts for entry in batch) + 1
                delay = backoff_delay(attempts, self.base_delay, self.max_delay, self.rng)
                now = self.clock()
                self.store.retry_later(batch, now, now + delay, str(exc))
                log.warning(
                    "delivery to %s failed (attempt %d), retrying in %.0fs: %s [keys %s]",
                    name,
                    attempts,
                    delay.total_seconds(),
                    exc,
                    keys,
                )
                return "retried"
            self.store.given_up(batch, self.clock(), str(exc))
            log.error("delivery to %s failed permanently: %s [keys %s]", name, exc, keys)
            return "failed"
        except Exception as exc:  # a receiver bug must not stop the others
            self.store.given_up(batch, self.clock(), f"{type(exc).__name__}: {exc}")
            log.exception("receiver %s crashed [keys %s]", name, keys)
            return "failed"
        self.store.delivered(batch, self.clock())
        log.info(
            "delivered %s to %s [keys %s]",
            ", ".join(f"{n.event} {n.rule} {n.labels.get('gateway', '')}" for n in notifications),
            name,
            keys,
        )
        return "delivered"

    def _count(self, receiver: str, outcome: str, count: int) -> None:
        if self.on_result is not None:
            for _ in range(count):
                self.on_result(receiver, outcome)
