"""Generic JSON webhook: POSTs :func:`detector.notify.messages.payload` to a URL, or a group in
Alertmanager's webhook format (``format: alertmanager``), optionally HMAC-signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from detector.config import WebhookReceiver as WebhookReceiverConfig
from detector.model import Notification
from detector.notify import messages
from detector.notify.base import HttpReceiver
from detector.notify.http import post

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "USER_AGENT", "WebhookReceiver", "sign"]

USER_AGENT = "payment-failure-detector/1"
SIGNATURE_HEADER = "X-Detector-Signature"
TIMESTAMP_HEADER = "X-Detector-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``timestamp.body`` under ``secret``.

    The timestamp is signed with the body so that a captured request cannot be replayed
    later: receivers reject timestamps more than a few minutes old.

    >>> sign("s3cret", "1700000000", b'{"event":"firing"}')[:19]
    'sha256=7968948c97e4'
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookReceiver(HttpReceiver):
    """POSTs the versioned JSON document of each notification.

    Sends the configured headers (secrets such as ``Authorization``) and an
    ``Idempotency-Key`` header that is the same for every retry of one notification, so
    the receiving end can drop duplicates. With ``format: alertmanager`` a group goes out
    as one Alertmanager (version 4) document whose key covers the group's notifications.
    ``clock`` gives the signature's timestamp (seconds since the epoch).
    """

    config: WebhookReceiverConfig

    def __init__(
        self,
        name: str,
        config: WebhookReceiverConfig,
        session: requests.Session,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name, config, session)
        self.clock = clock

    def headers(self, idempotency_key: str, body: bytes) -> dict[str, str]:
        """Request headers; configured ones may override the defaults but not the key."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        headers.update({k: v.get_secret_value() for k, v in self.config.headers.items()})
        headers["Idempotency-Key"] = idempotency_key
        if self.config.signing_secret is not None:
            timestamp = str(int(self.clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(
                self.config.signing_secret.get_secret_value(), timestamp, body
            )
        return headers

    def deliver(self, notifications: Sequence[Notification]) -> None:
        if self.config.format == "alertmanager":
            keys = "\n".join(n.idempotency_key for n in notifications)
            key = notifications[0].idempotency_key if len(notifications) == 1 else _digest(keys)
            document = messages.alertmanager_webhook(
                notifications, self.name, self.config.templates
            )
            self._post(document, key)
            return
        for notification in notifications:
            document = messages.payload(notification, self.config.templates)
            self._post(document, notification.idempotency_key)

    def _post(self, document: dict[str, Any], idempotency_key: str) -> None:
        body = json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
        post(
            self.session,
            self.config.url,
            data=body,
            headers=self.headers(idempotency_key, body),
            timeout=self.timeout,
            secrets=self.secrets,
        )


def _digest(text: str) -> str:
    return "group:" + hashlib.sha256(text.encode()).hexdigest()[:32]
