"""What every receiver gets and the one small interface it implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import requests

from detector.errors import DetectorError
from detector.model import Notification
from detector.notify.deadline import use_deadlines
from detector.notify.redact import secrets_of

__all__ = ["DeliveryError", "HttpReceiver", "Receiver"]


class DeliveryError(DetectorError):
    """A send failed. ``retryable`` says whether trying again later can help;
    ``retry_after``, how long the destination asked to be left alone (its ``Retry-After``)."""

    def __init__(self, message: str, *, retryable: bool, retry_after: timedelta | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Receiver(ABC):
    """Delivers notifications to one destination (Slack, a webhook, a mailbox, ...)."""

    name: str
    send_resolved: bool = True
    # False for destinations that group alerts themselves (Alertmanager): no group_wait.
    groups: bool = True
    # Re-send firing alerts this often whatever the route's repeat_interval says.
    resend_interval: timedelta | None = None
    # The secret values of its config, masked wherever an error is logged or stored.
    secrets: frozenset[str] = frozenset()

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
        HTTP session shared by the receivers (connection reuse); the caller closes it. It
        is given the adapter that makes ``timeout`` a deadline for each whole request.
    """

    def __init__(self, name: str, config: Any, session: requests.Session) -> None:
        self.name = name
        self.config = config
        self.send_resolved = config.send_resolved
        self.secrets = secrets_of(config)
        use_deadlines(session)
        self.session = session

    @property
    def timeout(self) -> float:
        return float(self.config.timeout.total_seconds())

    def __repr__(self) -> str:
        # Never the config: its URL or key may be a secret.
        return f"{type(self).__name__}(name={self.name!r})"
