"""The status page: one server-rendered HTML document with inline SVG charts.

No script, no external stylesheet, font or image: the daemon serves everything, so the
page works on an isolated network and from a phone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

import numpy as np
import numpy.typing as npt

from detector.health import GatewayHealth
from detector.history import HistorySnapshot
from detector.web import Snapshot

__all__ = ["render"]

_W, _H, _PAD = 600, 120, 18  # chart viewBox; _PAD leaves room for the time axis

_STYLE = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330; }
body { margin: 0 auto; max-width: 1100px; padding: 12px; background: #f5f6f8; }
h1 { font-size: 1.3rem; margin: 0 0 4px; } h2 { font-size: 1.1rem; margin: 24px 0 8px; }
.meta { color: #5b6272; font-size: .85rem; margin-bottom: 12px; }
.gw { background: #fff; border-radius: 8px; padding: 12px; margin: 10px 0;
      box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 8px 16px; }
.name { font-weight: 600; font-size: 1.1rem; }
.badge { border-radius: 10px; padding: 1px 10px; font-size: .85rem; font-weight: 600; color: #fff; }
.healthy { background: #1e8e3e; } .degraded { background: #e37400; }
.down { background: #c5221f; } .unknown { background: #80868b; }
.figures { color: #3c4043; font-size: .9rem; } .reason { font-size: .9rem; margin: 4px 0; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-top: 8px; }
.chart h3 { font-size: .8rem; font-weight: 500; color: #5b6272; margin: 0 0 2px; }
svg { width: 100%; height: auto; display: block; background: #fbfbfc; }
table { width: 100%; border-collapse: collapse; background: #fff; font-size: .9rem; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e3e5e8;
         vertical-align: top; }
.empty { color: #5b6272; font-style: italic; }
@media (max-width: 700px) {
  .charts { grid-template-columns: 1fr; }
  table, tbody, tr, td { display: block; } thead { display: none; }
  tr { border-bottom: 1px solid #e3e5e8; padding: 4px 0; } td { border: none; padding: 2px 8px; }
}
"""


def _pct(value: float | None) -> str:
    return (
        "-" if value is None else f"{value:.1%}" if value >= 0.001 or value == 0 else f"{value:.2%}"
    )


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def _segments(xs: npt.NDArray[np.floating], ys: npt.NDArray[np.floating]) -> list[str]:
    """Polyline point lists, broken where ``ys`` is NaN (buckets without payments).

    >>> _segments(np.array([0.0, 1, 2, 3]), np.array([5.0, np.nan, 6, 7]))
    ['0.0,5.0', '2.0,6.0 3.0,7.0']
    """
    valid = ~np.isnan(ys)
    points = list(map("{:.1f},{:.1f}".format, xs[valid].tolist(), ys[valid].tolist()))
    run = np.cumsum(~valid)[valid]  # points of one unbroken stretch share a number
    cuts = (np.flatnonzero(np.diff(run)) + 1).tolist()
    return [" ".join(points[a:b]) for a, b in zip([0, *cuts], [*cuts, len(points)], strict=True)]


def _chart(
    values: npt.NDArray[np.float64],
    top: float,
    shaded: npt.NDArray[np.bool_],
    line: float | None,
    label: str,
    colour: str,
    axis: tuple[str, str, str] = ("-24h", "-12h", "now"),
) -> str:
    count = values.size
    step = _W / max(count, 1)
    xs = (np.arange(count) + 0.5) * step
    plot_h = _H - _PAD
    ys = (plot_h - np.clip(values / top, 0, 1) * (plot_h - 4)).astype(np.float64)
    parts = [
        f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(label)}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in np.flatnonzero(shaded).tolist():
        parts.append(
            f'<rect x="{i * step:.1f}" y="0" width="{step:.1f}" height="{plot_h}" '
            'fill="#f6c7c3" class="alert-span"/>'
        )
    if line is not None:
        y = plot_h - min(line / top, 1) * (plot_h - 4)
        parts.append(
            f'<line x1="0" x2="{_W}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c5221f" '
            'stroke-dasharray="6 4" stroke-width="1.5" class="sla-line"/>'
        )
    for points in _segments(xs, ys):
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.8"/>'
        )
    parts.append(f'<line x1="0" x2="{_W}" y1="{plot_h}" y2="{plot_h}" stroke="#c4c7cc"/>')
    for fraction, text in zip((0.0, 0.5, 1.0), axis, strict=True):
        anchor = "start" if fraction == 0 else "end" if fraction == 1 else "middle"
        parts.append(
            f'<text x="{fraction * _W:.0f}" y="{_H - 4}" font-size="13" fill="#5b6272" '
            f'text-anchor="{anchor}">{escape(text)}</text>'
        )
    parts.append(
        f'<text x="{_W - 4}" y="12" font-size="13" fill="#5b6272" text-anchor="end">'
        f"{escape(label)}</text></svg>"
    )
    return "".join(parts)


def _charts(health: GatewayHealth, history: HistorySnapshot | None) -> str:
    row = history.row(health.gateway) if history else None
    if history is None or row is None:
        return '<p class="empty">No history yet.</p>'
    payments = history.payments[row].astype(np.float64)
    failures = history.failures[row].astype(np.float64)
    rates = np.divide(failures, payments, out=np.full_like(payments, np.nan), where=payments > 0)
    observed = rates[~np.isnan(rates)]
    rate_top = max(health.baseline * 3, float(observed.max()) if observed.size else 0.0) * 1.1
    per_minute = history.volume[row].astype(np.float64) / history.minutes_per_bucket()
    volume_top = max(float(per_minute.max()) * 1.1, 1.0)
    shaded = history.alerting[row]
    rate_chart = _chart(
        rates,
        min(rate_top, 1.0),
        shaded,
        health.baseline,
        f"max {_pct(min(rate_top, 1.0))}",
        "#1a73e8",
    )
    volume_chart = _chart(
        per_minute, volume_top, shaded, None, f"max {volume_top:.0f}/min", "#5f6368"
    )
    expectation = (
        f"usual for this hour of the week: {health.expected_volume / health.window_minutes:.1f}/min"
        if health.expected_volume is not None
        else "no seasonal expectation yet: it needs a week of history"
    )
    return (
        '<div class="charts"><div class="chart">'
        f"<h3>Failure rate, 5-min buckets, vs SLA {_pct(health.baseline)} (dashed); "
        "alerts shaded</h3>"
        f'{rate_chart}</div><div class="chart"><h3>Payments per minute ({expectation})</h3>'
        f"{volume_chart}</div></div>"
    )


def _gateway(health: GatewayHealth, history: HistorySnapshot | None) -> str:
    interval = (
        f" (95% CI {_pct(health.interval[0])}-{_pct(health.interval[1])})"
        if health.interval
        else ""
    )
    backup = f" &middot; backup: {escape(health.backup)}" if health.backup else ""
    since = f" since {_when(health.since)}" if health.since else ""
    return (
        f'<section class="gw" id="gw-{escape(health.gateway)}" data-status="{health.status}">'
        f'<div class="head"><span class="name">{escape(health.gateway)}</span>'
        f'<span class="badge {health.status}">{health.status}</span>'
        f'<span class="figures">{_pct(health.failure_rate)}{interval} of '
        f"{health.payments} payments in {health.window_minutes} min &middot; "
        f"SLA {_pct(health.baseline)}{backup}</span></div>"
        f'<p class="reason">{escape(health.reason)}{since}</p>'
        f"{_charts(health, history)}</section>"
    )


def _alerts_table(snapshot: Snapshot) -> str:
    rows = [(alert, h.gateway) for h in snapshot.health for alert in h.alerts]
    if not rows:
        return '<p class="empty">No pending or firing alerts.</p>'
    body = "".join(
        f'<tr class="alert {a.state}"><td>{escape(a.state)}</td><td>{escape(a.severity)}</td>'
        f"<td>{escape(a.rule)}</td><td>{escape(gateway)}</td><td>{_when(a.since)}</td>"
        f"<td>{escape(a.summary)}</td></tr>"
        for a, gateway in rows
    )
    return (
        "<table><thead><tr><th>state</th><th>severity</th><th>rule</th><th>gateway</th>"
        f"<th>since</th><th>summary</th></tr></thead><tbody>{body}</tbody></table>"
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
    gateways = "".join(_gateway(h, snapshot.history) for h in snapshot.health)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="refresh" content="60">'
        f"<title>Payments: {escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<div class="meta">As of {_when(snapshot.at)} &middot; this replica is the '
        f"{escape(snapshot.role)} &middot; refreshes every minute &middot; "
        '<a href="/api/v1/gateways">JSON</a> &middot; <a href="/metrics">metrics</a></div>'
        f"{gateways or '<p class=empty>No gateways seen yet.</p>'}"
        f"<h2>Active alerts</h2>{_alerts_table(snapshot)}"
        f"<h2>Silences</h2>{_silences(snapshot)}"
        "</body></html>"
    )
