"""What receiving ends expect of a sender, checked on the requests a real server on 127.0.0.1
receives: Standard Webhooks signatures (verified by the reference library), two signatures
while a secret is replaced, PagerDuty's ``client_url`` and the User-Agent of every request."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import detector
from detector.config import ConfigError, parse_config
from detector.notify import build_receivers

from .http_recorder import HttpRecorder
from .test_notify import firing

OLD = "whsec_" + base64.b64encode(b"the old secret, 32 bytes long!!!").decode()
NEW = "whsec_" + base64.b64encode(b"the new secret, 32 bytes long!!!").decode()


def _receivers(
    session: requests.Session, receivers: dict[str, Any], **sections: Any
) -> dict[str, Any]:
    config = parse_config(
        {"receivers": receivers, "route": {"receivers": list(receivers)}, **sections}, env={}
    )
    return build_receivers(config, session)


def _hook(http: HttpRecorder, **keys: Any) -> dict[str, Any]:
    return {"hook": {"type": "webhook", "url": http.url_for("/hook"), **keys}}


def test_a_standard_webhook_verifies_with_the_reference_library(
    http: HttpRecorder, session: requests.Session
) -> None:
    receivers = _receivers(session, _hook(http, signing_secret=NEW, signature="standard-webhooks"))
    notification = firing()
    receivers["hook"].send(notification)
    receivers["hook"].send(notification)  # a retry of the same notification
    first, retry = http.requests

    document = Webhook(NEW).verify(first.body, first.headers)
    assert document["fingerprint"] == "sla_breach:gateway=stripe"
    assert first.header("webhook-id") == notification.idempotency_key
    assert retry.header("webhook-id") == first.header("webhook-id")  # receivers dedupe on it
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(first.body, first.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(first.body.replace(b"stripe", b"adyen"), first.headers)
    assert first.header("X-Detector-Signature") is None


def test_while_a_secret_is_replaced_each_request_carries_both_signatures(
    http: HttpRecorder, session: requests.Session
) -> None:
    _receivers(session, _hook(http, signing_secret=[OLD, NEW], signature="standard-webhooks"))[
        "hook"
    ].send(firing())
    _receivers(session, _hook(http, signing_secret=["old-s3cret", "new-s3cret"]))["hook"].send(
        firing()
    )
    standard, own = http.requests

    # A receiver still on the old secret and one already on the new both accept it.
    for secret in (OLD, NEW):
        Webhook(secret).verify(standard.body, standard.headers)
    assert len((standard.header("webhook-signature") or "").split(" ")) == 2

    timestamp = own.header("X-Detector-Timestamp") or ""
    signatures = (own.header("X-Detector-Signature") or "").split(" ")
    for secret in (b"old-s3cret", b"new-s3cret"):
        mac = hmac.new(secret, timestamp.encode() + b"." + own.body, hashlib.sha256)
        assert "sha256=" + mac.hexdigest() in signatures
    assert len(signatures) == 2


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        ("not base64!", "a Standard Webhooks secret is whsec_ and base64"),
        (["a", "b", "c"], "give one secret, or a list of two while switching"),
    ],
)
def test_a_bad_signing_secret_names_its_key(
    secret: Any, says: str, http: HttpRecorder, session: requests.Session
) -> None:
    with pytest.raises(ConfigError) as raised:
        _receivers(session, _hook(http, signing_secret=secret, signature="standard-webhooks"))
    assert f"receivers.hook.signing_secret: {says}" in str(raised.value)


def test_pagerduty_links_back_to_the_gateways_row_on_the_status_page(
    http: HttpRecorder, session: requests.Session
) -> None:
    http.respond_with([(202, "{}")] * 2)
    pagerduty = {"pd": {"type": "pagerduty", "routing_key": "k3y", "url": http.url_for("/e")}}
    status_page = "https://detector.example.com/#gw-stripe"
    # What the alert lifecycle puts first in links with server.external_url set.
    notification = firing(links=(status_page, "https://status.stripe.com"))

    _receivers(session, pagerduty, server={"external_url": "https://detector.example.com"})[
        "pd"
    ].send(notification)
    _receivers(session, pagerduty)["pd"].send(replace(notification, links=()))
    linked, plain = (request.json() for request in http.requests)

    assert linked["client"] == "payment-failure-detector"
    assert linked["client_url"] == status_page
    assert [link["href"] for link in linked["links"]] == [
        status_page,
        "https://status.stripe.com",
    ]
    assert "client_url" not in plain
    assert "links" not in plain


def test_every_http_receiver_names_the_detector_and_its_version(
    http: HttpRecorder, session: requests.Session
) -> None:
    http.respond_with([(200, "ok"), (202, "{}"), (200, "{}")])
    receivers = _receivers(
        session,
        {
            "chat": {"type": "slack", "url": http.url_for("/slack")},
            "pd": {"type": "pagerduty", "routing_key": "k3y", "url": http.url_for("/pd")},
            **_hook(http),
        },
    )
    for name in ("chat", "pd", "hook"):
        receivers[name].send(firing())
    expected = f"payment-failure-detector/{detector.__version__}"
    assert [request.header("User-Agent") for request in http.requests] == [expected] * 3
