"""The alert lifecycle in simulated time: pending, firing, escalation, hysteresis."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from detector.alerts import Alert, AlertBook, Transition, notification_for
from detector.config import Config, parse_config
from detector.model import Evidence
from detector.rules import Finding, RuleResult

from .conftest import T0

MINUTE = timedelta(minutes=1)


def _config(**sla_breach: object) -> Config:
    return parse_config(
        {
            "detection": {"sla_breach": {"for": "2m", "keep_firing_for": "3m", **sla_breach}},
            "alerting": {"repeat_interval": "1h"},
            "gateways": {
                "stripe": {"backup": "adyen", "links": ["https://status.example/stripe"]},
                "adyen": {},
            },
        },
        env={},
    )


def _result(active: bool, severity: str = "warning", gateway: str = "stripe") -> RuleResult:
    def build(_: int) -> Finding:
        return Finding(
            "sla_breach",
            gateway,
            severity,  # type: ignore[arg-type]
            f"{gateway} {'breach' if active else 'ok'}",
            T0 - 5 * MINUTE,
            Evidence(value=0.1, payments=100, failures=10, baseline=0.02),
        )

    return RuleResult("sla_breach", [gateway], np.array([active]), build)


def _run(
    book: AlertBook, pattern: str, start: datetime = T0, severity: str = "warning"
) -> list[tuple[int, str, bool]]:
    """Feed one verdict per minute ('x' breach, '.' fine); return (minute, event, repeat)."""
    events = []
    for minute, mark in enumerate(pattern):
        for t in book.observe(_result(mark == "x", severity), start + minute * MINUTE):
            events.append((minute, t.event, t.repeat))
    return events


def test_fires_only_after_the_for_duration_and_resolves_after_keep_firing_for() -> None:
    book = AlertBook(_config())
    assert _run(book, "xxx....") == [(2, "firing", False), (5, "resolved", False)]
    assert book.alerts == {}


def test_a_blip_shorter_than_for_never_notifies() -> None:
    book = AlertBook(_config())
    assert _run(book, "xx.xx.x.") == []


def test_a_flapping_condition_stays_one_alert() -> None:
    book = AlertBook(_config())
    # Clears for two minutes at a time, less than keep_firing_for: no resolve, no re-fire.
    assert _run(book, "xxx..x..x..x.....") == [(2, "firing", False), (14, "resolved", False)]


def test_escalation_to_critical_is_notified_at_once() -> None:
    book = AlertBook(_config())
    _run(book, "xxx")
    escalated = book.observe(_result(True, "critical"), T0 + 3 * MINUTE)
    assert [(t.event, t.repeat, t.alert.severity) for t in escalated] == [
        ("firing", False, "critical")
    ]
    assert book.observe(_result(True, "warning"), T0 + 4 * MINUTE) == []


def test_state_survives_a_restart_without_a_duplicate() -> None:
    book = AlertBook(_config())
    _run(book, "xxx")
    saved = {key: Alert.from_dict(alert.to_dict()) for key, alert in book.alerts.items()}
    restarted = AlertBook(_config())
    restarted.restore(saved)
    assert _run(restarted, "xx...", start=T0 + 3 * MINUTE) == [(4, "resolved", False)]


def test_the_notification_carries_evidence_backup_and_a_stable_key() -> None:
    config = _config()
    book = AlertBook(config)
    transitions: list[Transition] = []
    for minute, mark in enumerate("xxx...."):
        transitions += book.observe(_result(mark == "x"), T0 + minute * MINUTE)
    firing, resolved = (notification_for(t, config) for t in transitions)
    assert firing.labels == {"rule": "sla_breach", "gateway": "stripe", "severity": "warning"}
    assert firing.backup_gateway == "adyen"
    assert firing.links == ("https://status.example/stripe",)
    assert firing.evidence.failures == 10
    assert firing.since == "2026-11-20T11:55:00Z"
    assert firing.at == "2026-11-20T12:02:00Z"
    assert firing.fingerprint == resolved.fingerprint
    assert firing.idempotency_key != resolved.idempotency_key
    assert notification_for(transitions[0], config).idempotency_key == firing.idempotency_key


def test_with_an_external_url_every_message_links_to_the_gateways_row_first() -> None:
    config = parse_config(
        {
            "server": {"external_url": "https://detector.example.com/payments"},
            "gateways": {"stripe": {"links": ["https://status.example/stripe"]}},
        },
        env={},
    )
    book = AlertBook(config)
    (firing,) = (notification_for(t, config) for t in book.observe(_result(True), T0))
    assert firing.links == (
        "https://detector.example.com/payments/#gw-stripe",
        "https://status.example/stripe",
    )
