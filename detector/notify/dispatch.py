"""Drains the outbox: each receiver's due notifications in order, with backoff between retries.

Receivers are served in parallel threads, so a slow or failing receiver delays only its own
messages. A retryable failure postpones that receiver's queue (exponential backoff with
jitter); a permanent one (a 4xx other than 429) is recorded and not tried again.
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
    nominal = min(base * (2 ** max(attempts - 1, 0)), cap)
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
        for entry in entries:
            notification = entry.notification
            if receiver is None:
                self.store.given_up(
                    entry, self.clock(), f"receiver {name!r} is no longer configured"
                )
                self._count(name, "failed")
                report.failed += 1
                continue
            try:
                receiver.send(notification)
            except DeliveryError as exc:
                if exc.retryable:
                    delay = backoff_delay(
                        entry.attempts + 1, self.base_delay, self.max_delay, self.rng
                    )
                    self.store.retry_later(entry, self.clock() + delay, str(exc))
                    log.warning(
                        "delivery to %s failed (attempt %d), retrying in %.0fs: %s "
                        "[alert %s, key %s]",
                        name,
                        entry.attempts + 1,
                        delay.total_seconds(),
                        exc,
                        notification.fingerprint,
                        notification.idempotency_key,
                    )
                    self._count(name, "retried")
                    report.retried += 1
                    break  # keep this receiver's messages in order; try again after the delay
                self.store.given_up(entry, self.clock(), str(exc))
                log.error(
                    "delivery to %s failed permanently: %s [alert %s, key %s]",
                    name,
                    exc,
                    notification.fingerprint,
                    notification.idempotency_key,
                )
                self._count(name, "failed")
                report.failed += 1
                continue
            except Exception as exc:  # a receiver bug must not stop the others
                self.store.given_up(entry, self.clock(), f"{type(exc).__name__}: {exc}")
                log.exception("receiver %s crashed on alert %s", name, notification.fingerprint)
                self._count(name, "failed")
                report.failed += 1
                continue
            self.store.delivered(entry, self.clock())
            log.info(
                "delivered %s %s to %s [alert %s, key %s]",
                notification.event,
                notification.rule,
                name,
                notification.fingerprint,
                notification.idempotency_key,
            )
            self._count(name, "delivered")
            report.delivered += 1
        return report

    def _count(self, receiver: str, outcome: str) -> None:
        if self.on_result is not None:
            self.on_result(receiver, outcome)
