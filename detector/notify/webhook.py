"""Generic JSON webhook: POSTs :func:`detector.notify.messages.payload` to a URL, or a group in
Alertmanager's webhook format (``format: alertmanager``), optionally HMAC-signed: with the
detector's own headers or as Standard Webhooks (https://www.standardwebhooks.com), with one
signature per secret while a secret is being replaced."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from detector.config import WebhookReceiver as WebhookReceiverConfig
from detector.config import standard_webhooks_key
from detector.model import Notification
from detector.notify import alertmanager_format, messages
from detector.notify.base import HttpReceiver
from detector.notify.http import post

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookReceiver",
    "sign",
    "sign_standard",
]

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


def sign_standard(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body`` under the key of a
    ``whsec_`` secret: a Standard Webhooks signature.

    >>> sign_standard("whsec_c2VjcmV0", "msg_1", "1700000000", b"{}")[:12]
    'v1,A5oIrJxXP'
    """
    key = standard_webhooks_key(secret)
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


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
        headers = {"Content-Type": "application/json"}
        headers.update({k: v.get_secret_value() for k, v in self.config.headers.items()})
        headers["Idempotency-Key"] = idempotency_key
        if self.config.signing_secret is None:
            return headers
        timestamp = str(int(self.clock()))
        secrets = [secret.get_secret_value() for secret in self.config.signing_secret]
        # One signature per secret, space-separated: a receiver accepts any that matches,
        # so it can switch to the new secret whenever it is ready.
        if self.config.signature == "standard-webhooks":
            headers["webhook-id"] = idempotency_key  # the same on every retry, as required
            headers["webhook-timestamp"] = timestamp
            headers["webhook-signature"] = " ".join(
                sign_standard(secret, idempotency_key, timestamp, body) for secret in secrets
            )
        else:
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = " ".join(sign(s, timestamp, body) for s in secrets)
        return headers

    def deliver(self, notifications: Sequence[Notification]) -> None:
        if self.config.format == "alertmanager":
            keys = "\n".join(n.idempotency_key for n in notifications)
            key = notifications[0].idempotency_key if len(notifications) == 1 else _digest(keys)
            document = alertmanager_format.alertmanager_webhook(
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
