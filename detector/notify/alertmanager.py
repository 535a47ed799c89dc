"""Prometheus Alertmanager: POSTs alerts to its ``/api/v2/alerts``, as Prometheus does.

Alertmanager considers an alert resolved once its ``endsAt`` has passed, so firing alerts
are re-posted every ``resend_interval`` with ``endsAt`` four intervals ahead (a stopped
detector's alerts resolve by themselves soon after), and a resolution is posted with
``endsAt`` set to the time it resolved. Alertmanager does its own grouping, silencing and
routing; this receiver sends what is due at once, in one request.

``severity`` is one of the labels, and Alertmanager tells alerts apart by their labels: when
an alert escalates from warning to critical, the warning one is posted too, ended at the
escalation, so that only the critical alert stays active.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import requests

from detector.config import AlertmanagerReceiver as AlertmanagerReceiverConfig
from detector.model import Notification
from detector.notify import alertmanager_format
from detector.notify.base import HttpReceiver
from detector.notify.http import post
from detector.timeutil import iso_z

__all__ = ["AlertmanagerReceiver"]

# Prometheus sets endsAt this many resend intervals ahead.
ENDS_AFTER_INTERVALS = 4


class AlertmanagerReceiver(HttpReceiver):
    """Posts notifications as Alertmanager alerts, all that are due in one request."""

    config: AlertmanagerReceiverConfig
    groups = False

    def __init__(
        self, name: str, config: AlertmanagerReceiverConfig, session: requests.Session
    ) -> None:
        super().__init__(name, config, session)
        self.resend_interval = config.resend_interval

    def alerts(self, notifications: Sequence[Notification]) -> list[dict[str, object]]:
        """The request body: one alert per notification, and the label set an escalation
        replaces, ended."""
        out = []
        for n in notifications:
            if _escalated(n):
                out.append(
                    alertmanager_format.alertmanager_alert(
                        _before_escalation(n),
                        None,
                        self.config.generator_url,
                        self.config.templates,
                    )
                )
            at = datetime.fromisoformat(n.at)
            ends = at + ENDS_AFTER_INTERVALS * self.config.resend_interval
            ends_at = iso_z(ends)
            out.append(
                alertmanager_format.alertmanager_alert(
                    n, ends_at, self.config.generator_url, self.config.templates
                )
            )
        return out

    def deliver(self, notifications: Sequence[Notification]) -> None:
        post(
            self.session,
            self.config.url.rstrip("/") + "/api/v2/alerts",
            json_body=self.alerts(notifications),
            timeout=self.timeout,
            secrets=self.secrets,
        )


def _escalated(n: Notification) -> bool:
    """A firing notification that raised the severity of an alert already firing: not a
    reminder, and later than the firing that began its episode."""
    return (
        n.event == "firing"
        and not n.repeat
        and n.episode not in ("", n.at)
        and n.severity == "critical"
    )


def _before_escalation(n: Notification) -> Notification:
    """The alert as it fired before ``n`` escalated it, resolved when it escalated."""
    return replace(
        n, event="resolved", severity="warning", labels={**n.labels, "severity": "warning"}
    )
