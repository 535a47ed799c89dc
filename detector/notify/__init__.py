"""Delivering notifications: one module per receiver behind :class:`Receiver`.

Every receiver has ``send(n)`` (deliver or raise :class:`DeliveryError`), ``send_group(ns)``
(one message for a group where the destination allows) and ``wants(n)`` (False for a
resolved notification when its config says ``send_resolved: false``).
"""

from __future__ import annotations

from typing import TextIO

import requests

from detector import config as cfg
from detector.notify.alertmanager import AlertmanagerReceiver
from detector.notify.base import DeliveryError, Receiver
from detector.notify.console import ConsoleReceiver
from detector.notify.email import EmailReceiver
from detector.notify.pagerduty import PagerDutyReceiver
from detector.notify.slack import SlackReceiver
from detector.notify.webhook import WebhookReceiver

__all__ = [
    "AlertmanagerReceiver",
    "ConsoleReceiver",
    "DeliveryError",
    "EmailReceiver",
    "PagerDutyReceiver",
    "Receiver",
    "SlackReceiver",
    "WebhookReceiver",
    "build_receivers",
]


def build_receivers(
    config: cfg.Config, session: requests.Session, stream: TextIO | None = None
) -> dict[str, Receiver]:
    """Build every receiver in ``config.receivers``, keyed by its name.

    Parameters
    ----------
    config
        The validated configuration.
    session
        Shared by the HTTP receivers; the caller owns it and closes it at shutdown.
    stream
        Where console receivers write; None means ``sys.stdout`` at the time of sending.
    """
    receivers: dict[str, Receiver] = {}
    for name, receiver in config.receivers.items():
        if isinstance(receiver, cfg.ConsoleReceiver):
            receivers[name] = ConsoleReceiver(name, receiver, stream)
        elif isinstance(receiver, cfg.WebhookReceiver):
            receivers[name] = WebhookReceiver(name, receiver, session)
        elif isinstance(receiver, cfg.SlackReceiver):
            receivers[name] = SlackReceiver(name, receiver, session)
        elif isinstance(receiver, cfg.EmailReceiver):
            receivers[name] = EmailReceiver(name, receiver)
        elif isinstance(receiver, cfg.PagerDutyReceiver):
            receivers[name] = PagerDutyReceiver(name, receiver, session, config.server)
        elif isinstance(receiver, cfg.AlertmanagerReceiver):
            receivers[name] = AlertmanagerReceiver(name, receiver, session)
        else:  # pragma: no cover - config validation admits only the types above
            raise TypeError(f"receivers.{name}: no receiver for {type(receiver).__name__}")
    return receivers
