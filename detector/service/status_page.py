"""The status page: one server-rendered HTML document with inline SVG charts.

No script, no external stylesheet, font or image: the daemon serves everything, so the
page works on an isolated network and from a phone.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

import numpy as np
import numpy.typing as npt

from detector.config import trace_link
from detector.service.charts import (
    STYLE,
    WIDTH,
    band_paths,
    heights,
    line_paths,
    percent,
    runs,
    sla_line,
    svg,
)
from detector.service.health import GatewayHealth
from detector.service.history import BAND, HistorySnapshot
from detector.service.snapshot import Snapshot
from detector.timeutil import short_utc

__all__ = ["render"]

_NO_HISTORY = '<p class="empty">No history yet.</p>'
_BAND_LOW, _BAND_HIGH = (round(q * 100) for q in BAND)
_BAND_TITLE = (
    f"Expected band: {_BAND_LOW}% to {_BAND_HIGH}% of the payments per minute a 5-minute bucket "
    "has when traffic is as the volume rules expected it then (the median of the same quarter "
    "hour of the week times the level of the hours before, with the fitted noise)"
)


def _when(moment: datetime | None) -> str:
    return f"{short_utc(moment)} UTC" if moment else "-"


class _Charts:
    """Both charts of every gateway in the history, computed for all rows at once."""

    def __init__(self, history: HistorySnapshot, baselines: npt.NDArray[np.float64]):
        self.row = {g: i for i, g in enumerate(history.gateways)}
        payments = history.payments.astype(np.float64)
        rates = np.divide(
            history.failures, payments, out=np.full(payments.shape, np.nan), where=payments > 0
        )
        observed = np.nanmax(np.where(np.isnan(rates), 0.0, rates), axis=1, initial=0.0)
        self.rate_top = np.minimum(np.maximum(baselines * 3, observed) * 1.1, 1.0)
        self.per_minute = history.volume / history.minutes_per_bucket()
        band = history.expected_band()
        highest = self.per_minute.max(axis=1, initial=0.0)
        if band is not None:
            highest = np.maximum(highest, np.nanmax(band[1], axis=1, initial=0.0))
        self.volume_top = np.maximum(highest * 1.1, 1.0)
        self.step = WIDTH / max(payments.shape[1], 1)
        xs = (np.arange(payments.shape[1]) + 0.5) * self.step
        self.rate_paths = line_paths(xs, heights(rates, self.rate_top))
        self.volume_paths = line_paths(xs, heights(self.per_minute, self.volume_top))
        self.band_paths = (
            band_paths(self.step, *(heights(edge, self.volume_top) for edge in band))
            if band is not None
            else [""] * len(history.gateways)
        )
        self.spans = runs(history.alerting)

    def html(self, health: GatewayHealth) -> str:
        row = self.row.get(health.gateway)
        if row is None:
            return _NO_HISTORY
        rate_top, volume_top = float(self.rate_top[row]), float(self.volume_top[row])
        sla = sla_line(health.baseline, rate_top)
        spans = self.spans[row]
        rate_chart = svg(
            self.rate_paths[row], spans, self.step, f"max {percent(rate_top)}", "#1a73e8", sla
        )
        band = self.band_paths[row]
        volume_chart = svg(
            self.volume_paths[row],
            spans,
            self.step,
            f"max {volume_top:.0f}/min",
            "#5f6368",
            f'<path d="{band}" fill="#c6dafc" class="expected-band"><title>{_BAND_TITLE}</title>'
            "</path>"
            if band
            else "",
        )
        usual = (
            f"; usual now {health.expected_volume / health.window_minutes:.1f}/min"
            if health.expected_volume is not None
            else ""
        )
        expectation = (
            f"vs the expected {_BAND_LOW}-{_BAND_HIGH}% band (blue{usual})"
            if band
            else "not enough history for an expected band (needs a week)"
        )
        return (
            '<div class="charts"><div class="chart">'
            f"<h3>Failure rate, 5-min buckets, vs SLA {percent(health.baseline)} (dashed); "
            "alerts shaded</h3>"
            f'{rate_chart}</div><div class="chart"><h3>Payments per minute ({expectation})</h3>'
            f"{volume_chart}</div></div>"
        )


def _gateway(health: GatewayHealth, charts: _Charts | None) -> str:
    interval = (
        f" (95% CI {percent(health.interval[0])}-{percent(health.interval[1])})"
        if health.interval
        else ""
    )
    backup = f" &middot; backup: {escape(health.backup)}" if health.backup else ""
    declines = (
        f", {percent(health.declines / health.payments)} declined"
        if health.declines and health.payments
        else ""
    )
    since = f" since {_when(health.since)}" if health.since else ""
    return (
        f'<section class="gw" id="gw-{escape(health.gateway)}" data-status="{health.status}">'
        f'<div class="head"><span class="name">{escape(health.gateway)}</span>'
        f'<span class="badge {health.status}">{health.status}</span>'
        f'<span class="figures">{percent(health.failure_rate)}{interval} of '
        f"{health.payments} payments{declines} in {health.window_minutes} min &middot; "
        f"SLA {percent(health.baseline)}{backup}</span></div>"
        f'<p class="reason">{escape(health.reason)}{since}</p>'
        f"{charts.html(health) if charts else _NO_HISTORY}</section>"
    )


def _samples(ids: tuple[str, ...], template: str | None) -> str:
    """Sample failed payment ids, each a link to its log search where one is configured."""
    return ", ".join(
        f'<a href="{escape(url)}">{escape(i)}</a>'
        if (url := trace_link(template, i)) is not None
        else escape(i)
        for i in ids
    )


def _alerts_table(snapshot: Snapshot) -> str:
    rows = [(alert, h.gateway) for h in snapshot.health for alert in h.alerts]
    if not rows:
        return '<p class="empty">No pending or firing alerts.</p>'
    template = snapshot.config.source.trace_url
    body = "".join(
        f'<tr class="alert {a.state}"><td>{escape(a.state)}</td><td>{escape(a.severity)}</td>'
        f"<td>{escape(a.rule)}</td><td>{escape(gateway)}</td><td>{_when(a.since)}</td>"
        f"<td>{escape(a.summary)}</td>"
        f'<td class="samples">{_samples(a.sample_payment_ids, template)}</td></tr>'
        for a, gateway in rows
    )
    return (
        "<table><thead><tr><th>state</th><th>severity</th><th>rule</th><th>gateway</th>"
        "<th>since</th><th>summary</th><th>sample payments</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _silences(snapshot: Snapshot) -> str:
    if not snapshot.silences:
        return '<p class="empty">No active silences.</p>'
    body = "".join(
        f"<tr><td>{escape(str(s.get('matchers', '')))}</td><td>{escape(str(s.get('until', '')))}"
        f"</td><td>{escape(str(s.get('comment', '')))}</td></tr>"
        for s in snapshot.silences
    )
    return (
        "<table><thead><tr><th>matchers</th><th>until</th><th>comment</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def render(snapshot: Snapshot) -> str:
    """The whole page for the snapshot."""
    counts = {s: sum(h.status == s for h in snapshot.health) for s in ("down", "degraded")}
    title = (
        "All gateways operational"
        if not counts["down"] and not counts["degraded"]
        else f"{counts['down']} down, {counts['degraded']} degraded"
    )
    charts = None
    if snapshot.history is not None:
        config = snapshot.config
        baselines = np.array([config.sla_for(g) for g in snapshot.history.gateways])
        charts = _Charts(snapshot.history, baselines)
    gateways = "".join(_gateway(h, charts) for h in snapshot.health)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="refresh" content="60">'
        f"<title>Payments: {escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<div class="meta">As of {_when(snapshot.at)} &middot; this replica is the '
        f"{escape(snapshot.role)} &middot; refreshes every minute &middot; "
        '<a href="/api/v1/gateways">JSON</a> &middot; <a href="/metrics">metrics</a></div>'
        f"{gateways or '<p class=empty>No gateways seen yet.</p>'}"
        f"<h2>Active alerts</h2>{_alerts_table(snapshot)}"
        f"<h2>Silences</h2>{_silences(snapshot)}"
        "</body></html>"
    )
