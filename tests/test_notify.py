"""Receivers against real local servers: what a person or a system on the other end gets."""

from __future__ import annotations

import io
import json
import math
import socket
from dataclasses import replace
from typing import Any

import pytest
import requests

from detector import config as cfg
from detector.model import Evidence, Notification
from detector.notify import (
    ConsoleReceiver,
    DeliveryError,
    EmailReceiver,
    SlackReceiver,
    WebhookReceiver,
    alertmanager_format,
    build_receivers,
)
from detector.notify import messages as fmt
from detector.notify.http import post, redact_url
from detector.notify.pagerduty import pagerduty_event
from detector.notify.slack import (
    FIELD_MAX,
    FIELDS_MAX,
    HEADER_MAX,
    SECTION_TEXT_MAX,
    slack_message,
)
from detector.stats.attribution import Attribution
from tests.http_recorder import HttpRecorder
from tests.smtp_recorder import SmtpRecorder

SLACK_SECRET_PATH = "/services/T0000SECRET/B0000SECRET/XyZsecretTOKEN123"


def firing(**changes: Any) -> Notification:
    """An SLA breach on stripe with every optional field filled in."""
    notification = Notification(
        event="firing",
        fingerprint="sla_breach:gateway=stripe",
        idempotency_key="sla_breach:gateway=stripe:firing:2024-05-01T10:25:00+00:00",
        rule="sla_breach",
        severity="critical",
        labels={"rule": "sla_breach", "severity": "critical", "gateway": "stripe"},
        summary="stripe fails 12.4% of payments, 6.2x its 2.0% SLA",
        at="2024-05-01T10:25:00+00:00",
        since="2024-05-01T10:00:00+00:00",
        evidence=Evidence(
            value=0.124,
            interval_low=0.101,
            interval_high=0.150,
            baseline=0.02,
            payments=1000,
            failures=124,
            window_minutes=30,
            p_value=3.2e-12,
            top_error_codes=(("card_declined", 80), ("gateway_timeout", 30)),
            sample_payment_ids=("pay_1a", "pay_2b", "pay_3c"),
        ),
        backup_gateway="adyen",
        links=("https://status.stripe.com",),
    )
    return replace(notification, **changes)


def bare() -> Notification:
    """The data source is down: no gateway, no evidence, no backup, no links."""
    return Notification(
        event="firing",
        fingerprint="source_down",
        idempotency_key="source_down:firing:1",
        rule="source_down",
        severity="critical",
        labels={"rule": "source_down", "severity": "critical"},
        summary="the payments database has not answered for 3 ticks",
        at="2024-05-01T10:25:00+00:00",
        since="",
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook(url: str, **extra: Any) -> cfg.WebhookReceiver:
    return cfg.WebhookReceiver.model_validate({"type": "webhook", "url": url, **extra})


def slack(url: str, **extra: Any) -> cfg.SlackReceiver:
    return cfg.SlackReceiver.model_validate({"type": "slack", "url": url, **extra})


def email(port: int, **extra: Any) -> cfg.EmailReceiver:
    data = {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "starttls": False,
        "from": "Payment alerts <alerts@example.com>",
        "to": ["oncall@example.com", "payments@example.com"],
        "timeout": "2s",
    }
    return cfg.EmailReceiver.model_validate({**data, **extra})


def messages_of(exc: BaseException) -> str:
    """Text of an exception and everything chained to it, as a log would show it."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        parts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


# --- format ------------------------------------------------------------------------------


def test_title_says_state_severity_rule_and_gateway() -> None:
    assert fmt.title(firing()) == "[FIRING critical] sla_breach on stripe"
    assert fmt.title(firing(repeat=True)) == "[STILL FIRING critical] sla_breach on stripe"
    assert fmt.title(firing(event="resolved")) == "[RESOLVED] sla_breach on stripe"
    assert fmt.title(bare()) == "[FIRING critical] source_down"
    per_method = firing(labels={"rule": "outage", "gateway": "adyen", "method": "card"})
    assert fmt.title(per_method) == "[FIRING critical] sla_breach on adyen (method=card)"


def test_text_with_every_figure() -> None:
    body = fmt.text(firing())
    assert body.splitlines()[0] == "stripe fails 12.4% of payments, 6.2x its 2.0% SLA"
    assert "Failure rate: 12.4% (95% CI 10.1%\u201315.0%) vs SLA 2.0%\n" in body
    assert "Failures: 124 of 1000 payments in the last 30 min\n" in body
    assert "p-value: 3.2e-12\n" in body
    assert "Since: 2024-05-01T10:00:00+00:00 (for 25 min)\n" in body
    assert "At: 2024-05-01T10:25:00+00:00\n" in body
    assert "Top error codes: card_declined (80), gateway_timeout (30)\n" in body
    assert "Sample payment ids: pay_1a, pay_2b, pay_3c\n" in body
    assert "Fail over to backup: adyen\n" in body
    assert "Links: https://status.stripe.com\n" in body
    assert "Labels: gateway=stripe, rule=sla_breach, severity=critical\n" in body


def test_text_leaves_out_what_is_unknown() -> None:
    assert fmt.text(bare()) == (
        "the payments database has not answered for 3 ticks\n"
        "\n"
        "At: 2024-05-01T10:25:00+00:00\n"
        "Labels: rule=source_down, severity=critical\n"
    )
    sparse = fmt.text(firing(summary="", evidence=Evidence(value=0.5, payments=10, failures=5)))
    assert "Failure rate: 50.0%\n" in sparse
    assert "Failures: 5 of 10 payments\n" in sparse
    for absent in ("CI", "SLA", "p-value", "error codes", "Sample", "None"):
        assert absent not in sparse


def test_text_for_a_volume_rule_and_a_resolution() -> None:
    silent = firing(
        rule="no_data",
        evidence=Evidence(payments=0, window_minutes=15, expected_payments=412.3, p_value=1e-9),
    )
    body = fmt.text(silent)
    assert "Payments: 0 in the last 15 min, expected 412\n" in body
    assert "Failure rate" not in body
    resolved = fmt.text(firing(event="resolved"))
    assert "Resolved at: 2024-05-01T10:25:00+00:00\n" in resolved
    assert "Fail over" not in resolved
    assert "Backup gateway: adyen (switch back if you failed over)" in resolved


def test_html_is_escaped_and_has_the_same_figures() -> None:
    hostile = firing(
        summary="<script>alert(1)</script> & co",
        links=("https://status.stripe.com/?a=1&b=2", "javascript:alert(1)"),
    )
    page = fmt.html(hostile)
    assert page.startswith("<!DOCTYPE html>")
    assert "<table" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "12.4% (95% CI 10.1%\u201315.0%) vs SLA 2.0%" in page
    assert '<a href="https://status.stripe.com/?a=1&amp;b=2">' in page
    assert 'href="javascript' not in page
    assert "<th" in page
    assert "Fail over to backup" in page


def test_payload_is_the_documented_json_document() -> None:
    n = firing(evidence=replace(firing().evidence, p_value=math.nan))
    doc = fmt.payload(n)
    json.dumps(doc, allow_nan=False)  # strict JSON
    assert doc["version"] == "1"
    assert set(doc) == {
        "version", "event", "repeat", "fingerprint", "idempotency_key", "rule", "severity",
        "labels", "summary", "at", "since", "episode", "evidence", "backup_gateway", "links",
        "title", "text",
    }  # fmt: skip
    assert doc["evidence"]["top_error_codes"] == [
        {"code": "card_declined", "count": 80},
        {"code": "gateway_timeout", "count": 30},
    ]
    assert doc["evidence"]["p_value"] is None
    assert doc["evidence"]["failures"] == 124
    assert doc["evidence"]["interval_high"] == 0.150
    assert doc["evidence"]["sample_payment_ids"] == ["pay_1a", "pay_2b", "pay_3c"]
    assert doc["links"] == ["https://status.stripe.com"]
    assert doc["title"] == fmt.title(n)


CARD_BR = Attribution(
    ("method", "country"), (("method", "card"), ("country", "BR")), 0.82, 0.31, 101.6
)
CARD_BR_LINE = "82% of excess failures are method=card, country=BR (31% of payments)"


def test_every_receiver_says_where_the_excess_failures_are() -> None:
    n = firing(evidence=replace(firing().evidence, attribution=CARD_BR))
    assert f"Attribution: {CARD_BR_LINE}\n" in fmt.text(n)
    assert CARD_BR_LINE in fmt.html(n)
    assert fmt.payload(n)["evidence"]["attribution"] == {
        "segment": {"method": "card", "country": "BR"},
        "excess_share": 0.82,
        "payments_share": 0.31,
        "excess_failures": 101.6,
        "dimensions": ["method", "country"],
    }
    blocks = slack_message(n)["blocks"]
    assert any(CARD_BR_LINE in block.get("text", {}).get("text", "") for block in blocks)
    event = pagerduty_event(n, "key", "detector")
    assert event["payload"]["custom_details"]["attribution"] == CARD_BR_LINE
    assert event["payload"]["custom_details"]["evidence"]["attribution"]["segment"] == {
        "method": "card",
        "country": "BR",
    }
    annotations = alertmanager_format.alertmanager_alert(n)["annotations"]
    assert annotations["attribution"] == CARD_BR_LINE
    assert CARD_BR_LINE in annotations["description"]
    assert fmt.template_fields(n)["attribution"] == CARD_BR_LINE
    # The outbox and the state store keep it through JSON.
    assert Notification.from_json(n.to_json()) == n
    with SmtpRecorder() as smtp:
        EmailReceiver("mail", email(smtp.port)).send(n)
    [message] = smtp.messages
    for part in ("plain", "html"):
        body = message.get_body((part,))
        assert body is not None
        assert CARD_BR_LINE in body.get_content()


def test_a_notification_queued_before_attributions_existed_still_reads() -> None:
    stored = json.loads(firing().to_json())
    del stored["evidence"]["attribution"]  # what the outbox of the previous version holds
    assert Notification.from_json(json.dumps(stored)) == firing()


def test_no_attribution_line_without_one() -> None:
    n = firing()
    assert "Attribution" not in fmt.text(n)
    assert fmt.payload(n)["evidence"]["attribution"] is None
    assert "attribution" not in alertmanager_format.alertmanager_alert(n)["annotations"]
    assert "attribution" not in pagerduty_event(n, "key", "detector")["payload"]["custom_details"]


def test_wants_honours_send_resolved() -> None:
    quiet = ConsoleReceiver("c", cfg.ConsoleReceiver(type="console", send_resolved=False))
    assert quiet.wants(firing())
    assert not quiet.wants(firing(event="resolved"))


def test_build_receivers_makes_one_per_configured_name(session: requests.Session) -> None:
    config = cfg.parse_config(
        {
            "receivers": {
                "stdout": {"type": "console"},
                "hook": {"type": "webhook", "url": "http://127.0.0.1:9/x"},
                "ops-slack": {"type": "slack", "url": "${SLACK_URL}", "channel": "#pay"},
                "mail": {"type": "email", "host": "smtp", "from": "a@b.c", "to": ["d@e.f"]},
            },
            "route": {"receivers": ["stdout"]},
        },
        env={"SLACK_URL": "https://hooks.slack.com" + SLACK_SECRET_PATH},
    )
    receivers = build_receivers(config, session)
    assert {name: type(r) for name, r in receivers.items()} == {
        "stdout": ConsoleReceiver,
        "hook": WebhookReceiver,
        "ops-slack": SlackReceiver,
        "mail": EmailReceiver,
    }
    assert all(r.name == name for name, r in receivers.items())
    assert SLACK_SECRET_PATH not in repr(receivers)


# --- console -----------------------------------------------------------------------------


def test_console_prints_title_and_body() -> None:
    out = io.StringIO()
    ConsoleReceiver("stdout", cfg.ConsoleReceiver(type="console"), out).send(firing())
    printed = out.getvalue()
    assert printed.startswith("[FIRING critical] sla_breach on stripe\n")
    assert "Failure rate: 12.4%" in printed


def test_console_skips_resolved_when_told() -> None:
    out = io.StringIO()
    config = cfg.ConsoleReceiver(type="console", send_resolved=False)
    ConsoleReceiver("stdout", config, out).send(firing(event="resolved"))
    assert out.getvalue() == ""


# --- http + webhook ----------------------------------------------------------------------


def test_webhook_posts_the_payload_with_idempotency_key(
    http: HttpRecorder, session: requests.Session
) -> None:
    config = webhook(http.url_for("/alerts"), headers={"Authorization": "Bearer t0ken"})
    WebhookReceiver("hook", config, session).send(firing())
    [request] = http.requests
    assert (request.method, request.path) == ("POST", "/alerts")
    assert request.header("Idempotency-Key") == firing().idempotency_key
    assert request.header("Authorization") == "Bearer t0ken"
    assert request.header("Content-Type") == "application/json"
    body = request.json()
    assert body["event"] == "firing"
    assert body["labels"]["gateway"] == "stripe"
    assert body["evidence"]["value"] == 0.124
    assert body["backup_gateway"] == "adyen"
    assert body["idempotency_key"] == firing().idempotency_key


def test_webhook_500_is_retryable_and_the_retry_carries_the_same_key(
    http: HttpRecorder, session: requests.Session
) -> None:
    http.respond_with([(500, "upstream exploded")])
    receiver = WebhookReceiver("hook", webhook(http.url_for("/a")), session)
    with pytest.raises(DeliveryError) as caught:
        receiver.send(firing())
    assert caught.value.retryable
    assert "500" in str(caught.value)
    assert "upstream exploded" in str(caught.value)
    receiver.send(firing())
    keys = [r.header("Idempotency-Key") for r in http.requests]
    assert keys == [firing().idempotency_key] * 2


def test_webhook_400_is_final_and_shows_the_body(
    http: HttpRecorder, session: requests.Session
) -> None:
    http.respond_with([(400, "bad payload")])
    with pytest.raises(DeliveryError) as caught:
        WebhookReceiver("hook", webhook(http.url_for("/a")), session).send(firing())
    assert not caught.value.retryable
    assert "400" in str(caught.value)
    assert "bad payload" in str(caught.value)


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (404, False)])
def test_status_decides_retry(
    http: HttpRecorder, session: requests.Session, status: int, retryable: bool
) -> None:
    http.respond_with([status])
    with pytest.raises(DeliveryError) as caught:
        post(session, http.url_for("/x"), json_body={}, timeout=2)
    assert caught.value.retryable is retryable
    assert str(status) in str(caught.value)


def test_webhook_skips_resolved_when_told(http: HttpRecorder, session: requests.Session) -> None:
    receiver = WebhookReceiver("hook", webhook(http.url, send_resolved=False), session)
    receiver.send(firing(event="resolved"))
    assert http.requests == []


def test_connection_refused_is_retryable(session: requests.Session) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    with pytest.raises(DeliveryError) as caught:
        WebhookReceiver("hook", webhook(url), session).send(firing())
    assert caught.value.retryable
    assert "ConnectionRefusedError" in str(caught.value)


def test_timeout_is_retryable(http: HttpRecorder, session: requests.Session) -> None:
    http.delay = 0.3
    with pytest.raises(DeliveryError) as caught:
        WebhookReceiver("hook", webhook(http.url, timeout="0.1s"), session).send(firing())
    assert caught.value.retryable
    assert "no complete response within 0.1s" in str(caught.value)


def test_redact_url_keeps_only_scheme_and_host() -> None:
    assert redact_url("https://hooks.slack.com" + SLACK_SECRET_PATH) == "https://hooks.slack.com"


# --- slack -------------------------------------------------------------------------------


def test_slack_message_has_blocks_and_a_fallback(
    http: HttpRecorder, session: requests.Session
) -> None:
    config = slack(http.url + SLACK_SECRET_PATH, channel="#payments-oncall")
    SlackReceiver("ops-slack", config, session).send(firing())
    [request] = http.requests
    assert request.path == SLACK_SECRET_PATH
    message = request.json()
    assert message["channel"] == "#payments-oncall"
    assert "stripe" in message["text"]
    assert "12.4%" in message["text"]
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["type"] == "plain_text"
    assert "[FIRING critical] sla_breach on stripe" in blocks[0]["text"]["text"]
    fields = next(b["fields"] for b in blocks if "fields" in b)
    shown = "\n".join(f["text"] for f in fields)
    for figure in ("12.4% (95% CI 10.1%\u201315.0%)", "2.0%", "124 of 1000", "3.2e-12", "adyen"):
        assert figure in shown
    assert blocks[-1]["type"] == "context"
    assert firing().idempotency_key in json.dumps(blocks[-1])


def test_slack_message_stays_within_block_kit_limits() -> None:
    huge = firing(
        summary="x" * 5000,
        labels={"gateway": "g" * 400, "rule": "sla_breach", "note": "<&>" * 2000},
        evidence=replace(
            firing().evidence,
            sample_payment_ids=tuple(f"p{i}" for i in range(3000)),
            top_error_codes=tuple((f"code{i}", i) for i in range(300)),
            attribution=Attribution(("note",), (("note", "<&>" * 1000),), 0.9, 0.1, 12.0),
        ),
        links=tuple(f"https://status.example.com/{i}" for i in range(100)),
    )
    message = slack_message(huge)
    assert len(message["blocks"][0]["text"]["text"]) <= HEADER_MAX
    for block in message["blocks"]:
        if "text" in block and block["type"] == "section":
            assert len(block["text"]["text"]) <= SECTION_TEXT_MAX
        assert len(block.get("fields", [])) <= FIELDS_MAX
        assert all(len(f["text"]) <= FIELD_MAX for f in block.get("fields", []))
        for element in block.get("elements", []):
            assert len(element["text"]) <= 3000
            assert "<" not in element["text"]  # mrkdwn control characters are escaped


def test_slack_errors_never_reveal_the_webhook_path(
    http: HttpRecorder, session: requests.Session
) -> None:
    # The server echoes the path in its error body, as some proxies do.
    http.respond_with([(404, f"no_service for {SLACK_SECRET_PATH}"), (500, "oops")])
    receiver = SlackReceiver("s", slack(http.url + SLACK_SECRET_PATH), session)
    errors = []
    for _ in range(2):
        with pytest.raises(DeliveryError) as caught:
            receiver.send(firing())
        errors.append(caught.value)
    refused = SlackReceiver(
        "s", slack(f"http://127.0.0.1:{closed_port()}{SLACK_SECRET_PATH}"), session
    )
    with pytest.raises(DeliveryError) as caught:
        refused.send(firing())
    errors.append(caught.value)
    assert [e.retryable for e in errors] == [False, True, True]
    assert "no_service" in str(errors[0])
    for error in errors:
        assert "127.0.0.1" in str(error)
        assert "SECRET" not in messages_of(error)


# --- email -------------------------------------------------------------------------------


def test_email_is_multipart_text_and_html() -> None:
    with SmtpRecorder() as smtp:
        EmailReceiver("mail", email(smtp.port)).send(firing())
    [message] = smtp.messages
    assert message["Subject"] == "[FIRING critical] sla_breach on stripe"
    assert message["From"] == "Payment alerts <alerts@example.com>"
    assert message["To"] == "oncall@example.com, payments@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Idempotency-Key"] == firing().idempotency_key
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None
    assert rich is not None
    assert "Failure rate: 12.4% (95% CI 10.1%\u201315.0%) vs SLA 2.0%" in plain.get_content()
    assert "<table" in rich.get_content()
    assert "12.4%" in rich.get_content()
    [envelope] = smtp.envelopes
    assert envelope.mail_from == "alerts@example.com"
    assert envelope.rcpt_tos == ("oncall@example.com", "payments@example.com")


def test_a_line_break_in_a_gateway_name_stays_inside_a_one_line_subject() -> None:
    gateway = "stripe\r\nBcc: x@evil"
    labels = {"rule": "sla_breach", "severity": "critical", "gateway": gateway}
    notification = firing(labels=labels, fingerprint=f"sla_breach:gateway={gateway}")
    with SmtpRecorder() as smtp:
        EmailReceiver("mail", email(smtp.port)).send(notification)
    [message] = smtp.messages
    assert message["Subject"] == "[FIRING critical] sla_breach on stripe Bcc: x@evil"
    assert message["Bcc"] is None
    [envelope] = smtp.envelopes
    assert envelope.rcpt_tos == ("oncall@example.com", "payments@example.com")


def test_email_logs_in_with_the_configured_password() -> None:
    with SmtpRecorder(credentials={"alerts": "hunter2-secret"}) as smtp:
        config = email(smtp.port, username="alerts", password="hunter2-secret")
        EmailReceiver("mail", config).send(firing())
    assert smtp.logins == [("alerts", "hunter2-secret")]
    assert len(smtp.messages) == 1


def test_email_wrong_password_is_final_and_not_echoed() -> None:
    with SmtpRecorder(credentials={"alerts": "the-right-one"}) as smtp:
        config = email(smtp.port, username="alerts", password="hunter2-secret")
        with pytest.raises(DeliveryError) as caught:
            EmailReceiver("mail", config).send(firing())
    # The password was really used (smtplib tries each AUTH mechanism the server offers).
    assert smtp.logins
    assert set(smtp.logins) == {("alerts", "hunter2-secret")}
    assert not caught.value.retryable
    assert "535" in str(caught.value)
    assert "hunter2" not in messages_of(caught.value)
    assert smtp.messages == []


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("451 4.3.0 Try again later", True), ("554 5.6.0 Message rejected", False)],
)
def test_email_smtp_reply_class_decides_retry(reply: str, retryable: bool) -> None:
    with SmtpRecorder() as smtp:
        smtp.respond_with([reply])
        with pytest.raises(DeliveryError) as caught:
            EmailReceiver("mail", email(smtp.port)).send(firing())
    assert caught.value.retryable is retryable
    assert reply.split()[0] in str(caught.value)


def test_email_refused_recipient_is_final() -> None:
    with SmtpRecorder() as smtp:
        smtp.refuse_recipient("nobody@example.com")
        with pytest.raises(DeliveryError) as caught:
            EmailReceiver("mail", email(smtp.port, to=["nobody@example.com"])).send(firing())
    assert not caught.value.retryable
    assert "nobody@example.com" in str(caught.value)
    assert "550" in str(caught.value)


def test_email_server_down_is_retryable() -> None:
    with pytest.raises(DeliveryError) as caught:
        EmailReceiver("mail", email(closed_port())).send(firing())
    assert caught.value.retryable
    assert "ConnectionRefusedError" in str(caught.value)


def test_email_starttls_against_a_server_without_it_is_a_config_error() -> None:
    with SmtpRecorder() as smtp, pytest.raises(DeliveryError) as caught:
        EmailReceiver("mail", email(smtp.port, starttls=True)).send(firing())
    assert not caught.value.retryable
    assert "STARTTLS" in str(caught.value)


def test_email_skips_resolved_when_told() -> None:
    with SmtpRecorder() as smtp:
        config = email(smtp.port, send_resolved=False)
        EmailReceiver("mail", config).send(firing(event="resolved"))
    assert smtp.messages == []


def test_every_receiver_words_the_decline_share_beside_the_failure_rate(
    http: HttpRecorder, session: requests.Session
) -> None:
    n = firing()
    n = replace(n, evidence=replace(n.evidence, declines=79))
    body = fmt.text(n)
    assert "Failure rate: 12.4% (95% CI 10.1%\u201315.0%) vs SLA 2.0%, declines 7.9%\n" in body
    assert "Failures: 124 of 1000 payments (79 declined)" in body
    assert "declines 7.9%" in fmt.html(n)
    assert fmt.payload(n)["evidence"]["declines"] == 79
    SlackReceiver("ops-slack", slack(http.url + SLACK_SECRET_PATH), session).send(n)
    [request] = http.requests
    assert "declines 7.9%" in json.dumps(request.json()["blocks"])
    # Without declines, nothing is said about them.
    assert "declines" not in fmt.text(firing())
    assert "declined)" not in fmt.text(firing())
