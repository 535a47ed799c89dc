"""Inline SVG charts and the shared look of the detector's HTML pages (no script, no fetch).

The status page (24 hours, every gateway at once) and the backtest report (one chart per
gateway over the replayed range) draw with the same functions, vectorised across rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from html import escape
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "HEIGHT",
    "PAD",
    "STYLE",
    "WIDTH",
    "band_paths",
    "heights",
    "line_chart",
    "line_paths",
    "percent",
    "runs",
    "sla_line",
    "svg",
    "table",
]

WIDTH, HEIGHT, PAD = 600, 120, 18  # chart viewBox; PAD leaves room for the time axis

STYLE = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330; }
body { margin: 0 auto; max-width: 1100px; padding: 12px; background: #f5f6f8; }
h1 { font-size: 1.3rem; margin: 0 0 4px; } h2 { font-size: 1.1rem; margin: 24px 0 8px; }
.meta { color: #5b6272; font-size: .85rem; margin-bottom: 12px; }
.gw { background: #fff; border-radius: 8px; padding: 12px; margin: 10px 0;
      box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 8px 16px; }
.name { font-weight: 600; font-size: 1.1rem; margin: 0; }
.badge { border-radius: 10px; padding: 1px 10px; font-size: .85rem; font-weight: 600; color: #fff; }
/* White on each badge keeps a contrast of at least 4.5:1 (WCAG AA for small text). */
.healthy { background: #137333; } .degraded { background: #a35200; }
.down { background: #c5221f; } .unknown { background: #5f6368; }
.figures { color: #3c4043; font-size: .9rem; } .reason { font-size: .9rem; margin: 4px 0; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-top: 8px; }
.chart h4 { font-size: .8rem; font-weight: 500; color: #5b6272; margin: 0 0 2px; }
svg { width: 100%; height: auto; display: block; background: #fbfbfc; }
table { width: 100%; border-collapse: collapse; background: #fff; font-size: .9rem; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e3e5e8;
         vertical-align: top; }
.empty { color: #5b6272; font-style: italic; }
@media (max-width: 700px) {
  .charts { grid-template-columns: 1fr; }
  table, tbody, tr, td { display: block; } thead { display: none; }
  tr { border-bottom: 1px solid #e3e5e8; padding: 4px 0; } td { border: none; padding: 2px 8px; }
  /* Stacked rows keep their field names. */
  td::before { content: attr(data-label) ": "; font-weight: 600; color: #3c4043; }
  /* A chart is drawn at about 60% of its 600-unit width here: larger labels stay legible. */
  svg text { font-size: 22px; }
}
"""


def table(headers: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]]) -> str:
    """A table of ``(row class, cells as HTML)``; each cell carries its column's name, which
    a phone shows before the value once the rows stack.

    >>> print(table(["state"], [("alert", ["firing"])]).split("<tbody>")[1])
    <tr class="alert"><td data-label="state">firing</td></tr></tbody></table>
    """
    labels = [escape(h) for h in headers]
    head = "".join(f'<th scope="col">{label}</th>' for label in labels)
    body = "".join(
        (f'<tr class="{escape(css)}">' if css else "<tr>")
        + "".join(
            f'<td data-label="{label}">{cell}</td>'
            for label, cell in zip(labels, cells, strict=True)
        )
        + "</tr>"
        for css, cells in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def percent(value: float | None) -> str:
    return (
        "-" if value is None else f"{value:.1%}" if value >= 0.001 or value == 0 else f"{value:.2%}"
    )


# Coordinates are written by table look-up, not formatted one by one: every value a chart
# uses (0.0 to 600.0 in tenths) is a string here once.
_TENTHS = np.array([f"{v / 10:.1f}" for v in range(WIDTH * 10 + 1)], dtype=object)
_Y_TOKENS: npt.NDArray[np.object_] = np.array(["," + t for t in _TENTHS], dtype=object)


def coordinates(values: npt.NDArray[np.floating], table: npt.NDArray[np.object_] = _TENTHS) -> Any:
    """Each value (within the view box) as its string with one decimal, from ``table``."""
    return table[np.rint(np.nan_to_num(values) * 10).astype(np.int64).clip(0, WIDTH * 10)]


def line_paths(xs: npt.NDArray[np.floating], ys: npt.NDArray[np.floating]) -> list[str]:
    """SVG path data per row of ``ys``: a line through the points, broken where NaN.

    >>> line_paths(np.array([0.0, 1, 2, 3]), np.array([[5.0, np.nan, 6, 7]]))
    ['M0.0,5.0M2.0,6.0L3.0,7.0']
    """
    valid = ~np.isnan(ys)
    starts = valid & ~np.pad(valid, ((0, 0), (1, 0)))[:, :-1]
    x = coordinates(xs)
    tokens = np.full((ys.shape[0], 2 * ys.shape[1]), "", dtype=object)
    tokens[:, 0::2] = np.where(valid, np.where(starts, "M" + x, "L" + x), "")
    tokens[:, 1::2] = np.where(valid, coordinates(ys, _Y_TOKENS), "")
    return ["".join(row) for row in tokens.tolist()]


def runs(flags: npt.NDArray[np.bool_]) -> list[list[tuple[int, int]]]:
    """Per row, the ``(first, end)`` columns of each stretch of True.

    >>> runs(np.array([[True, True, False, True], [False] * 4]))
    [[(0, 2), (3, 4)], []]
    """
    edges = np.diff(np.pad(flags.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    starts, ends = np.argwhere(edges == 1), np.argwhere(edges == -1)
    runs: list[list[tuple[int, int]]] = [[] for _ in range(flags.shape[0])]
    for (row, first), end in zip(starts.tolist(), ends[:, 1].tolist(), strict=True):
        runs[row].append((first, end))
    return runs


def band_paths(
    step: float, low: npt.NDArray[np.floating], high: npt.NDArray[np.floating]
) -> list[str]:
    """SVG path data per row: the area between ``low`` and ``high`` (chart heights per
    bucket) as one rectangle for each stretch of buckets with the same values; nothing
    where either is NaN.

    >>> band_paths(2.0, np.array([[9.0, 9, 8, np.nan]]), np.array([[5.0, 5, 4, 1]]))
    ['M0.0,5.0H4.0V9.0H0.0ZM4.0,4.0H6.0V8.0H4.0Z']
    >>> band_paths(2.0, np.zeros((0, 4)), np.zeros((0, 4)))  # no gateway in the history
    []
    """
    rows, columns = low.shape
    if rows == 0:
        return []
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
    x0, x1 = coordinates(a * step), coordinates(b * step)
    top, bottom = coordinates(high[row, a]), coordinates(low[row, a])
    shapes = "M" + x0 + "," + top + "H" + x1 + "V" + bottom + "H" + x0 + "Z"
    split = np.split(shapes, np.cumsum(np.bincount(row, minlength=rows))[:-1])
    return ["".join(part.tolist()) for part in split]


def heights(
    values: npt.NDArray[np.float64], top: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Chart heights of ``values`` per row, each row scaled to its own ``top``."""
    plot_h = HEIGHT - PAD
    return plot_h - np.clip(values / top[:, None], 0, 1) * (plot_h - 4)


def svg(
    path: str,
    spans: list[tuple[int, int]],
    step: float,
    label: str,
    colour: str,
    behind: str = "",
    axis: tuple[str, str, str] = ("-24h", "-12h", "now"),
) -> str:
    """One chart: alert spans shaded, ``behind`` (an SLA line, a band), the line, the axis."""
    plot_h = HEIGHT - PAD
    shading = "".join(
        f'<rect x="{a * step:.1f}" y="0" width="{(b - a) * step:.1f}" height="{plot_h}" '
        'fill="#f6c7c3" class="alert-span"/>'
        for a, b in spans
    )
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">{shading}{behind}'
        f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>'
        f'<line x1="0" x2="{WIDTH}" y1="{plot_h}" y2="{plot_h}" stroke="#c4c7cc"/>{_axis(*axis)}'
        f'<text x="{WIDTH - 4}" y="2" font-size="13" fill="#5b6272" text-anchor="end" '
        'dominant-baseline="hanging">'
        f"{escape(label)}</text></svg>"
    )


@lru_cache(maxsize=16)  # every chart of a page has the same axis
def _axis(left: str, middle: str, right: str) -> str:
    return "".join(
        f'<text x="{fraction * WIDTH:.0f}" y="{HEIGHT - 4}" font-size="13" fill="#5b6272" '
        f'text-anchor="{anchor}">{escape(text)}</text>'
        for fraction, text, anchor in (
            (0.0, left, "start"),
            (0.5, middle, "middle"),
            (1.0, right, "end"),
        )
    )


def sla_line(baseline: float, top: float) -> str:
    y = (HEIGHT - PAD) - min(baseline / top, 1) * (HEIGHT - PAD - 4)
    return (
        f'<line x1="0" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c5221f" '
        'stroke-dasharray="6 4" stroke-width="1.5" class="sla-line"/>'
    )


def line_chart(
    values: npt.NDArray[np.float64],
    top: float,
    shaded: npt.NDArray[np.bool_],
    line: float | None,
    label: str,
    colour: str,
    axis: tuple[str, str, str] = ("-24h", "-12h", "now"),
) -> str:
    """One chart of one series (the backtest report draws its charts with this)."""
    step = WIDTH / max(values.size, 1)
    xs = (np.arange(values.size) + 0.5) * step
    (path,) = line_paths(xs, heights(values[None, :], np.array([top])))
    (spans,) = runs(shaded[None, :])
    behind = sla_line(line, top) if line is not None else ""
    return svg(path, spans, step, label, colour, behind, axis)
