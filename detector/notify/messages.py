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
      "episode": str,                      # when this episode started firing (ISO-8601 UTC)
      "evidence": {
        "value": float | null,             # failure rate 0..1 in the window
        "interval_low": float | null, "interval_high": float | null,   # Wilson 95%
        "baseline": float | null,          # SLA failure rate 0..1
        "payments": int, "failures": int, "window_minutes": int,
        "declines": int,                   # declined payments, part of payments, not failures
        "usual_decline_rate": float | null,  # decline_rate: the usual share at this hour
        "p_value": float | null,
        "expected_payments": float | null,
        "top_error_codes": [{"code": str, "count": int}],
        "sample_payment_ids": [str],
        "samples": [{"id": str, "url": str | null}],   # url: source.trace_url's log search
        "revenue_at_risk": [               # source.columns.amount; most money first
          {"currency": str,                # "" without source.columns.currency
           "amount": float,                # failed above the SLA / missing, since "since"
           "payments": int}                # the failed (or missing) payments it is in
        ],
        "attribution": null | {            # where the excess failures are (dimensions)
          "segment": {str: str},           # e.g. {"method": "card", "country": "BR"};
                                           # {} when spread over them like the payments
          "excess_share": float,           # share of the failures above the SLA in it
          "payments_share": float,         # share of the final payments in it
          "excess_failures": float,        # failures above the SLA in all
          "dimensions": [str]              # the dimensions looked at
        }
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from html import escape
from string import Template
from typing import Any

from detector.config import VOLUME_LABEL, Templates
from detector.model import Evidence, Notification
from detector.stats.attribution import Attribution
from detector.stats.binomial import p_value_text

__all__ = [
    "PAYLOAD_VERSION",
    "Fact",
    "attribution_document",
    "attribution_phrase",
    "duration",
    "facts",
    "group_html",
    "group_text",
    "group_title",
    "html",
    "payload",
    "percent",
    "rate_phrase",
    "revenue_phrase",
    "samples",
    "template_fields",
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
    """``12.4% (95% CI 10.1% to 15.0%) vs SLA 2.0%, declines 7.9%`` (en dash), or None
    without a rate. The decline share shows where there were declines: they are final
    payments, not failures."""
    if evidence.value is None or not math.isfinite(evidence.value):
        return None
    phrase = percent(evidence.value)
    if evidence.interval_low is not None and evidence.interval_high is not None:
        low, high = percent(evidence.interval_low), percent(evidence.interval_high)
        phrase += f" (95% CI {low}{RANGE_DASH}{high})"
    if with_baseline and evidence.baseline is not None:
        phrase += f" vs SLA {percent(evidence.baseline)}"
    if evidence.declines and evidence.decline_rate is not None:
        phrase += f", declines {percent(evidence.decline_rate)}"
    return phrase


def attribution_phrase(attribution: Attribution) -> str:
    """``82% of excess failures are method=card, country=BR (31% of payments)``.

    >>> attribution_phrase(Attribution(("method",), (("method", "card"),), 0.82, 0.31, 40.0))
    '82% of excess failures are method=card (31% of payments)'
    >>> attribution_phrase(Attribution(("method", "country"), (), 1.0, 1.0, 40.0))
    'no method or country stands out among the excess failures'
    """
    if not attribution.segment:
        names = " or ".join(attribution.dimensions)
        return f"no {names} stands out among the excess failures"
    segment = ", ".join(f"{name}={value}" for name, value in attribution.segment)
    return (
        f"{attribution.excess_share:.0%} of excess failures are {segment} "
        f"({attribution.payments_share:.0%} of payments)"
    )


def attribution_document(attribution: Attribution | None) -> dict[str, Any] | None:
    """The attribution as the webhook and the backtest put it in JSON."""
    if attribution is None:
        return None
    return {
        "segment": dict(attribution.segment),
        "excess_share": attribution.excess_share,
        "payments_share": attribution.payments_share,
        "excess_failures": attribution.excess_failures,
        "dimensions": list(attribution.dimensions),
    }


def _money(currency: str, amount: float) -> str:
    """``EUR 12,340`` or ``EUR 12,340.50``; no code for the one unnamed currency."""
    figure = f"{amount:,.0f}" if amount == round(amount) else f"{amount:,.2f}"
    return f"{currency} {figure}" if currency else figure


def revenue_phrase(n: Notification) -> str | None:
    """``EUR 12,340 in 187 failed payments above the 2.0% SLA since 10:42 UTC``, one part
    per currency; None without amounts.

    >>> from detector.stats.revenue import Loss
    >>> e = Evidence(baseline=0.02, revenue_at_risk=(Loss("EUR", 12340.0, 187),
    ...              Loss("", 80.5, 1)))
    >>> print(revenue_phrase(Notification("firing", "f", "k", "sla_breach", "warning", {},
    ...     "", "2026-11-20T10:50:00Z", "2026-11-20T10:42:00Z", evidence=e)))
    EUR 12,340 in 187 failed payments, 80.50 in 1 failed payment above the 2.0% SLA since 10:42 UTC
    """
    e = n.evidence
    if not e.revenue_at_risk:
        return None
    kind = "payment" if n.rule == "volume_drop" else "failed payment"
    parts = ", ".join(
        f"{_money(loss.currency, loss.amount)} in {loss.payments} {kind}"
        + ("" if loss.payments == 1 else "s")
        for loss in e.revenue_at_risk
    )
    if n.rule == "volume_drop":
        what = "short of the expected volume"
    elif e.baseline is not None:
        what = f"above the {percent(e.baseline)} SLA"
    else:
        what = "above the SLA"
    try:
        since = f" since {datetime.fromisoformat(n.since):%H:%M} UTC"
    except ValueError:
        since = ""
    return f"{parts} {what}{since}"


def samples(e: Evidence) -> list[tuple[str, str | None]]:
    """Each sample failed payment id with its log search (``source.trace_url``), if any."""
    urls: list[str | None] = list(e.sample_payment_urls)
    urls += [None] * (len(e.sample_payment_ids) - len(urls))
    return list(zip(e.sample_payment_ids, urls, strict=False))


def _series(n: Notification) -> str:
    """``"stripe"``, ``"stripe (method=card)"``, a business volume's ``"visits
    (country=BR)"``, or ``""`` when neither is involved."""
    gateway = n.labels.get("gateway", "")
    subject = gateway or n.labels.get(VOLUME_LABEL, "")
    named = _TITLE_LABELS if gateway else _TITLE_LABELS | {VOLUME_LABEL}
    extra = ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items()) if k not in named)
    if subject and extra:
        return f"{subject} ({extra})"
    return subject or (f"({extra})" if extra else "")


def template_fields(n: Notification) -> dict[str, str]:
    """What a message template (``templates:`` of a receiver) can say, by name."""
    facts_by_key = {fact.key: fact.value for fact in facts(n)}
    return {
        "title": title(n),
        "text": text(n),
        "summary": n.summary,
        "event": n.event,
        "rule": n.rule,
        "gateway": n.labels.get("gateway", ""),
        "severity": n.severity,
        "at": n.at,
        "since": n.since,
        "failure_rate": facts_by_key.get("failure_rate", ""),
        "counts": facts_by_key.get("counts", facts_by_key.get("volume", "")),
        "backup_gateway": n.backup_gateway or "",
        "links": " ".join(n.links),
        "labels": facts_by_key.get("labels", ""),
        "fingerprint": n.fingerprint,
        "attribution": facts_by_key.get("attribution", ""),
        "revenue_at_risk": facts_by_key.get("revenue_at_risk", ""),
    }


def _custom(n: Notification, template: str | None) -> str | None:
    if template is None:
        return None
    return Template(template).substitute(template_fields(n))


def title(n: Notification, templates: Templates | None = None) -> str:
    """One line naming state, severity, rule and series, unless ``templates.title`` says.

    ``[FIRING critical] outage on stripe``, ``[STILL FIRING warning] sla_breach on adyen``
    for a reminder, ``[RESOLVED] sla_breach on adyen``.
    """
    custom = _custom(n, templates.title) if templates else None
    if custom is not None:
        return custom
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
    revenue = revenue_phrase(n)
    money = [Fact("revenue_at_risk", "Revenue at risk", revenue)] if revenue else []
    if n.rule == "decline_rate":
        return _decline_figures(n.evidence) + _context(n)
    return _figures(n.evidence, n.rule == "latency_breach") + money + _context(n)


def _decline_figures(e: Evidence) -> list[Fact]:
    """A decline wave's figures: the share now against the usual one, the counts, the
    p-value.

    >>> [f.value for f in _decline_figures(Evidence(payments=450, declines=64,
    ...     usual_decline_rate=0.061, window_minutes=15, p_value=2e-9))]
    ['14.2% (usual 6.1% at this hour)', '64 of 450 payments in the last 15 min', '2.0e-09']
    """
    out: list[Fact] = []
    if e.payments:
        share = percent(e.declines / e.payments)
        if e.usual_decline_rate is not None:
            share += f" (usual {percent(e.usual_decline_rate)} at this hour)"
        out.append(Fact("decline_share", "Declines", share))
    window = (
        f" in the last {duration(timedelta(minutes=e.window_minutes))}" if e.window_minutes else ""
    )
    out.append(Fact("counts", "Declined", f"{e.declines} of {e.payments} payments{window}"))
    if e.p_value is not None and math.isfinite(e.p_value):
        out.append(Fact("p_value", "p-value", p_value_text(e.p_value)))
    return out


def _figures(e: Evidence, latency: bool = False) -> list[Fact]:
    """What was measured: rate, counts, p-value and where the failures are. ``latency``:
    the rate and counts are of slow payments among those with a latency."""
    out: list[Fact] = []
    rate = rate_phrase(e)
    if rate is not None and latency:
        out.append(Fact("slow_share", "Slow payments", rate))
    elif rate is not None:
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
    elif latency:
        out.append(Fact("counts", "Slow", f"{e.failures} of {e.payments} timed payments{window}"))
    elif e.payments or e.failures or e.window_minutes:
        declined = f" ({e.declines} declined)" if e.declines else ""
        out.append(
            Fact("counts", "Failures", f"{e.failures} of {e.payments} payments{declined}{window}")
        )
    if e.p_value is not None and math.isfinite(e.p_value):
        out.append(Fact("p_value", "p-value", p_value_text(e.p_value)))
    if e.attribution is not None:
        out.append(Fact("attribution", "Attribution", attribution_phrase(e.attribution)))
    return out


def _context(n: Notification) -> list[Fact]:
    """What to act on: since when, error codes, payment ids, backup, links and labels."""
    e = n.evidence
    out: list[Fact] = []
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
        ids = ", ".join(f"{i} ({url})" if url else i for i, url in samples(e))
        out.append(Fact("sample_ids", "Sample payment ids", ids))
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


def text(n: Notification, templates: Templates | None = None) -> str:
    """Plain-text body: the summary, a blank line, then one ``Label: value`` line per fact
    (or ``templates.text``)."""
    custom = _custom(n, templates.text) if templates else None
    if custom is not None:
        return custom.rstrip("\n") + "\n"
    lines = [n.summary, ""] if n.summary else []
    lines += [f"{fact.label}: {fact.value}" for fact in facts(n)]
    return "\n".join(lines) + "\n"


_COLOURS = {"critical": "#b00020", "warning": "#b26a00", "resolved": "#1b7f3b"}


def _html_value(fact: Fact, n: Notification) -> str:
    if fact.key == "sample_ids":
        return ", ".join(
            f'<a href="{escape(url)}">{escape(i)}</a>' if url else escape(i)
            for i, url in samples(n.evidence)
        )
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


def _html_section(n: Notification, level: str) -> str:
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
        f'<{level} style="color:{colour}">{heading}</{level}>\n'
        f"{summary}"
        f'<table style="border-collapse:collapse">\n{rows}\n</table>\n'
    )


def _html_document(heading: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n'
        f'<head><meta charset="utf-8"><title>{escape(heading)}</title></head>\n'
        '<body style="font-family:Helvetica,Arial,sans-serif;font-size:14px">\n'
        f"{body}"
        "</body>\n"
        "</html>\n"
    )


def html(n: Notification) -> str:
    """The same content as :func:`text` as a small self-contained HTML document."""
    return _html_document(title(n), _html_section(n, "h2"))


# --- groups: several alerts in one message -------------------------------------------------


def group_title(ns: Sequence[Notification], templates: Templates | None = None) -> str:
    """One line for a group: ``[FIRING critical] outage on stripe, adyen, paypal``.

    Alerts that differ in state or rule are counted instead:
    ``[3 alerts] 2 firing, 1 resolved: outage on stripe, adyen; sla_breach on paypal``.
    """
    if len(ns) == 1:
        return title(ns[0], templates)
    heads = {title(n).split("] ")[0] + "]" for n in ns}
    rules: dict[str, list[str]] = {}
    for n in ns:
        rules.setdefault(n.rule, [])
        series = _series(n)
        if series and series not in rules[n.rule]:
            rules[n.rule].append(series)
    what = "; ".join(f"{rule} on {', '.join(s)}" if s else rule for rule, s in rules.items())
    if len(heads) == 1:
        return f"{heads.pop()} {what}"
    firing = sum(n.event == "firing" for n in ns)
    counts = ", ".join(
        part
        for part in (f"{firing} firing" if firing else "", f"{len(ns) - firing} resolved")
        if part and not part.startswith("0 ")
    )
    return f"[{len(ns)} alerts] {counts}: {what}"


def group_text(ns: Sequence[Notification], templates: Templates | None = None) -> str:
    """Plain text of a group: each alert's title and :func:`text`, separated by a rule."""
    if len(ns) == 1:
        return text(ns[0], templates)
    return ("-" * 40 + "\n").join(f"{title(n, templates)}\n{text(n, templates)}" for n in ns)


def group_html(ns: Sequence[Notification]) -> str:
    """HTML of a group: the group title, then one section per alert."""
    if len(ns) == 1:
        return html(ns[0])
    heading = group_title(ns)
    body = f"<h2>{escape(heading)}</h2>\n" + "<hr>\n".join(_html_section(n, "h3") for n in ns)
    return _html_document(heading, body)


def _finite(value: float | None) -> float | None:
    # JSON has no NaN or Infinity; strict parsers reject the whole document over one.
    return value if value is None or math.isfinite(value) else None


def payload(n: Notification, templates: Templates | None = None) -> dict[str, Any]:
    """The JSON document the generic webhook posts (shape in the module docstring)."""
    evidence: dict[str, Any] = asdict(n.evidence)
    for key, value in evidence.items():
        if isinstance(value, float):
            evidence[key] = _finite(value)
    evidence["top_error_codes"] = [
        {"code": code, "count": count} for code, count in n.evidence.top_error_codes
    ]
    evidence["sample_payment_ids"] = list(n.evidence.sample_payment_ids)
    del evidence["sample_payment_urls"]  # paired with their ids in "samples"
    evidence["samples"] = [{"id": i, "url": url} for i, url in samples(n.evidence)]
    evidence["attribution"] = attribution_document(n.evidence.attribution)
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
        "episode": n.episode,
        "evidence": evidence,
        "backup_gateway": n.backup_gateway,
        "links": list(n.links),
        "title": title(n, templates),
        "text": text(n, templates),
    }
