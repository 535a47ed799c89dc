"""The backtest as one self-contained HTML page: what would have fired, against the data.

Per gateway, hourly failure rate against its SLA and hourly volume, with the spans where an
alert was firing shaded, then every transition with its message. Like the status page it has
no script and no external resource, so it can be mailed or attached to a ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

import numpy as np
import numpy.typing as npt

from detector.backtest import subject
from detector.config import Config
from detector.model import Counts, Notification
from detector.service.charts import STYLE, line_chart, percent, table
from detector.timeutil import epoch_minute

__all__ = ["alert_hours", "render"]


def _hour(iso: str) -> int:
    return epoch_minute(datetime.fromisoformat(iso)) // 60


def alert_hours(
    events: Sequence[Notification], gateways: Sequence[str], first_hour: int, hours: int
) -> npt.NDArray[np.bool_]:
    """(gateways, hours): whether some alert of the gateway was firing during each hour.

    An alert still firing at the end of the replay is shaded to the end.

    >>> from detector.model import Evidence
    >>> def event(kind, at):
    ...     return Notification(kind, "f", "k", "outage", "critical", {"gateway": "a"},
    ...                         "", at, None, Evidence())
    >>> alert_hours([event("firing", "1970-01-01T01:30:00+00:00"),
    ...              event("resolved", "1970-01-01T02:10:00+00:00")], ["a"], 0, 4).tolist()
    [[False, True, True, False]]
    """
    shaded = np.zeros((len(gateways), hours), dtype=bool)
    row = {gateway: i for i, gateway in enumerate(gateways)}
    opened: dict[str, tuple[int, int]] = {}  # fingerprint -> (row, first hour)
    for event in events:
        gateway = event.labels.get("gateway")
        if gateway not in row:
            continue
        if event.event == "firing":
            opened.setdefault(event.fingerprint, (row[gateway], _hour(event.at)))
        elif event.fingerprint in opened:
            i, since = opened.pop(event.fingerprint)
            shaded[i, max(since - first_hour, 0) : _hour(event.at) - first_hour + 1] = True
    for i, since in opened.values():
        shaded[i, max(since - first_hour, 0) :] = True
    return shaded


def _hourly(
    counts: Counts, gateways: Sequence[str], first_hour: int, hours: int
) -> tuple[npt.NDArray[np.float64], ...]:
    """(gateways, hours) payments, failures and volume, zeros where nothing arrived."""
    by_hour = counts.by_hour()
    row = {gateway: i for i, gateway in enumerate(gateways)}
    rows = np.array([row[g] for g in by_hour.gateway], dtype=np.int64)
    columns = by_hour.minute // 60 - first_hour
    keep = (columns >= 0) & (columns < hours)
    out = []
    for values in (by_hour.payments, by_hour.failures, by_hour.volume):
        table = np.zeros((len(gateways), hours))
        table[rows[keep], columns[keep]] = values[keep]
        out.append(table)
    return tuple(out)


def _gateway_section(
    gateway: str,
    sla: float,
    payments: npt.NDArray[np.float64],
    failures: npt.NDArray[np.float64],
    volume: npt.NDArray[np.float64],
    shaded: npt.NDArray[np.bool_],
    axis: tuple[str, str, str],
    fired: int,
) -> str:
    rates = np.divide(failures, payments, out=np.full_like(payments, np.nan), where=payments > 0)
    observed = rates[~np.isnan(rates)]
    rate_top = min(max(sla * 3, float(observed.max()) if observed.size else 0.0) * 1.1, 1.0)
    per_minute = volume / 60
    volume_top = max(float(per_minute.max()) * 1.1, 1.0)
    total, failed = int(payments.sum()), int(failures.sum())
    overall = failed / total if total else None
    rate_chart = line_chart(
        rates, rate_top, shaded, sla, f"max {percent(rate_top)}", "#1a73e8", axis
    )
    volume_chart = line_chart(
        per_minute, volume_top, shaded, None, f"max {volume_top:.0f}/min", "#5f6368", axis
    )
    return (
        f'<section class="gw" id="gw-{escape(gateway)}">'
        f'<div class="head"><h3 class="name">{escape(gateway)}</h3>'
        f'<span class="figures">{percent(overall)} of {total} payments failed &middot; '
        f"SLA {percent(sla)} &middot; {fired} alert(s) fired</span></div>"
        '<div class="charts"><div class="chart">'
        f"<h4>Failure rate per hour vs SLA {percent(sla)} (dashed); firing alerts shaded</h4>"
        f'{rate_chart}</div><div class="chart"><h4>Payments per minute, hourly mean</h4>'
        f"{volume_chart}</div></div></section>"
    )


def _transitions(events: Sequence[Notification]) -> str:
    if not events:
        return '<p class="empty">Nothing would have fired.</p>'
    return table(
        ["at", "event", "severity", "rule", "gateway", "message"],
        (
            (
                e.event,
                [
                    escape(e.at),
                    escape(e.event),
                    escape(e.severity),
                    escape(e.rule),
                    escape(subject(e.labels)),
                    escape(e.summary),
                ],
            )
            for e in events
        ),
    )


def render(
    config: Config,
    counts: Counts,
    events: Sequence[Notification],
    start: datetime,
    end: datetime,
) -> str:
    """The report of a replay from ``start`` to ``end``: ``counts`` are that span's minutes."""
    first_hour = epoch_minute(start) // 60
    hours = max(-(-epoch_minute(end) // 60) - first_hour, 1)
    gateways = sorted(
        {str(g) for g in counts.gateway}
        | {e.labels["gateway"] for e in events if "gateway" in e.labels}
    )
    payments, failures, volume = _hourly(counts, gateways, first_hour, hours)
    shaded = alert_hours(events, gateways, first_hour, hours)
    middle = datetime.fromtimestamp((first_hour + hours / 2) * 3600, tz=UTC)
    axis = (f"{start:%b %d %H:%M}", f"{middle:%b %d %H:%M}", f"{end:%b %d %H:%M}")
    fired = {
        gateway: sum(
            1 for e in events if e.event == "firing" and e.labels.get("gateway") == gateway
        )
        for gateway in gateways
    }
    sections = "".join(
        _gateway_section(
            gateway,
            config.sla_for(gateway),
            payments[i],
            failures[i],
            volume[i],
            shaded[i],
            axis,
            fired[gateway],
        )
        for i, gateway in enumerate(gateways)
    )
    firing = sum(e.event == "firing" for e in events)
    budget = config.detection.false_alerts * 90 * 24 * 60
    title = f"Backtest {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>"
        f"<h1>{escape(title)}</h1>"
        f'<div class="meta">{firing} alert(s) would have fired on {len(gateways)} gateway(s) '
        f"&middot; budget {budget:g} false alert(s) per gateway per 90 days &middot; "
        f"ticks every {config.schedule.interval.total_seconds() / 60:g} min, through the "
        "daemon's own engine</div>"
        f"<h2>Gateways</h2>{sections or '<p class=empty>No payments in this range.</p>'}"
        f"<h2>Alert transitions</h2>{_transitions(events)}"
        "</main></body></html>"
    )
