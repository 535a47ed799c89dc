"""Generic JSON webhook: POSTs :func:`detector.notify.format.payload` to a URL."""

from __future__ import annotations

import json

import requests

from detector.config import WebhookReceiver as WebhookReceiverConfig
from detector.notify import format
from detector.notify.base import Notification, Receiver
from detector.notify.http import post

__all__ = ["USER_AGENT", "WebhookReceiver"]

USER_AGENT = "payment-failure-detector/1"


class WebhookReceiver(Receiver):
    """POSTs the versioned JSON document of each notification.

    Sends the configured headers (secrets such as ``Authorization``) and an
    ``Idempotency-Key`` header that is the same for every retry of one notification, so
    the receiving end can drop duplicates.

    Parameters
    ----------
    name
        The receiver's name in alerts.yaml.
    config
        Its configuration.
    session
        HTTP session shared by the receivers (connection reuse); the caller closes it.
    """

    def __init__(self, name: str, config: WebhookReceiverConfig, session: requests.Session) -> None:
        self.name = name
        self.config = config
        self.send_resolved = config.send_resolved
        self.session = session

    def headers(self, notification: Notification) -> dict[str, str]:
        """Request headers; configured ones may override the defaults but not the key."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        headers.update({k: v.get_secret_value() for k, v in self.config.headers.items()})
        headers["Idempotency-Key"] = notification.idempotency_key
        return headers

    def send(self, notification: Notification) -> None:
        if not self.wants(notification):
            return
        body = json.dumps(format.payload(notification), ensure_ascii=False, allow_nan=False)
        post(
            self.session,
            self.config.url,
            data=body.encode("utf-8"),
            headers=self.headers(notification),
            timeout=self.config.timeout.total_seconds(),
        )
