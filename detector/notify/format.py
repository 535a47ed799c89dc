"""Notification -> words: the one place every receiver takes its wording from.

Receivers must not phrase figures themselves, so that the console, Slack, email and the
webhook always agree on what an alert says.

The webhook document (:func:`payload`), version ``"1"``::

    {
      "version": "1",
      "event": "firing" | "resolved",
      "repeat": bool,                      # a reminder that the alert is still firing
      "fingerprint": str,                  # stable per (rule, labels)
      "idempotency_key": str,              # same for every retry of this send
      "rule": str, "severity": "warning" | "critical",
      "labels": {str: str},
      "summary": str,
      "at": str, "since": str,             # ISO-8601 UTC
      "evidence": {
        "value": float | null,             # failure rate 0..1 in the window
        "interval_low": float | null, "interval_high": float | null,   # Wilson 95%
        "baseline": float | null,          # SLA failure rate 0..1
        "payments": int, "failures": int, "window_minutes": int,
        "p_value": float | null,
        "expected_payments": float | null,
        "top_error_codes": [{"code": str, "count": int}],
        "sample_payment_ids": [str]
      },
      "backup_gateway": str | null,
      "links": [str],
      "title": str,                        # title(n)
      "text": str                          # text(n)
    }

Fields may be added within version "1"; none are removed or change meaning.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any

from detector.notify.base import Evidence, Notification

__all__ = [
    "PAYLOAD_VERSION",
    "Fact",
    "duration",
    "facts",
    "html",
    "payload",
    "percent",
    "rate_phrase",
    "text",
    "title",
]

PAYLOAD_VERSION = "1"

# An en dash: "10.1%" dash "15.0%" reads as a range, where a hyphen could read as a minus.
RANGE_DASH = "\u2013"

# Labels the title already says; every other label names the series (method=card, ...).
_TITLE_LABELS = frozenset({"rule", "severity", "gateway"})


@dataclass(frozen=True)
class Fact:
    """One line of an alert's details: a stable ``key``, a ``label`` and its ``value``."""

    key: str
    label: str
    value: str


def percent(rate: float) -> str:
    """Format a rate in 0..1 as a percentage.

    >>> percent(0.124), percent(0.02), percent(0.0005), percent(0)
    ('12.4%', '2.0%', '0.05%', '0.0%')
    """
    pct = rate * 100
    # One decimal hides small rates entirely; keep two significant digits there.
    if 0 < abs(pct) < 0.1:
        return f"{pct:.2g}%"
    return f"{pct:.1f}%"


def duration(span: timedelta) -> str:
    """Format a span the way people say it.

    >>> duration(timedelta(minutes=30)), duration(timedelta(minutes=90))
    ('30 min', '1 h 30 min')
    >>> duration(timedelta(seconds=45)), duration(timedelta(days=2, hours=3))
    ('45 s', '2 d 3 h')
    """
    seconds = max(0, round(span.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def rate_phrase(evidence: Evidence, *, with_baseline: bool = True) -> str | None:
    """``12.4% (95% CI 10.1% to 15.0%) vs SLA 2.0%`` (en dash), or None without a rate."""
    if evidence.value is None or not math.isfinite(evidence.value):
        return None
    phrase = percent(evidence.value)
    if evidence.interval_low is not None and evidence.interval_high is not None:
        low, high = percent(evidence.interval_low), percent(evidence.interval_high)
        phrase += f" (95% CI {low}{RANGE_DASH}{high})"
    if with_baseline and evidence.baseline is not None:
        phrase += f" vs SLA {percent(evidence.baseline)}"
    return phrase


def _series(n: Notification) -> str:
    """``"stripe"``, ``"stripe (method=card)"`` or ``""`` when no gateway is involved."""
    extra = ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items()) if k not in _TITLE_LABELS)
    gateway = n.labels.get("gateway", "")
    if gateway and extra:
        return f"{gateway} ({extra})"
    return gateway or (f"({extra})" if extra else "")


def title(n: Notification) -> str:
    """One line naming state, severity, rule and series.

    ``[FIRING critical] outage on stripe``, ``[STILL FIRING warning] sla_breach on adyen``
    for a reminder, ``[RESOLVED] sla_breach on adyen``.
    """
    if n.event == "resolved":
        head = "[RESOLVED]"
    elif n.repeat:
        head = f"[STILL FIRING {n.severity}]"
    else:
        head = f"[FIRING {n.severity}]"
    series = _series(n)
    return f"{head} {n.rule} on {series}" if series else f"{head} {n.rule}"


def _elapsed(since: str, at: str) -> timedelta | None:
    try:
        span = datetime.fromisoformat(at) - datetime.fromisoformat(since)
    except (ValueError, TypeError):
        return None  # naive vs aware or unparsable: better no figure than a wrong one
    return span if span >= timedelta(0) else None


def facts(n: Notification) -> list[Fact]:
    """The details of ``n`` in reading order, leaving out whatever is unknown."""
    e = n.evidence
    out: list[Fact] = []
    rate = rate_phrase(e)
    if rate is not None:
        out.append(Fact("failure_rate", "Failure rate", rate))
    elif e.baseline is not None:
        out.append(Fact("sla", "SLA", percent(e.baseline)))
    window = (
        f" in the last {duration(timedelta(minutes=e.window_minutes))}" if e.window_minutes else ""
    )
    if e.expected_payments is not None and math.isfinite(e.expected_payments):
        out.append(
            Fact("volume", "Payments", f"{e.payments}{window}, expected {e.expected_payments:.0f}")
        )
    elif e.payments or e.failures or e.window_minutes:
        out.append(Fact("counts", "Failures", f"{e.failures} of {e.payments} payments{window}"))
    if e.p_value is not None and math.isfinite(e.p_value):
        out.append(Fact("p_value", "p-value", f"{e.p_value:.1e}"))
    if n.since:
        elapsed = _elapsed(n.since, n.at) if n.at else None
        out.append(
            Fact("since", "Since", n.since + (f" (for {duration(elapsed)})" if elapsed else ""))
        )
    if n.at:
        out.append(Fact("at", "Resolved at" if n.event == "resolved" else "At", n.at))
    if e.top_error_codes:
        codes = ", ".join(f"{code} ({count})" for code, count in e.top_error_codes)
        out.append(Fact("error_codes", "Top error codes", codes))
    if e.sample_payment_ids:
        out.append(Fact("sample_ids", "Sample payment ids", ", ".join(e.sample_payment_ids)))
    if n.backup_gateway:
        if n.event == "resolved":
            out.append(
                Fact(
                    "backup",
                    "Backup gateway",
                    f"{n.backup_gateway} (switch back if you failed over)",
                )
            )
        else:
            out.append(Fact("backup", "Fail over to backup", n.backup_gateway))
    if n.links:
        out.append(Fact("links", "Links", " ".join(n.links)))
    if n.labels:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items()))
        out.append(Fact("labels", "Labels", labels))
    return out


def text(n: Notification) -> str:
    """Plain-text body: the summary, a blank line, then one ``Label: value`` line per fact."""
    lines = [n.summary, ""] if n.summary else []
    lines += [f"{fact.label}: {fact.value}" for fact in facts(n)]
    return "\n".join(lines) + "\n"


_COLOURS = {"critical": "#b00020", "warning": "#b26a00", "resolved": "#1b7f3b"}


def _html_value(fact: Fact, n: Notification) -> str:
    if fact.key != "links":
        return escape(fact.value)
    anchors = []
    for link in n.links:
        # Only web links become anchors: a javascript: or data: href is never clickable.
        if link.startswith(("http://", "https://")):
            anchors.append(f'<a href="{escape(link)}">{escape(link)}</a>')
        else:
            anchors.append(escape(link))
    return "<br>".join(anchors)


def html(n: Notification) -> str:
    """The same content as :func:`text` as a small self-contained HTML document."""
    heading = escape(title(n))
    colour = _COLOURS["resolved" if n.event == "resolved" else n.severity]
    cell = "padding:4px 12px 4px 0;vertical-align:top;text-align:left"
    rows = "\n".join(
        f'<tr><th style="{cell};white-space:nowrap">{escape(fact.label)}</th>'
        f'<td style="{cell}">{_html_value(fact, n)}</td></tr>'
        for fact in facts(n)
    )
    summary = f"<p>{escape(n.summary)}</p>\n" if n.summary else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n'
        f'<head><meta charset="utf-8"><title>{heading}</title></head>\n'
        '<body style="font-family:Helvetica,Arial,sans-serif;font-size:14px">\n'
        f'<h2 style="color:{colour}">{heading}</h2>\n'
        f"{summary}"
        f'<table style="border-collapse:collapse">\n{rows}\n</table>\n'
        "</body>\n"
        "</html>\n"
    )


def _finite(value: float | None) -> float | None:
    # JSON has no NaN or Infinity; strict parsers reject the whole document over one.
    return value if value is None or math.isfinite(value) else None


def payload(n: Notification) -> dict[str, Any]:
    """The JSON document the generic webhook posts (shape in the module docstring)."""
    evidence: dict[str, Any] = asdict(n.evidence)
    for key, value in evidence.items():
        if isinstance(value, float):
            evidence[key] = _finite(value)
    evidence["top_error_codes"] = [
        {"code": code, "count": count} for code, count in n.evidence.top_error_codes
    ]
    evidence["sample_payment_ids"] = list(n.evidence.sample_payment_ids)
    return {
        "version": PAYLOAD_VERSION,
        "event": n.event,
        "repeat": n.repeat,
        "fingerprint": n.fingerprint,
        "idempotency_key": n.idempotency_key,
        "rule": n.rule,
        "severity": n.severity,
        "labels": dict(sorted(n.labels.items())),
        "summary": n.summary,
        "at": n.at,
        "since": n.since,
        "evidence": evidence,
        "backup_gateway": n.backup_gateway,
        "links": list(n.links),
        "title": title(n),
        "text": text(n),
    }
