"""``/volumes``: each business volume (``volumes:``) per day and per hour over the last
weeks against the band the volume rules expect, on one server-rendered page in the status
page's style (no script, nothing fetched from elsewhere)."""

from __future__ import annotations

from html import escape

import numpy as np
import numpy.typing as npt

from detector.service.charts import STYLE, WIDTH, band_paths, heights, line_paths, svg
from detector.service.history import BAND
from detector.service.snapshot import Snapshot
from detector.service.volume_charts import CHART_WEEKS, VolumeCharts
from detector.timeutil import short_utc

__all__ = ["render_volumes"]

FloatArray = npt.NDArray[np.float64]
_BAND_LOW, _BAND_HIGH = (round(q * 100) for q in BAND)


def _chart(
    values: FloatArray, low: FloatArray, high: FloatArray, unit: str, axis: tuple[str, str, str]
) -> list[str]:
    """One chart per row: the counts as a line over the expected band."""
    top = np.maximum(np.nanmax(np.fmax(values, high), axis=1, initial=0.0) * 1.1, 1.0)
    step = WIDTH / max(values.shape[1], 1)
    xs = (np.arange(values.shape[1]) + 0.5) * step
    paths = line_paths(xs, heights(values, top))
    bands = band_paths(step, heights(low, top), heights(high, top))
    return [
        svg(
            path,
            [],
            step,
            f"max {top[i]:.0f}/{unit}",
            "#5f6368",
            f'<path d="{band}" fill="#c6dafc" class="expected-band"/>' if band else "",
            axis,
        )
        for i, (path, band) in enumerate(zip(paths, bands, strict=True))
    ]


def _usual(value: float, low: float, high: float) -> str:
    if np.isnan(low):
        return "no expectation yet (needs a week of history)"
    return f"usual {low:.0f}-{high:.0f}"


def _volumes(charts: VolumeCharts, firing: dict[str, str]) -> str:
    weeks = f"-{CHART_WEEKS}w"
    daily = _chart(
        charts.daily, charts.daily_low, charts.daily_high, "day", (weeks, "", "last day")
    )
    hourly = _chart(charts.hourly, charts.low, charts.high, "h", (weeks, "", "last hour"))
    sections = []
    for i, name in enumerate(charts.names):
        status = firing.get(name)
        badge = f'<span class="badge degraded">{escape(status)}</span>' if status else ""
        figures = (
            f"{charts.daily[i, -1]:.0f} on {charts.last_day:%a %d %b} "
            f"({_usual(charts.daily[i, -1], charts.daily_low[i, -1], charts.daily_high[i, -1])})"
            f" &middot; {charts.hourly[i, -1]:.0f} in the last whole hour "
            f"({_usual(charts.hourly[i, -1], charts.low[i, -1], charts.high[i, -1])})"
        )
        sections.append(
            f'<section class="gw volume" id="volume-{i}"><div class="head">'
            f'<h3 class="name">{escape(name)}</h3>{badge}'
            f'<span class="figures">{figures}</span></div>'
            '<div class="charts"><div class="chart"><h4>Per day, last '
            f"{CHART_WEEKS} weeks, vs the expected {_BAND_LOW}-{_BAND_HIGH}% band (blue)</h4>"
            f'{daily[i]}</div><div class="chart"><h4>Per hour, last {CHART_WEEKS} weeks, '
            f"vs the expected band</h4>{hourly[i]}</div></div></section>"
        )
    return "".join(sections) or '<p class="empty">No rows counted yet.</p>'


def render_volumes(snapshot: Snapshot) -> str:
    """The whole ``/volumes`` page for the snapshot."""
    if not snapshot.config.volumes:
        body = '<p class="empty">No volumes configured (<code>volumes:</code> in alerts.yaml).</p>'
    elif snapshot.volumes is None:
        body = '<p class="empty">Not read yet.</p>'
    else:
        body = "<h2>Volumes</h2>" + _volumes(snapshot.volumes, snapshot.volume_alerts)
    when = f"{short_utc(snapshot.at)} UTC" if snapshot.at else "-"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Business volumes</title><style>{STYLE}</style></head><body><main>"
        "<h1>Business volumes</h1>"
        f'<div class="meta">As of {when} &middot; counts per day and per hour, each against '
        "the band the volume rules expect for that time of the week &middot; "
        '<a href="/">status page</a></div>'
        f"{body}</main></body></html>"
    )
