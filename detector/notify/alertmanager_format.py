"""Notifications as Alertmanager's documents: the alert of its API v2 (what the
``alertmanager`` receiver posts) and a group in its webhook format (the ``webhook``
receiver's ``format: alertmanager``), worded by :mod:`detector.notify.messages`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from detector.config import GROUP_BY_ALL, Templates
from detector.model import Notification
from detector.notify.messages import attribution_phrase, revenue_phrase, text, title

__all__ = ["alertmanager_alert", "alertmanager_webhook"]

# Prometheus label names: Alertmanager refuses alerts with others.
_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")


def _am_time(iso: str) -> str:
    return iso.replace("+00:00", "Z")


def alertmanager_alert(
    n: Notification,
    ends_at: str | None = None,
    generator_url: str | None = None,
    templates: Templates | None = None,
) -> dict[str, Any]:
    """``n`` as an Alertmanager alert (the API v2 postable alert and the webhook's alert).

    ``alertname`` is the rule; the other labels keep their names (made valid Prometheus
    label names). A resolved alert ends when it resolved; a firing one at ``ends_at``.
    """
    labels = {"alertname": n.rule}
    labels.update({_LABEL_NAME.sub("_", key): value for key, value in sorted(n.labels.items())})
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {
            "summary": n.summary,
            "description": text(n, templates),
            "title": title(n, templates),
        },
        "startsAt": _am_time(n.since or n.at),
    }
    if n.evidence.attribution is not None:
        alert["annotations"]["attribution"] = attribution_phrase(n.evidence.attribution)
    revenue = revenue_phrase(n)
    if revenue:
        alert["annotations"]["revenue_at_risk"] = revenue
    if n.event == "resolved":
        alert["endsAt"] = _am_time(n.at)
    elif ends_at is not None:
        alert["endsAt"] = ends_at
    if generator_url:
        alert["generatorURL"] = generator_url
    return alert


def alertmanager_webhook(
    ns: Sequence[Notification], receiver: str, templates: Templates | None = None
) -> dict[str, Any]:
    """A group in Alertmanager's webhook format, version 4.

    ``groupLabels`` holds the labels the route groups by (``rule`` is ``alertname``; all
    shared labels for ``...``; ``alertname`` and ``gateway`` where the receiver does not
    group), ``commonLabels`` every label the alerts all share.
    """
    alerts = []
    for n in ns:
        alert = alertmanager_alert(n, templates=templates)
        alert["status"] = n.event
        alert.setdefault("endsAt", "0001-01-01T00:00:00Z")
        alert.setdefault("generatorURL", "")
        alert["fingerprint"] = n.fingerprint
        alerts.append(alert)
    common_labels = _common([a["labels"] for a in alerts])
    group_labels = {k: v for k, v in common_labels.items() if k in _group_label_names(ns[0])}
    return {
        "version": "4",
        "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}",
        "truncatedAlerts": 0,
        "status": "firing" if any(n.event == "firing" for n in ns) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": "",
        "alerts": alerts,
    }


def _group_label_names(n: Notification) -> set[str]:
    """The Alertmanager label names of the labels ``n``'s group was formed by."""
    if not n.group_by:
        return {"alertname", "gateway"}
    if GROUP_BY_ALL in n.group_by:
        return {"alertname", *(_LABEL_NAME.sub("_", key) for key in n.labels)}
    return {"alertname" if key == "rule" else _LABEL_NAME.sub("_", key) for key in n.group_by}


def _common(mappings: list[dict[str, str]]) -> dict[str, str]:
    first, *rest = mappings
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}
