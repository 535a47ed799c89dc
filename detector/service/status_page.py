"""The status page: one server-rendered HTML document with inline SVG charts.

No script, no external stylesheet, font or image: the daemon serves everything, so the
page works on an isolated network and from a phone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from html import escape
from urllib.parse import urlencode

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
    table,
)
from detector.service.health import STATUSES, GatewayHealth
from detector.service.history import BAND, HistorySnapshot
from detector.service.snapshot import Snapshot
from detector.timeutil import short_utc

__all__ = ["PAGE_SIZE", "render"]

PAGE_SIZE = 100  # gateways a page shows, each with two charts
WORST_FIRST = ("down", "degraded", "unknown", "healthy")
_RANK = np.array([WORST_FIRST.index(s) for s in STATUSES])  # status index -> place on the page

_NO_HISTORY = '<p class="empty">No history yet.</p>'
# Reloading on its own is opt-in (WCAG 2.2.1: a reader must be able to stop it).
_REFRESH = '<meta http-equiv="refresh" content="60">'
_START_REFRESH = '<a href="/?refresh=1">refresh every minute</a>'
_STOP_REFRESH = 'refreshes every minute (<a href="/">stop</a>)'
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
        # None until the engine's weeks of volume history are read (a day per query, on
        # the first ticks): no gateway's band is known yet, whatever its history.
        self.band_loading = band is None
        highest = np.nanmax(self.per_minute, axis=1, initial=0.0)
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
            else "the weeks of volume history are still being read"
            if self.band_loading
            else "not enough history for an expected band (needs a week)"
        )
        return (
            '<div class="charts"><div class="chart">'
            f"<h4>Failure rate, 5-min buckets, vs SLA {percent(health.baseline)} (dashed); "
            "alerts shaded</h4>"
            f'{rate_chart}</div><div class="chart"><h4>Payments per minute ({expectation})</h4>'
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
        f'<div class="head"><h3 class="name">{escape(health.gateway)}</h3>'
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
    return table(
        ["state", "severity", "rule", "gateway", "since", "summary", "sample payments"],
        (
            (
                f"alert {a.state}",
                [
                    escape(a.state),
                    escape(a.severity),
                    escape(a.rule),
                    escape(gateway),
                    _when(a.since),
                    escape(a.summary),
                    _samples(a.sample_payment_ids, template),
                ],
            )
            for a, gateway in rows
        ),
    )


def _silences(snapshot: Snapshot) -> str:
    if not snapshot.silences:
        return '<p class="empty">No active silences.</p>'
    fields = ("matchers", "until", "comment")
    return table(
        fields,
        (("", [escape(str(s.get(f, ""))) for f in fields]) for s in snapshot.silences),
    )


def _summary(snapshot: Snapshot) -> str:
    counts = np.bincount(snapshot.health.status, minlength=len(STATUSES))
    parts = [f"{counts[STATUSES.index(s)]} {s}" for s in WORST_FIRST]
    return f'<p class="summary">{len(snapshot.health)} gateways: {" &middot; ".join(parts)}</p>'


def _search(query: str, refresh: bool) -> str:
    """A plain GET form: it works without script, and the answer has its own address."""
    keep = '<input type="hidden" name="refresh" value="1">' if refresh else ""
    return (
        '<form class="search" method="get" action="/" role="search">'
        '<label for="q">Find gateways whose name contains</label> '
        f'<input id="q" name="q" type="search" value="{escape(query, quote=True)}">{keep} '
        '<button type="submit">Find</button></form>'
    )


def _link(page: int, query: str, refresh: bool) -> str:
    params = {"refresh": "1"} if refresh else {}
    params |= {"q": query} if query else {}
    params |= {"page": str(page)} if page > 1 else {}
    return escape("/?" + urlencode(params) if params else "/", quote=True)


def _pages(
    page: int, pages: int, first: int, shown: int, total: int, link: Callable[[int], str]
) -> str:
    if total <= PAGE_SIZE:
        return ""
    previous = f'<a href="{link(page - 1)}" rel="prev">previous</a> ' if page > 1 else ""
    following = f' <a href="{link(page + 1)}" rel="next">next</a>' if page < pages else ""
    return (
        f'<nav class="pages" aria-label="Pages of gateways">{previous}gateways {first + 1}-'
        f"{first + shown} of {total} (page {page} of {pages}){following}</nav>"
    )


def render(snapshot: Snapshot, *, refresh: bool = False, page: int = 1, query: str = "") -> str:
    """The page for the snapshot: a summary, then the gateways worst first (down, degraded,
    unknown, healthy), ``PAGE_SIZE`` a page (``/?page=N``) with the charts of those shown,
    only those whose name holds ``query`` (``/?q=``); with ``refresh`` it reloads itself
    every minute (``/?refresh=1``: opt-in, and a link turns it off)."""
    health = snapshot.health
    counts = {s: int(np.sum(health.status == STATUSES.index(s))) for s in ("down", "degraded")}
    title = (
        "All gateways operational"
        if not counts["down"] and not counts["degraded"]
        else f"{counts['down']} down, {counts['degraded']} degraded"
    )
    found = health.matching(text=query)
    found = found[np.argsort(_RANK[health.status[found]], kind="stable")]
    pages = max(-(-found.size // PAGE_SIZE), 1)
    page = min(max(page, 1), pages)
    first = (page - 1) * PAGE_SIZE
    shown = health.pick(found[first : first + PAGE_SIZE])
    charts = None
    if snapshot.history is not None:
        history = snapshot.history.select(h.gateway for h in shown)
        baselines = np.array([snapshot.config.sla_for(g) for g in history.gateways])
        charts = _Charts(history, baselines)
    nav = _pages(page, pages, first, len(shown), found.size, lambda n: _link(n, query, refresh))
    if shown:
        gateways = nav + "".join(_gateway(h, charts) for h in shown) + nav
    elif query:
        gateways = f'<p class="empty">No gateway name contains "{escape(query)}".</p>'
    else:
        gateways = '<p class="empty">No gateways seen yet.</p>'
    volumes = ' &middot; <a href="/volumes">business volumes</a>' if snapshot.config.volumes else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{_REFRESH if refresh else ''}"
        f"<title>Payments: {escape(title)}</title><style>{STYLE}</style></head><body><main>"
        f"<h1>{escape(title)}</h1>"
        f'<div class="meta">As of {_when(snapshot.at)} &middot; this replica is the '
        f"{escape(snapshot.role)} &middot; "
        f"{_STOP_REFRESH if refresh else _START_REFRESH} &middot; "
        '<a href="/api/v1/gateways">JSON</a> &middot; <a href="/metrics">metrics</a>'
        f"{volumes}</div>{_summary(snapshot)}"
        f"<h2>Gateways</h2>{_search(query, refresh)}{gateways}"
        f"<h2>Active alerts</h2>{_alerts_table(snapshot)}"
        f"<h2>Silences</h2>{_silences(snapshot)}"
        "</main></body></html>"
    )
