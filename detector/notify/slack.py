"""Slack incoming webhook: a Block Kit message plus the plain-text fallback Slack requires.

Block Kit rejects a whole message when one element is over its limit, so every text is cut
to fit: header 150 characters (plain_text), section text 3000, at most 10 section fields of
2000 each, at most 10 context elements.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from detector.config import SlackReceiver as SlackReceiverConfig
from detector.config import Templates
from detector.model import Notification
from detector.notify import messages
from detector.notify.base import HttpReceiver
from detector.notify.http import post

__all__ = ["SlackReceiver", "slack_group_message", "slack_message"]

HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
CONTEXT_TEXT_MAX = 3000
# Slack shows the fallback in push notifications; it allows far more, nobody reads it.
FALLBACK_MAX = 3000
# A message holds at most 50 blocks: a header, one section per alert, one "more" line.
GROUP_ALERTS_MAX = 45
# Five detail lines of this length (and their line breaks) fit one section's 3000 characters.
DETAIL_LINE_MAX = 590

# Facts shown side by side as fields, in this order; the rest go in a section below them.
_FIELD_KEYS = (
    "failure_rate",
    "sla",
    "decline_share",
    "counts",
    "volume",
    "revenue_at_risk",
    "p_value",
    "since",
    "backup",
)
_DETAIL_KEYS = ("attribution", "at", "error_codes", "sample_ids", "links")


def _escape(value: str) -> str:
    """Slack's three control characters; everything else is literal in mrkdwn."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(value: str, limit: int) -> str:
    """Shorten to ``limit`` characters with an ellipsis, never splitting an ``&amp;`` escape."""
    if len(value) <= limit:
        return value
    return re.sub(r"&[a-z]{0,3}$", "", value[: limit - 1]) + "…"


def _emoji(n: Notification) -> str:
    if n.event == "resolved":
        return ":white_check_mark:"
    if n.repeat:
        return ":repeat:"
    return ":rotating_light:" if n.severity == "critical" else ":warning:"


def _link(url: str, label: str | None = None) -> str:
    """``<url>`` or ``<url|label>``; a URL Slack cannot quote, or not a web link, as text."""
    if url.startswith(("http://", "https://")) and not any(c in url for c in "<>|"):
        return f"<{url}|{_escape(label)}>" if label else f"<{url}>"
    return _escape(label or url)


def _fallback(n: Notification, templates: Templates | None) -> str:
    parts = [messages.title(n, templates)]
    if n.summary:
        parts.append(n.summary)
    rate = messages.rate_phrase(n.evidence)
    if rate:
        parts.append(f"failure rate {rate}")
    return _cut(_escape(" — ".join(parts)), FALLBACK_MAX)


def _details(n: Notification, facts: dict[str, messages.Fact]) -> str:
    """The detail lines, each capped so one long list (say of sample ids) cannot push out
    the others."""
    details = []
    for key in _DETAIL_KEYS:
        fact = facts.get(key)
        if fact is None:
            continue
        head = f"*{fact.label}:* "
        if key == "links" or (key == "sample_ids" and n.evidence.sample_payment_urls):
            # Whole links only: half a URL is worse than a missing one.
            if key == "links":
                links, sep = [_link(url) for url in n.links], " "
            else:
                samples = messages.samples(n.evidence)
                links = [_link(url, i) if url else _escape(i) for i, url in samples]
                sep = ", "
            line = head
            for link in links:
                candidate = f"{line}{sep}{link}" if line != head else line + link
                if len(candidate) > DETAIL_LINE_MAX:
                    break
                line = candidate
            if line != head:
                details.append(line)
        else:
            details.append(_cut(head + _escape(fact.value), DETAIL_LINE_MAX))
    return "\n".join(details)


def slack_message(
    n: Notification, channel: str | None = None, templates: Templates | None = None
) -> dict[str, Any]:
    """The JSON body posted to the incoming webhook.

    ``templates.title`` words the header, ``templates.text`` replaces the summary section.
    """
    facts = {fact.key: fact for fact in messages.facts(n)}
    if "failure_rate" in facts and n.evidence.baseline is not None:
        # The SLA gets its own field here, so the rate field leaves it out.
        rate = messages.rate_phrase(n.evidence, with_baseline=False) or ""
        facts["failure_rate"] = messages.Fact("failure_rate", "Failure rate", rate)
        facts["sla"] = messages.Fact("sla", "SLA", messages.percent(n.evidence.baseline))

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _cut(f"{_emoji(n)} {messages.title(n, templates)}", HEADER_MAX),
                "emoji": True,
            },
        }
    ]
    lead = messages.text(n, templates) if templates and templates.text else n.summary
    if lead:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _cut(_escape(lead), SECTION_TEXT_MAX)},
            }
        )
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*{fact.label}*\n{_escape(fact.value)}", FIELD_MAX)}
        for key in _FIELD_KEYS
        if (fact := facts.get(key)) is not None
    ][:FIELDS_MAX]
    if fields:
        blocks.append({"type": "section", "fields": fields})

    detail_text = _details(n, facts)
    if detail_text:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": detail_text}})

    context = []
    if n.labels:
        labels = "  ".join(f"`{_escape(k)}={_escape(v)}`" for k, v in sorted(n.labels.items()))
        context.append({"type": "mrkdwn", "text": _cut(labels, CONTEXT_TEXT_MAX)})
    context.append(
        {
            "type": "mrkdwn",
            "text": _cut(f"idempotency key `{_escape(n.idempotency_key)}`", CONTEXT_TEXT_MAX),
        }
    )
    blocks.append({"type": "context", "elements": context})

    return _message(_fallback(n, templates), blocks, channel)


def slack_group_message(
    ns: Sequence[Notification], channel: str | None = None, templates: Templates | None = None
) -> dict[str, Any]:
    """One message for a group: a header, then a section per alert with its key figures."""
    if len(ns) == 1:
        return slack_message(ns[0], channel, templates)
    heading = messages.group_title(ns, templates)
    emoji = _emoji(ns[0]) if len({_emoji(n) for n in ns}) == 1 else ":rotating_light:"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(f"{emoji} {heading}", HEADER_MAX)},
        }
    ]
    for n in ns[:GROUP_ALERTS_MAX]:
        lines = [f"{_emoji(n)} *{_escape(messages.title(n, templates))}*"]
        if n.summary:
            lines.append(_escape(n.summary))
        rate = messages.rate_phrase(n.evidence)
        if rate:
            lines.append(f"Failure rate {_escape(rate)}")
        revenue = messages.revenue_phrase(n)
        if revenue:
            lines.append(f"Revenue at risk: {_escape(revenue)}")
        if n.backup_gateway and n.event == "firing":
            lines.append(f"Fail over to backup: {_escape(n.backup_gateway)}")
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _cut("\n".join(lines), SECTION_TEXT_MAX)},
            }
        )
    if len(ns) > GROUP_ALERTS_MAX:
        more = f"and {len(ns) - GROUP_ALERTS_MAX} more alert(s)"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return _message(_cut(_escape(heading), FALLBACK_MAX), blocks, channel)


def _message(fallback: str, blocks: list[dict[str, Any]], channel: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "text": fallback,
        "blocks": blocks,
        # Status-page previews would push the figures off screen.
        "unfurl_links": False,
        "unfurl_media": False,
    }
    if channel:
        message["channel"] = channel
    return message


class SlackReceiver(HttpReceiver):
    """Posts to a Slack incoming webhook, whose URL is a secret and is never logged."""

    config: SlackReceiverConfig

    def deliver(self, notifications: Sequence[Notification]) -> None:
        post(
            self.session,
            self.config.url.get_secret_value(),
            json_body=slack_group_message(
                notifications, self.config.channel, self.config.templates
            ),
            timeout=self.timeout,
            secrets=self.secrets,
        )
