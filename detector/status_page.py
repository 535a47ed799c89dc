"""The status page: one server-rendered HTML document with inline SVG charts.

No script, no external stylesheet, font or image: the daemon serves everything, so the
page works on an isolated network and from a phone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from html import escape
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.health import GatewayHealth
from detector.history import BAND, HistorySnapshot
from detector.web import Snapshot

__all__ = ["render"]

_W, _H, _PAD = 600, 120, 18  # chart viewBox; _PAD leaves room for the time axis
_NO_HISTORY = '<p class="empty">No history yet.</p>'
_BAND_LOW, _BAND_HIGH = (round(q * 100) for q in BAND)
_BAND_TITLE = (
    f"Expected band: {_BAND_LOW}% to {_BAND_HIGH}% of the payments per minute a 5-minute bucket "
    "has when traffic is as the volume rules expected it then (the median of the same hour "
    "of the week times the level of the hours before, with the fitted hour-to-hour noise)"
)

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


# Coordinates are written by table look-up, not formatted one by one: every value a chart
# uses (0.0 to 600.0 in tenths) is a string here once.
_TENTHS = np.array([f"{v / 10:.1f}" for v in range(_W * 10 + 1)], dtype=object)
_Y_TOKENS: npt.NDArray[np.object_] = np.array(["," + t for t in _TENTHS], dtype=object)


def _coords(values: npt.NDArray[np.floating], table: npt.NDArray[np.object_] = _TENTHS) -> Any:
    """Each value (within the view box) as its string with one decimal, from ``table``."""
    return table[np.rint(np.nan_to_num(values) * 10).astype(np.int64).clip(0, _W * 10)]


def _paths(xs: npt.NDArray[np.floating], ys: npt.NDArray[np.floating]) -> list[str]:
    """SVG path data per row of ``ys``: a line through the points, broken where NaN.

    >>> _paths(np.array([0.0, 1, 2, 3]), np.array([[5.0, np.nan, 6, 7]]))
    ['M0.0,5.0M2.0,6.0L3.0,7.0']
    """
    valid = ~np.isnan(ys)
    starts = valid & ~np.pad(valid, ((0, 0), (1, 0)))[:, :-1]
    x = _coords(xs)
    tokens = np.full((ys.shape[0], 2 * ys.shape[1]), "", dtype=object)
    tokens[:, 0::2] = np.where(valid, np.where(starts, "M" + x, "L" + x), "")
    tokens[:, 1::2] = np.where(valid, _coords(ys, _Y_TOKENS), "")
    return ["".join(row) for row in tokens.tolist()]


def _runs(flags: npt.NDArray[np.bool_]) -> list[list[tuple[int, int]]]:
    """Per row, the ``(first, end)`` columns of each stretch of True.

    >>> _runs(np.array([[True, True, False, True], [False] * 4]))
    [[(0, 2), (3, 4)], []]
    """
    edges = np.diff(np.pad(flags.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    starts, ends = np.argwhere(edges == 1), np.argwhere(edges == -1)
    runs: list[list[tuple[int, int]]] = [[] for _ in range(flags.shape[0])]
    for (row, first), end in zip(starts.tolist(), ends[:, 1].tolist(), strict=True):
        runs[row].append((first, end))
    return runs


def _band_paths(
    step: float, low: npt.NDArray[np.floating], high: npt.NDArray[np.floating]
) -> list[str]:
    """SVG path data per row: the area between ``low`` and ``high`` (chart heights per
    bucket) as one rectangle for each stretch of buckets with the same values; nothing
    where either is NaN.

    >>> _band_paths(2.0, np.array([[9.0, 9, 8, np.nan]]), np.array([[5.0, 5, 4, 1]]))
    ['M0.0,5.0H4.0V9.0H0.0ZM4.0,4.0H6.0V8.0H4.0Z']
    """
    rows, columns = low.shape
    known = ~np.isnan(low) & ~np.isnan(high)
    same = np.zeros_like(known)
    same[:, 1:] = known[:, :-1] & (low[:, 1:] == low[:, :-1]) & (high[:, 1:] == high[:, :-1])
    # A sentinel column ends every row's last stretch within the row.
    starts = np.pad(known & ~same, ((0, 0), (0, 1))).ravel()
    bounds = np.pad(
        starts.reshape(rows, -1)[:, :-1] | ~known, ((0, 0), (0, 1)), constant_values=True
    )
    first = np.flatnonzero(starts)
    edges = np.flatnonzero(bounds.ravel())
    end = edges[np.searchsorted(edges, first, side="right")]
    row, a, b = first // (columns + 1), first % (columns + 1), end % (columns + 1)
    x0, x1 = _coords(a * step), _coords(b * step)
    top, bottom = _coords(high[row, a]), _coords(low[row, a])
    shapes = "M" + x0 + "," + top + "H" + x1 + "V" + bottom + "H" + x0 + "Z"
    split = np.split(shapes, np.cumsum(np.bincount(row, minlength=rows))[:-1])
    return ["".join(part.tolist()) for part in split]


def _y(values: npt.NDArray[np.float64], top: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Chart heights of ``values`` per row, each row scaled to its own ``top``."""
    plot_h = _H - _PAD
    return plot_h - np.clip(values / top[:, None], 0, 1) * (plot_h - 4)


def _svg(
    path: str,
    spans: list[tuple[int, int]],
    step: float,
    label: str,
    colour: str,
    behind: str = "",
    axis: tuple[str, str, str] = ("-24h", "-12h", "now"),
) -> str:
    """One chart: alert spans shaded, ``behind`` (an SLA line, a band), the line, the axis."""
    plot_h = _H - _PAD
    shading = "".join(
        f'<rect x="{a * step:.1f}" y="0" width="{(b - a) * step:.1f}" height="{plot_h}" '
        'fill="#f6c7c3" class="alert-span"/>'
        for a, b in spans
    )
    return (
        f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">{shading}{behind}'
        f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>'
        f'<line x1="0" x2="{_W}" y1="{plot_h}" y2="{plot_h}" stroke="#c4c7cc"/>{_axis(*axis)}'
        f'<text x="{_W - 4}" y="12" font-size="13" fill="#5b6272" text-anchor="end">'
        f"{escape(label)}</text></svg>"
    )


@lru_cache(maxsize=16)  # every chart of a page has the same axis
def _axis(left: str, middle: str, right: str) -> str:
    return "".join(
        f'<text x="{fraction * _W:.0f}" y="{_H - 4}" font-size="13" fill="#5b6272" '
        f'text-anchor="{anchor}">{escape(text)}</text>'
        for fraction, text, anchor in (
            (0.0, left, "start"),
            (0.5, middle, "middle"),
            (1.0, right, "end"),
        )
    )


def _sla_line(baseline: float, top: float) -> str:
    y = (_H - _PAD) - min(baseline / top, 1) * (_H - _PAD - 4)
    return (
        f'<line x1="0" x2="{_W}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c5221f" '
        'stroke-dasharray="6 4" stroke-width="1.5" class="sla-line"/>'
    )


def _chart(
    values: npt.NDArray[np.float64],
    top: float,
    shaded: npt.NDArray[np.bool_],
    line: float | None,
    label: str,
    colour: str,
    axis: tuple[str, str, str] = ("-24h", "-12h", "now"),
) -> str:
    """One chart of one series (the backtest report draws its charts with this)."""
    step = _W / max(values.size, 1)
    xs = (np.arange(values.size) + 0.5) * step
    (path,) = _paths(xs, _y(values[None, :], np.array([top])))
    (spans,) = _runs(shaded[None, :])
    behind = _sla_line(line, top) if line is not None else ""
    return _svg(path, spans, step, label, colour, behind, axis)


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
        self.step = _W / max(payments.shape[1], 1)
        xs = (np.arange(payments.shape[1]) + 0.5) * self.step
        self.rate_paths = _paths(xs, _y(rates, self.rate_top))
        self.volume_paths = _paths(xs, _y(self.per_minute, self.volume_top))
        self.band_paths = (
            _band_paths(self.step, *(_y(edge, self.volume_top) for edge in band))
            if band is not None
            else [""] * len(history.gateways)
        )
        self.spans = _runs(history.alerting)

    def html(self, health: GatewayHealth) -> str:
        row = self.row.get(health.gateway)
        if row is None:
            return _NO_HISTORY
        rate_top, volume_top = float(self.rate_top[row]), float(self.volume_top[row])
        sla = _sla_line(health.baseline, rate_top)
        spans = self.spans[row]
        rate_chart = _svg(
            self.rate_paths[row], spans, self.step, f"max {_pct(rate_top)}", "#1a73e8", sla
        )
        band = self.band_paths[row]
        volume_chart = _svg(
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
            f"<h3>Failure rate, 5-min buckets, vs SLA {_pct(health.baseline)} (dashed); "
            "alerts shaded</h3>"
            f'{rate_chart}</div><div class="chart"><h3>Payments per minute ({expectation})</h3>'
            f"{volume_chart}</div></div>"
        )


def _gateway(health: GatewayHealth, charts: _Charts | None) -> str:
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
        f"{charts.html(health) if charts else _NO_HISTORY}</section>"
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
