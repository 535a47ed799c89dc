"""What every receiver gets and the one small interface it implements."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Literal

import requests

from detector.errors import DetectorError
from detector.stats.attribution import Attribution

__all__ = ["DeliveryError", "Evidence", "HttpReceiver", "Notification", "Receiver"]


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
    # Which dimension values hold the excess failures (source.columns.dimensions).
    attribution: Attribution | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Back from ``dataclasses.asdict`` after a JSON round trip (the store, the outbox)."""
        fields = dict(data)
        fields["top_error_codes"] = tuple(tuple(pair) for pair in fields["top_error_codes"])
        fields["sample_payment_ids"] = tuple(fields["sample_payment_ids"])
        if fields.get("attribution") is not None:
            fields["attribution"] = Attribution.from_dict(fields["attribution"])
        return cls(**fields)


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
    episode: str = ""  # ISO-8601 UTC time this episode of the alert started firing
    evidence: Evidence = field(default_factory=Evidence)
    backup_gateway: str | None = None
    links: tuple[str, ...] = ()
    # The labels its route groups by (the message's group); () where the receiver does not group.
    group_by: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Notification:
        data: dict[str, Any] = json.loads(text)
        evidence = Evidence.from_dict(data.pop("evidence"))
        data["links"] = tuple(data["links"])
        data["group_by"] = tuple(data.get("group_by", ()))  # absent in outbox rows of 0.x
        return cls(evidence=evidence, **data)


class Receiver(ABC):
    """Delivers notifications to one destination (Slack, a webhook, a mailbox, ...)."""

    name: str
    send_resolved: bool = True
    # False for destinations that group alerts themselves (Alertmanager): no group_wait.
    groups: bool = True
    # Re-send firing alerts this often whatever the route's repeat_interval says.
    resend_interval: timedelta | None = None

    def wants(self, notification: Notification) -> bool:
        """False for a resolved notification this receiver was told not to send."""
        return self.send_resolved or notification.event != "resolved"

    def send(self, notification: Notification) -> None:
        """Deliver one notification or raise :class:`DeliveryError`."""
        self.send_group([notification])

    def send_group(self, notifications: Sequence[Notification]) -> None:
        """Deliver one group's notifications, leaving out those this receiver does not want.

        Raises :class:`DeliveryError` for the whole group: a retry sends the group again
        (its idempotency keys let receivers drop what they already have).
        """
        wanted = [n for n in notifications if self.wants(n)]
        if wanted:
            self.deliver(wanted)

    @abstractmethod
    def deliver(self, notifications: Sequence[Notification]) -> None:
        """Send these notifications, as one message where the destination allows."""


class HttpReceiver(Receiver):
    """A receiver that POSTs through the shared HTTP session.

    Parameters
    ----------
    name
        The receiver's name in alerts.yaml.
    config
        Its configuration (send_resolved, timeout and the receiver's own keys).
    session
        HTTP session shared by the receivers (connection reuse); the caller closes it.
    """

    def __init__(self, name: str, config: Any, session: requests.Session) -> None:
        self.name = name
        self.config = config
        self.send_resolved = config.send_resolved
        self.session = session

    @property
    def timeout(self) -> float:
        return float(self.config.timeout.total_seconds())

    def __repr__(self) -> str:
        # Never the config: its URL or key may be a secret.
        return f"{type(self).__name__}(name={self.name!r})"
