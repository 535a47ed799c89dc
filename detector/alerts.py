"""The alert lifecycle: inactive -> pending -> firing -> resolved, one alert per (rule, labels).

A condition must hold for the rule's ``for`` before the alert fires, and a firing alert
stays firing for ``keep_firing_for`` after its condition clears, so a borderline gateway
does not flap. An escalation from warning to critical is a transition of its own; reminders
for alerts still firing are the router's business (each route has its ``repeat_interval``).
Nothing here knows whether it runs live or in a backtest: time comes in with every call.

The book also remembers when each alert last resolved (:attr:`AlertBook.resolved`): the
SLA bank counts a series' evidence only from then on, so a resolved alert cannot fire again
on the evidence it already reported.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

from detector.config import Config
from detector.model import Evidence, Notification
from detector.rules import Finding, RuleResult
from detector.timeutil import iso_z

__all__ = [
    "Alert",
    "AlertBook",
    "Resolution",
    "Transition",
    "fingerprint",
    "notification_for",
]

_SEVERITY_RANK = {"warning": 1, "critical": 2}


def fingerprint(labels: dict[str, str]) -> str:
    """A stable id for an alert's identity labels."""
    text = json.dumps(labels, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _labels(finding: Finding) -> dict[str, str]:
    labels = {"rule": finding.rule}
    if finding.gateway is not None:
        labels["gateway"] = finding.gateway
    labels.update(finding.series)
    return labels


@dataclass
class Alert:
    """A pending or firing alert and what the last tick saw of it."""

    fingerprint: str
    labels: dict[str, str]  # identity: rule, gateway and the series' own labels
    state: Literal["pending", "firing"]
    severity: Literal["warning", "critical"]
    summary: str
    since: datetime  # estimated start of the condition
    active_since: datetime  # first tick that saw the condition
    last_active: datetime  # latest tick that saw it
    evidence: Evidence
    fired_at: datetime | None = None
    # False while its firing has been muted (silence, maintenance, inhibition) and nobody
    # was told yet: it is then notified when the mute ends, and its resolution is not.
    notified: bool = True
    # Route id -> ISO time that route last notified this alert (for repeat_interval).
    reminded: dict[str, str] = field(default_factory=dict)
    # A few of its failed payments when it fired, for the status page (the evidence is
    # each tick's own and has none).
    sample_payment_ids: tuple[str, ...] = ()

    @property
    def rule(self) -> str:
        return self.labels["rule"]

    @property
    def routing_labels(self) -> dict[str, str]:
        """What routes, silences and inhibit rules match: the identity plus the severity."""
        return {**self.labels, "severity": self.severity}

    def copy(self) -> Alert:
        return replace(self, labels=dict(self.labels), reminded=dict(self.reminded))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("since", "active_since", "last_active", "fired_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        data = dict(data)
        for key in ("since", "active_since", "last_active", "fired_at"):
            data[key] = datetime.fromisoformat(data[key]) if data[key] else None
        data["sample_payment_ids"] = tuple(data["sample_payment_ids"])
        return cls(evidence=Evidence.from_dict(data.pop("evidence")), **data)


@dataclass(frozen=True)
class Resolution:
    """When an alert last resolved, and whose it was."""

    labels: dict[str, str]
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "at": self.at.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resolution:
        return cls(dict(data["labels"]), datetime.fromisoformat(data["at"]))


@dataclass(frozen=True)
class Transition:
    """An alert started firing, is still firing (repeat), escalated, or resolved."""

    event: Literal["firing", "resolved"]
    alert: Alert  # a copy as of the transition
    at: datetime
    repeat: bool = False


class AlertBook:
    """Every pending and firing alert, updated from each tick's rule results."""

    def __init__(self, config: Config):
        self.config = config
        self.alerts: dict[str, Alert] = {}
        # Fingerprint -> the last resolution of that alert, while its evidence may still be
        # in the count window (see :meth:`forget_resolved_before`).
        self.resolved: dict[str, Resolution] = {}

    def _timing(self, rule: str) -> tuple[timedelta, timedelta]:
        settings = self.config.detection.settings_of(rule)
        if settings is None:  # source_down: fire and resolve on the tick that sees it
            return timedelta(0), timedelta(0)
        return settings.for_, settings.keep_firing_for

    def _has(self, rule: str) -> bool:
        return any(alert.rule == rule for alert in self.alerts.values())

    def snapshot(self) -> dict[str, Alert]:
        return {key: alert.copy() for key, alert in self.alerts.items()}

    def restore(
        self, alerts: dict[str, Alert], resolved: dict[str, Resolution] | None = None
    ) -> None:
        """Take these alerts (and, if given, these resolutions) as the book's state."""
        self.alerts = {key: alert.copy() for key, alert in alerts.items()}
        if resolved is not None:
            self.resolved = dict(resolved)

    def forget_resolved_before(self, moment: datetime) -> None:
        """Drop the resolutions no later than ``moment``: no evidence before them is left."""
        self.resolved = {k: r for k, r in self.resolved.items() if r.at > moment}

    def observe(self, result: RuleResult, now: datetime) -> list[Transition]:
        """Apply one rule's verdicts for every gateway."""
        if not result.active.any() and not self._has(result.rule):
            return []  # the usual tick: nothing to change, no message to write
        findings = {}
        for index in np.flatnonzero(result.active):
            finding = result.finding(int(index))
            findings[fingerprint(_labels(finding))] = finding
        cleared = {}
        position: dict[str, int] | None = None  # row of each alert identity, when needed
        for key, alert in self.alerts.items():
            if alert.rule == result.rule and key not in findings:
                if position is None:
                    rows = range(len(result.gateways))
                    position = {fingerprint(result.identity(i)): i for i in rows}
                row = position.get(key)
                if (
                    row is not None
                    and alert.state == "firing"
                    and result.holding is not None
                    and result.holding[row]
                ):
                    alert.last_active = now  # still as bad: keep_firing_for counts from here
                    continue
                cleared[key] = result.finding(row) if row is not None else None
        return self._apply(result.rule, findings, cleared, now)

    def observe_findings(
        self, rule: str, findings: list[Finding], now: datetime
    ) -> list[Transition]:
        """Apply verdicts made outside the rule table (the source-down alert)."""
        if not findings and not self._has(rule):
            return []
        active = {fingerprint(_labels(f)): f for f in findings}
        cleared: dict[str, Finding | None] = {
            key: None
            for key, alert in self.alerts.items()
            if alert.rule == rule and key not in active
        }
        return self._apply(rule, active, cleared, now)

    def _apply(
        self,
        rule: str,
        active: dict[str, Finding],
        cleared: dict[str, Finding | None],
        now: datetime,
    ) -> list[Transition]:
        wait_for, keep_firing_for = self._timing(rule)
        transitions = []
        for key, finding in active.items():
            transition = self._still_active(key, finding, now, wait_for)
            if transition:
                transitions.append(transition)
        for key, last_finding in cleared.items():
            transition = self._cleared(key, last_finding, now, keep_firing_for)
            if transition:
                transitions.append(transition)
        return transitions

    def _still_active(
        self, key: str, finding: Finding, now: datetime, wait_for: timedelta
    ) -> Transition | None:
        alert = self.alerts.get(key)
        if alert is None:
            alert = Alert(
                key,
                _labels(finding),
                "pending",
                finding.severity,
                finding.summary,
                since=finding.since,
                active_since=now,
                last_active=now,
                evidence=finding.evidence,
            )
            self.alerts[key] = alert
        escalated = _SEVERITY_RANK[finding.severity] > _SEVERITY_RANK[alert.severity]
        alert.severity = finding.severity if escalated else alert.severity
        alert.summary, alert.evidence, alert.last_active = finding.summary, finding.evidence, now
        if alert.state == "pending":
            if now - alert.active_since < wait_for:
                return None
            alert.state, alert.fired_at = "firing", now
            return Transition("firing", alert.copy(), now)
        if escalated:
            return Transition("firing", alert.copy(), now)
        return None

    def _cleared(
        self, key: str, finding: Finding | None, now: datetime, keep_firing_for: timedelta
    ) -> Transition | None:
        alert = self.alerts[key]
        if alert.state == "pending":
            del self.alerts[key]
            return None
        if now - alert.last_active < keep_firing_for:
            return None
        del self.alerts[key]
        self.resolved[key] = Resolution(dict(alert.labels), now)
        if finding is not None:
            alert.summary, alert.evidence = finding.summary, finding.evidence
        return Transition("resolved", alert, now)


def notification_for(transition: Transition, config: Config) -> Notification:
    """The message every receiver (and the backtest) gets for a transition."""
    alert = transition.alert
    gateway = alert.labels.get("gateway")
    settings = config.gateways.get(gateway) if gateway else None
    episode = iso_z(alert.fired_at or alert.active_since)
    kind = "repeat:" + iso_z(transition.at) if transition.repeat else transition.event
    if transition.event == "firing" and not transition.repeat and alert.fired_at != transition.at:
        kind = f"escalated:{iso_z(transition.at)}"
    return Notification(
        event=transition.event,
        fingerprint=alert.fingerprint,
        idempotency_key=f"{alert.fingerprint}:{episode}:{kind}",
        rule=alert.rule,
        severity=alert.severity,
        labels=alert.routing_labels,
        summary=alert.summary,
        at=iso_z(transition.at),
        since=iso_z(alert.since),
        repeat=transition.repeat,
        episode=episode,
        evidence=alert.evidence,
        backup_gateway=settings.backup if settings else None,
        links=_links(config, gateway, settings.links if settings else ()),
    )


def _links(config: Config, gateway: str | None, configured: tuple[str, ...]) -> tuple[str, ...]:
    """The gateway's row on our status page first (where it is published), then its own."""
    status = config.server.status_link(gateway)
    return (status, *configured) if status else configured
