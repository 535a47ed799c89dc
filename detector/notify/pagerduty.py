"""PagerDuty Events API v2: a ``trigger`` per firing notification, a ``resolve`` per resolution.

The ``dedup_key`` is the alert's fingerprint, so reminders update the open PagerDuty alert
instead of opening new ones, and the resolution closes it. PagerDuty answers 202 when it
accepted an event; 429 and 5xx are retried by the dispatcher, 400 (a malformed event or
an unknown routing key) is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detector.config import PagerDutyReceiver as PagerDutyReceiverConfig
from detector.config import Templates
from detector.model import Notification
from detector.notify import messages
from detector.notify.base import HttpReceiver
from detector.notify.http import post

__all__ = ["PagerDutyReceiver", "pagerduty_event"]

SUMMARY_MAX = 1024  # PagerDuty refuses longer summaries
CLIENT = "payment-failure-detector"


def pagerduty_event(
    n: Notification, routing_key: str, source: str, templates: Templates | None = None
) -> dict[str, Any]:
    """The Events API v2 body for ``n``; ``templates.title`` words its summary."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "resolve" if n.event == "resolved" else "trigger",
        "dedup_key": n.fingerprint,
    }
    if n.event == "resolved":
        return event
    details = messages.payload(n)
    custom_details = {
        "summary": n.summary,
        "labels": details["labels"],
        "evidence": details["evidence"],
        "since": n.since,
        "backup_gateway": n.backup_gateway,
        "idempotency_key": n.idempotency_key,
    }
    if n.evidence.attribution is not None:
        custom_details["attribution"] = messages.attribution_phrase(n.evidence.attribution)
    revenue = messages.revenue_phrase(n)
    if revenue:
        custom_details["revenue_at_risk"] = revenue
    event["payload"] = {
        "summary": (
            messages.title(n, templates)
            if templates and templates.title
            else messages.title(n) + (f": {n.summary}" if n.summary else "")
        ),
        "source": source,
        "severity": "critical" if n.severity == "critical" else "warning",
        "timestamp": n.at,
        "component": n.labels.get("gateway", "payments-source"),
        "group": "payments",
        "class": n.rule,
        "custom_details": custom_details,
    }
    if len(event["payload"]["summary"]) > SUMMARY_MAX:
        event["payload"]["summary"] = event["payload"]["summary"][: SUMMARY_MAX - 1] + "…"
    event["client"] = CLIENT
    links = [{"href": link, "text": link} for link in n.links if link.startswith("http")]
    links += [
        {"href": url, "text": f"logs of payment {i}"}
        for i, url in messages.samples(n.evidence)
        if url
    ]
    if links:
        event["links"] = links
    return event


class PagerDutyReceiver(HttpReceiver):
    """Sends each notification as a PagerDuty event; the routing key is a secret."""

    config: PagerDutyReceiverConfig

    def deliver(self, notifications: Sequence[Notification]) -> None:
        key = self.config.routing_key.get_secret_value()
        for notification in notifications:  # PagerDuty takes one event per request
            post(
                self.session,
                self.config.url,
                json_body=pagerduty_event(
                    notification, key, self.config.source, self.config.templates
                ),
                timeout=self.timeout,
                secrets=self.secrets,
            )
