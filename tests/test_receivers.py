"""PagerDuty, Alertmanager, signed and Alertmanager-format webhooks, threaded and grouped
email, and ``detector notify test``, against real servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from detector import config as cfg
from detector.alerts import AlertBook, notification_for
from detector.cli import main
from detector.config import parse_config
from detector.model import Evidence, Notification
from detector.notify import (
    AlertmanagerReceiver,
    DeliveryError,
    EmailReceiver,
    PagerDutyReceiver,
    SlackReceiver,
    WebhookReceiver,
)
from detector.rules import Finding, RuleResult

from .alertmanager_server import AlertmanagerServer
from .conftest import Clock, PaymentsDb, in_process_daemon
from .http_recorder import HttpRecorder
from .smtp_recorder import SmtpRecorder
from .test_notify import email, firing

MINUTE = timedelta(minutes=1)


def _model(model: type[Any], **data: Any) -> Any:
    return model.model_validate(data)


# --- PagerDuty ----------------------------------------------------------------------------


def test_pagerduty_triggers_and_resolves_one_alert_by_its_dedup_key(
    http: HttpRecorder, session: requests.Session
) -> None:
    http.respond_with([(202, '{"status":"success","dedup_key":"x"}')] * 2)
    config = _model(
        cfg.PagerDutyReceiver,
        type="pagerduty",
        routing_key="R0UTINGKEY",
        url=http.url_for("/v2/enqueue"),
    )
    receiver = PagerDutyReceiver("pd", config, session)
    receiver.send(firing())
    receiver.send(firing(event="resolved", at="2024-05-01T11:00:00+00:00"))
    trigger, resolve = (r.json() for r in http.requests)
    assert http.requests[0].path == "/v2/enqueue"
    assert trigger["routing_key"] == "R0UTINGKEY"
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == firing().fingerprint == resolve["dedup_key"]
    payload = trigger["payload"]
    assert payload["severity"] == "critical"
    assert payload["summary"].startswith("[FIRING critical] sla_breach on stripe: stripe fails")
    assert (payload["component"], payload["class"]) == ("stripe", "sla_breach")
    assert payload["custom_details"]["evidence"]["failures"] == 124
    assert payload["custom_details"]["evidence"]["top_error_codes"][0] == {
        "code": "card_declined",
        "count": 80,
    }
    assert trigger["links"] == [
        {"href": "https://status.stripe.com", "text": "https://status.stripe.com"}
    ]
    assert resolve == {
        "routing_key": "R0UTINGKEY",
        "event_action": "resolve",
        "dedup_key": firing().fingerprint,
    }


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (400, False)])
def test_pagerduty_retries_throttling_and_outages_but_not_a_bad_event(
    http: HttpRecorder, session: requests.Session, status: int, retryable: bool
) -> None:
    http.respond_with([(status, '{"status":"invalid event"}')])
    config = _model(
        cfg.PagerDutyReceiver, type="pagerduty", routing_key="k", url=http.url_for("/v2/enqueue")
    )
    with pytest.raises(DeliveryError) as caught:
        PagerDutyReceiver("pd", config, session).send(firing(severity="warning"))
    assert caught.value.retryable is retryable
    assert http.requests[0].json()["payload"]["severity"] == "warning"


def test_pagerduty_url_defaults_to_the_events_api() -> None:
    config = _model(cfg.PagerDutyReceiver, type="pagerduty", routing_key="k")
    assert config.url == "https://events.pagerduty.com/v2/enqueue"


# --- Prometheus Alertmanager (the real one) -----------------------------------------------


def test_alertmanager_shows_our_alert_with_its_labels_then_its_resolution(
    sqlite_db: PaymentsDb, session: requests.Session, tmp_path: Path
) -> None:
    with AlertmanagerServer(tmp_path) as am:
        config = parse_config(
            {
                "source": {"url": sqlite_db.url, "table": sqlite_db.table},
                "detection": {
                    "outage": {"for": "0s", "keep_firing_for": "0s"},
                    "sla_breach": {"enabled": False},
                    "no_data": {"enabled": False},
                },
                "receivers": {
                    "am": {
                        "type": "alertmanager",
                        "url": am.url,
                        "resend_interval": "10m",
                        "generator_url": "http://detector.example/status",
                    }
                },
                "route": {"receivers": ["am"]},
            },
            env={},
        )
        # Alertmanager judges endsAt by its own clock, so simulated time starts just behind it.
        start = datetime.now(UTC).replace(second=0, microsecond=0) - 10 * MINUTE
        sqlite_db.steady("stripe", start - 5 * MINUTE, 5, per_minute=10, failed=10)
        sqlite_db.steady("stripe", start, 6, per_minute=10, failed=0)
        clock = Clock(start)
        with in_process_daemon(config, f"sqlite:///{tmp_path}/s.db", clock, session) as daemon:
            daemon.tick()
            daemon.deliver()
            (alert,) = _eventually(am.alerts, lambda found: len(found) == 1)
            assert alert["labels"] == {
                "alertname": "outage",
                "gateway": "stripe",
                "rule": "outage",
                "severity": "critical",
            }
            assert alert["status"]["state"] == "active"
            assert alert["annotations"]["summary"].startswith("stripe")
            assert alert["generatorURL"] == "http://detector.example/status"
            starts = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00"))
            assert start - 10 * MINUTE <= starts <= start

            for _ in range(6):
                clock.now += MINUTE
                daemon.tick()
                daemon.deliver()
            assert [d["event"] for d in daemon.store.deliveries()] == ["firing", "resolved"]
            # Resolved (endsAt in the past): no longer among the alerts Alertmanager lists.
            assert _eventually(am.alerts, lambda found: found == []) == []


def test_after_an_escalation_alertmanager_lists_only_the_critical_alert(
    session: requests.Session, tmp_path: Path
) -> None:
    config = parse_config(
        {"detection": {"sla_breach": {"for": "2m"}}, "gateways": {"stripe": {}}}, env={}
    )
    book = AlertBook(config)
    # Alertmanager judges endsAt by its own clock, so simulated time starts just behind it.
    start = datetime.now(UTC).replace(microsecond=0) - 10 * MINUTE

    def minute(offset: int, severity: str) -> list[Notification]:
        finding = Finding(
            "sla_breach",
            "stripe",
            severity,  # type: ignore[arg-type]
            f"stripe fails too often ({severity})",
            start - 5 * MINUTE,
            Evidence(value=0.1, payments=100, failures=10, baseline=0.02),
        )
        result = RuleResult("sla_breach", ["stripe"], np.array([True]), lambda _: finding)
        transitions = book.observe(result, start + offset * MINUTE)
        return [notification_for(t, config) for t in transitions]

    with AlertmanagerServer(tmp_path) as am:
        receiver_config = _model(
            cfg.AlertmanagerReceiver, type="alertmanager", url=am.url, resend_interval="10m"
        )
        receiver = AlertmanagerReceiver("am", receiver_config, session)
        warned = [n for offset in range(3) for n in minute(offset, "warning")]
        receiver.send_group(warned)
        (alert,) = _eventually(am.alerts, lambda found: len(found) == 1)
        assert alert["labels"]["severity"] == "warning"

        escalated = minute(3, "critical")
        assert [(n.event, n.severity) for n in escalated] == [("firing", "critical")]
        receiver.send_group(escalated)
        active = _eventually(
            am.alerts, lambda found: [a["labels"]["severity"] for a in found] == ["critical"]
        )
        assert [(a["labels"]["severity"], a["status"]["state"]) for a in active] == [
            ("critical", "active")
        ]


def _eventually(read: Any, done: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_alertmanager_receiver_posts_endsat_ahead_for_firing_and_at_resolution(
    http: HttpRecorder, session: requests.Session
) -> None:
    config = _model(cfg.AlertmanagerReceiver, type="alertmanager", url=http.url + "/")
    receiver = AlertmanagerReceiver("am", config, session)
    receiver.send_group([firing(), firing(event="resolved", at="2024-05-01T11:00:00+00:00")])
    (request,) = http.requests
    assert request.path == "/api/v2/alerts"
    active, resolved = request.json()
    assert active["endsAt"] == "2024-05-01T10:29:00Z"  # four one-minute resend intervals
    assert resolved["endsAt"] == "2024-05-01T11:00:00Z"
    assert active["startsAt"] == "2024-05-01T10:00:00Z"


# --- webhook: signature and Alertmanager format --------------------------------------------


def verify(secret: bytes, body: bytes, timestamp: str, signature: str) -> bool:
    """The verification snippet of docs/receivers.md, run here so that it stays right."""
    if abs(time.time() - int(timestamp)) > 300:
        return False  # too old: a replay
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + expected, signature)


def test_a_signed_webhook_verifies_with_the_readme_snippet(
    http: HttpRecorder, session: requests.Session
) -> None:
    config = _model(
        cfg.WebhookReceiver, type="webhook", url=http.url_for("/hook"), signing_secret="s3cret"
    )
    WebhookReceiver("hook", config, session).send(firing())
    (request,) = http.requests
    timestamp = request.header("X-Detector-Timestamp") or ""
    signature = request.header("X-Detector-Signature") or ""
    assert verify(b"s3cret", request.body, timestamp, signature)
    assert not verify(b"wrong", request.body, timestamp, signature)
    assert not verify(b"s3cret", request.body.replace(b"stripe", b"adyen"), timestamp, signature)


def test_an_unsigned_webhook_has_no_signature_header(
    http: HttpRecorder, session: requests.Session
) -> None:
    config = _model(cfg.WebhookReceiver, type="webhook", url=http.url_for("/hook"))
    WebhookReceiver("hook", config, session).send(firing())
    assert http.requests[0].header("X-Detector-Signature") is None


def test_the_alertmanager_webhook_format_is_version_4(
    http: HttpRecorder, session: requests.Session
) -> None:
    config = _model(
        cfg.WebhookReceiver, type="webhook", url=http.url_for("/hook"), format="alertmanager"
    )
    resolved = firing(event="resolved", at="2024-05-01T11:00:00+00:00")
    WebhookReceiver("ops", config, session).send_group([resolved])
    document = http.requests[0].json()
    assert {k: document[k] for k in ("version", "status", "receiver", "truncatedAlerts")} == {
        "version": "4",
        "status": "resolved",
        "receiver": "ops",
        "truncatedAlerts": 0,
    }
    assert document["commonLabels"]["gateway"] == "stripe"
    (alert,) = document["alerts"]
    assert alert["status"] == "resolved"
    assert alert["endsAt"] == "2024-05-01T11:00:00Z"
    assert alert["fingerprint"] == firing().fingerprint
    assert alert["annotations"]["summary"] == firing().summary
    assert http.requests[0].header("Idempotency-Key") == resolved.idempotency_key


# --- email: threading and groups -----------------------------------------------------------


def test_firing_and_resolved_mails_are_one_thread() -> None:
    episode = "2024-05-01T10:25:00+00:00"
    first = firing(episode=episode)
    reminder = firing(episode=episode, repeat=True, at="2024-05-01T14:25:00+00:00")
    resolved = firing(episode=episode, event="resolved", at="2024-05-01T15:00:00+00:00")
    with SmtpRecorder() as smtp:
        receiver = EmailReceiver("mail", email(smtp.port))
        for n in (first, reminder, resolved):
            receiver.send(n)
    opening, *replies = smtp.messages
    root = opening["Message-ID"]
    assert root.startswith("<alert-")
    assert "In-Reply-To" not in opening
    for reply in replies:
        assert reply["In-Reply-To"] == root
        assert reply["References"] == root
        assert reply["Message-ID"] != root
        assert reply["Auto-Submitted"] == "auto-generated"
    assert replies[1]["Subject"] == "[RESOLVED] sla_breach on stripe"


def test_a_group_is_one_mail_with_every_alert() -> None:
    adyen = replace(
        firing(),
        fingerprint="sla_breach:gateway=adyen",
        idempotency_key="adyen-key",
        labels={"rule": "sla_breach", "severity": "critical", "gateway": "adyen"},
        summary="adyen fails 9% of payments",
    )
    with SmtpRecorder() as smtp:
        EmailReceiver("mail", email(smtp.port)).send_group([firing(), adyen])
    (message,) = smtp.messages
    assert message["Subject"] == "[FIRING critical] sla_breach on stripe, adyen"
    plain = message.get_body(("plain",))
    assert plain is not None
    body = plain.get_content()
    assert "stripe fails 12.4% of payments" in body
    assert "adyen fails 9% of payments" in body


# --- detector notify test ------------------------------------------------------------------


def _receiver_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        f"receivers:\n  ops: {{type: webhook, url: '{url}'}}\nroute:\n  receivers: [ops]\n"
    )
    return path


def test_notify_test_sends_a_test_message_and_exits_0(
    http: HttpRecorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _receiver_config(tmp_path, http.url_for("/hook"))
    assert main(["notify", "test", "ops", "--config", str(path)]) == 0
    assert "sent a test notification to ops" in capsys.readouterr().out
    body = http.requests[0].json()
    assert body["rule"] == "test"
    assert "Test notification for receiver ops" in body["summary"]


def test_notify_test_exits_2_with_the_receivers_error(
    http: HttpRecorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    http.respond_with([(401, "invalid token")])
    path = _receiver_config(tmp_path, http.url_for("/hook"))
    assert main(["notify", "test", "ops", "--config", str(path)]) == 2
    assert "error: receiver ops: POST" in (err := capsys.readouterr().err)
    assert "HTTP 401" in err
    assert "invalid token" in err
    assert main(["notify", "test", "opz", "--config", str(path)]) == 2
    assert "no receiver 'opz'" in capsys.readouterr().err


# --- message templates ---------------------------------------------------------------------


def test_templates_reword_the_subject_the_body_and_the_slack_header(
    http: HttpRecorder, session: requests.Session
) -> None:
    templates = {
        "title": "$gateway is failing ($severity)",
        "text": "$summary\nRate: $failure_rate\nFail over to $backup_gateway.\n\n$text",
    }
    with SmtpRecorder() as smtp:
        EmailReceiver("mail", email(smtp.port, templates=templates)).send(firing())
    (mail,) = smtp.messages
    assert mail["Subject"] == "stripe is failing (critical)"
    plain = mail.get_body(("plain",))
    assert plain is not None
    body = plain.get_content().replace("\r\n", "\n")
    assert body.startswith("stripe fails 12.4% of payments, 6.2x its 2.0% SLA\nRate: 12.4%")
    assert "Fail over to adyen." in body
    assert "Top error codes: card_declined (80)" in body  # $text: the standard body

    slack = _model(cfg.SlackReceiver, type="slack", url=http.url_for("/s"), templates=templates)
    hook = _model(cfg.WebhookReceiver, type="webhook", url=http.url_for("/w"), templates=templates)
    SlackReceiver("slack", slack, session).send(firing())
    WebhookReceiver("hook", hook, session).send(firing())
    message, document = (r.json() for r in http.requests)
    assert message["blocks"][0]["text"]["text"].endswith("stripe is failing (critical)")
    assert document["title"] == "stripe is failing (critical)"
    assert document["text"].startswith("stripe fails 12.4%")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("$gatway down", "unknown field $gatway; the fields are $title, $text"),
        ("costs 5$", "write $$ for a dollar sign"),
        ("$gateway\r\nis down", "the title is one line"),
        ("$gateway\nis down", "remove the line break"),
    ],
)
def test_a_bad_template_is_refused_at_load_with_its_key_path(template: str, message: str) -> None:
    with pytest.raises(cfg.ConfigError) as raised:
        parse_config(
            {"receivers": {"console": {"type": "console", "templates": {"title": template}}}},
            env={},
        )
    ((path, problem),) = raised.value.problems
    assert path == "receivers.console.templates.title"
    assert message in problem
