"""What every receiver gets and the one small interface it implements."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from detector.errors import DetectorError

__all__ = ["DeliveryError", "Evidence", "Notification", "Receiver"]


class DeliveryError(DetectorError):
    """A send failed. ``retryable`` says whether trying again later can help."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Evidence:
    """The figures behind a verdict, as of the tick that made the transition."""

    value: float | None = None  # observed failure rate in the window (None for volume rules)
    interval_low: float | None = None  # Wilson 95% interval of the failure rate
    interval_high: float | None = None
    baseline: float | None = None  # SLA failure rate the gateway is held to
    payments: int = 0  # final payments in the window
    failures: int = 0  # failed payments in the window
    window_minutes: int = 0
    p_value: float | None = None
    expected_payments: float | None = None  # what volume rules expected in the window
    top_error_codes: tuple[tuple[str, int], ...] = ()
    sample_payment_ids: tuple[str, ...] = ()
    statistic: float | None = None  # sequential test statistic (CUSUM, nats) at the tick
    threshold: float | None = None  # the value of ``statistic`` that fires, from the budget
    dispersion: float | None = None  # beta-binomial rho of the gateway's failures
    magnitude: float | None = None  # estimated failure rate since the change / baseline


@dataclass(frozen=True)
class Notification:
    """One alert transition to deliver to one receiver; JSON round-trips through the outbox."""

    event: Literal["firing", "resolved"]
    fingerprint: str  # stable per (rule, labels)
    idempotency_key: str  # fingerprint + transition; the same for every retry of this send
    rule: str  # sla_breach, outage, no_data, volume_drop, source_down
    severity: Literal["warning", "critical"]
    labels: dict[str, str]  # at least rule, severity and (except source_down) gateway
    summary: str  # one line a person reads first
    at: str  # ISO-8601 UTC time of the tick that made this transition
    since: str  # ISO-8601 UTC time the condition started (estimated)
    repeat: bool = False  # a reminder that a firing alert is still firing
    evidence: Evidence = field(default_factory=Evidence)
    backup_gateway: str | None = None
    links: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Notification:
        data: dict[str, Any] = json.loads(text)
        evidence = data.pop("evidence")
        evidence["top_error_codes"] = tuple(tuple(pair) for pair in evidence["top_error_codes"])
        evidence["sample_payment_ids"] = tuple(evidence["sample_payment_ids"])
        data["links"] = tuple(data["links"])
        return cls(evidence=Evidence(**evidence), **data)


class Receiver(ABC):
    """Delivers notifications to one destination (Slack, a webhook, a mailbox, ...)."""

    name: str
    send_resolved: bool = True

    def wants(self, notification: Notification) -> bool:
        """False for a resolved notification this receiver was told not to send."""
        return self.send_resolved or notification.event != "resolved"

    @abstractmethod
    def send(self, notification: Notification) -> None:
        """Deliver one notification or raise :class:`DeliveryError`."""
