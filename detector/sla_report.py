"""The monthly SLA compliance report per gateway, the evidence for a vendor credit claim.

Per gateway over one calendar month (UTC): final payments and technical failures (declines
excluded, as the rules count them; summed per day by the payments database), the failure
rate with its 95% Wilson interval, the SLA and whether the rate stayed within it, the
minutes and incidents in breach (the ``sla_breach`` and ``outage`` episodes of the state
database, overlapping episodes of one gateway counted once), and the worst day.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any

import numpy as np

from detector.config import Config
from detector.model import Counts
from detector.source import Source
from detector.stats.binomial import wilson_interval
from detector.store import Episode, StateStore
from detector.timeutil import iso_z, minute_start, short_utc

__all__ = [
    "BREACH_RULES",
    "FORMATS",
    "GatewaySla",
    "SlaReport",
    "WorstDay",
    "breach_time",
    "month_span",
    "render",
    "sla_report",
]

# The episodes that count as time in breach: the rate above the SLA, or the gateway down.
BREACH_RULES = ("sla_breach", "outage")
FORMATS = ("table", "json", "html", "csv")


@dataclass(frozen=True)
class WorstDay:
    """The day (UTC) with the highest failure rate, with its figures."""

    day: date
    payments: int
    failures: int
    rate: float


@dataclass(frozen=True)
class GatewaySla:
    gateway: str
    payments: int  # final payments: succeeded, failed and declined
    failures: int  # technical failures, declines excluded
    rate: float | None  # None without payments
    rate_low: float
    rate_high: float
    sla: float
    met: bool  # the month's failure rate is at most the SLA
    breach_minutes: int
    incidents: int
    worst_day: WorstDay | None


@dataclass(frozen=True)
class SlaReport:
    month: str  # 2026-11
    start: datetime
    until: datetime  # the month's end, or the generation time for the month in progress
    generated_at: datetime
    gateways: list[GatewaySla]


def month_span(month: str) -> tuple[datetime, datetime]:
    """The first moment of ``month`` (``YYYY-MM``) and of the month after, in UTC.

    >>> [d.isoformat() for d in month_span("2026-12")]
    ['2026-12-01T00:00:00+00:00', '2027-01-01T00:00:00+00:00']
    """
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"--month {month!r}: write the month as YYYY-MM, e.g. 2026-11") from None
    following = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start, following


def breach_time(
    episodes: Sequence[Episode], start: datetime, until: datetime
) -> dict[str, tuple[int, int]]:
    """Per gateway, (minutes, incidents) in breach within ``[start, until)``: the union of
    its episodes' spans (an episode still firing lasts to ``until``); episodes that overlap
    or touch make one incident.

    >>> t = datetime(2026, 11, 2, tzinfo=UTC)
    >>> def spell(rule, begin, end):
    ...     return Episode(rule, {"gateway": "a"}, "critical", t + timedelta(minutes=begin),
    ...                    None if end is None else t + timedelta(minutes=end))
    >>> breach_time([spell("outage", 0, 30), spell("sla_breach", 20, 50),
    ...              spell("outage", 90, None)], t, t + timedelta(minutes=100))
    {'a': (60, 2)}
    """
    spans: dict[str, list[tuple[datetime, datetime]]] = {}
    for episode in episodes:
        gateway = episode.labels.get("gateway")
        begin = max(episode.started_at, start)
        end = min(episode.ended_at or until, until)
        if gateway is not None and begin < end:
            spans.setdefault(gateway, []).append((begin, end))
    found = {}
    for gateway, pieces in spans.items():
        pieces.sort()
        total, incidents = timedelta(0), 0
        current_start, current_end = pieces[0]
        for begin, end in pieces[1:]:
            if begin <= current_end:
                current_end = max(current_end, end)
                continue
            total, incidents = total + (current_end - current_start), incidents + 1
            current_start, current_end = begin, end
        total, incidents = total + (current_end - current_start), incidents + 1
        found[gateway] = (round(total.total_seconds() / 60), incidents)
    return found


def sla_report(
    config: Config, source: Source, store: StateStore, month: str, now: datetime
) -> SlaReport:
    """The report of ``month`` as of ``now`` (a month in progress is counted up to ``now``)."""
    start, end = month_span(month)
    if start >= now:
        raise ValueError(f"--month {month}: the month has not started yet")
    until = min(end, now)
    daily = source.daily(start, until)
    breach = breach_time(store.episodes(BREACH_RULES, start, until), start, until)
    names = sorted(set(daily.gateway.tolist()) | set(config.gateways) | set(breach))
    totals, worst = _per_gateway(daily, names)
    rows = []
    for i, gateway in enumerate(names):
        payments, failures = int(totals[0][i]), int(totals[1][i])
        low, high = wilson_interval(failures, payments)
        sla = config.sla_for(gateway)
        rate = failures / payments if payments else None
        minutes, incidents = breach.get(gateway, (0, 0))
        rows.append(
            GatewaySla(
                gateway,
                payments,
                failures,
                rate,
                float(low),
                float(high),
                sla,
                rate is None or rate <= sla,
                minutes,
                incidents,
                worst[i],
            )
        )
    return SlaReport(month, start, until, now, rows)


def _per_gateway(
    daily: Counts, names: list[str]
) -> tuple[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]], list[WorstDay | None]]:
    """Month totals (payments, failures) per gateway of ``names``, and each one's worst day."""
    index = np.searchsorted(np.array(names), daily.gateway.astype(str)).astype(np.int64)
    payments = np.bincount(index, weights=daily.payments, minlength=len(names))
    failures = np.bincount(index, weights=daily.failures, minlength=len(names))
    worst: list[WorstDay | None] = [None] * len(names)
    counted = daily.payments > 0
    rate = np.divide(
        daily.failures, daily.payments, out=np.zeros(daily.payments.size), where=counted
    )
    # Per gateway, the highest rate first; on a tie the more failures, then the earlier day.
    order = np.lexsort((daily.minute, -daily.failures, -rate, index))
    order = order[counted[order]]
    first = order[np.r_[True, index[order][1:] != index[order][:-1]]] if order.size else order
    for row in first:
        worst[int(index[row])] = WorstDay(
            minute_start(int(daily.minute[row])).date(),
            int(daily.payments[row]),
            int(daily.failures[row]),
            float(rate[row]),
        )
    return (payments.astype(np.int64), failures.astype(np.int64)), worst


# --- rendering ------------------------------------------------------------------------------

_COLUMNS = (
    "gateway",
    "payments",
    "failures",
    "failure_rate",
    "rate_low",
    "rate_high",
    "sla",
    "met",
    "breach_minutes",
    "incidents",
    "worst_day",
    "worst_day_payments",
    "worst_day_failures",
    "worst_day_rate",
)
_HEADINGS = (
    "gateway",
    "payments",
    "failures",
    "failure rate",
    "95% interval",
    "SLA",
    "met",
    "minutes in breach",
    "incidents",
    "worst day",
)


def _flat(row: GatewaySla) -> dict[str, Any]:
    """One gateway as the CSV and JSON carry it (rates as fractions)."""
    worst = row.worst_day
    return {
        "gateway": row.gateway,
        "payments": row.payments,
        "failures": row.failures,
        "failure_rate": row.rate,
        "rate_low": row.rate_low,
        "rate_high": row.rate_high,
        "sla": row.sla,
        "met": row.met,
        "breach_minutes": row.breach_minutes,
        "incidents": row.incidents,
        "worst_day": worst.day.isoformat() if worst else None,
        "worst_day_payments": worst.payments if worst else None,
        "worst_day_failures": worst.failures if worst else None,
        "worst_day_rate": worst.rate if worst else None,
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _cells(row: GatewaySla) -> tuple[str, ...]:
    """One gateway as people read it (table and HTML)."""
    worst = row.worst_day
    return (
        row.gateway,
        str(row.payments),
        str(row.failures),
        _percent(row.rate),
        f"{_percent(row.rate_low)} - {_percent(row.rate_high)}" if row.payments else "-",
        _percent(row.sla),
        "yes" if row.met else "NO",
        str(row.breach_minutes),
        str(row.incidents),
        (
            f"{worst.day.isoformat()}: {_percent(worst.rate)} ({worst.failures}/{worst.payments})"
            if worst
            else "-"
        ),
    )


def _title(report: SlaReport) -> str:
    return f"SLA compliance {report.month}, generated {short_utc(report.generated_at)} UTC"


def _period(report: SlaReport) -> str:
    return f"payments from {iso_z(report.start)} to {iso_z(report.until)}"


def render_table(report: SlaReport) -> str:
    rows = [_HEADINGS, *(_cells(row) for row in report.gateways)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADINGS))]
    lines = [f"{_title(report)} ({_period(report)})"]
    for row in rows:
        lines.append(
            "  ".join(
                cell.ljust(width) if i in (0, 9) else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    return "\n".join(lines) + "\n"


def render_json(report: SlaReport) -> str:
    document = {
        "month": report.month,
        "from": iso_z(report.start),
        "until": iso_z(report.until),
        "generated_at": iso_z(report.generated_at),
        "breach_rules": list(BREACH_RULES),
        "gateways": [_nested(row) for row in report.gateways],
    }
    return json.dumps(document, indent=2) + "\n"


def _nested(row: GatewaySla) -> dict[str, Any]:
    """One gateway for the JSON document: the worst day as an object of its own."""
    flat = {k: v for k, v in _flat(row).items() if not k.startswith("worst_day")}
    worst = row.worst_day
    flat["worst_day"] = {**asdict(worst), "day": worst.day.isoformat()} if worst else None
    return flat


def render_csv(report: SlaReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in report.gateways:
        writer.writerow({k: "" if v is None else v for k, v in _flat(row).items()})
    return out.getvalue()


# Printable on A4 landscape; no script and no external resource, so it can be attached.
_STYLE = """
body { font: 13px/1.4 system-ui, sans-serif; color: #111; margin: 2em; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
p { color: #444; margin: 0 0 1em; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #bbb; padding: .3em .5em; text-align: right; }
th { background: #eee; }
td:first-child, td:last-child, th:first-child, th:last-child { text-align: left; }
tr.missed td { background: #fde2e1; }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { margin: 0; font-size: 10pt; }
  thead { display: table-header-group; }
  tr { page-break-inside: avoid; }
  th, tr.missed td { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def render_html(report: SlaReport) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in _HEADINGS)
    body = "\n".join(
        ("<tr>" if row.met else '<tr class="missed">')
        + "".join(f"<td>{escape(cell)}</td>" for cell in _cells(row))
        + "</tr>"
        for row in report.gateways
    )
    title = escape(_title(report))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_STYLE}</style></head><body><main>\n"
        f"<h1>{title}</h1>\n<p>{escape(_period(report))}. Failures are technical failures "
        "(declines excluded); minutes in breach are the time an "
        f"{' or '.join(BREACH_RULES)} alert was active.</p>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>\n"
        "</main></body></html>\n"
    )


def render(report: SlaReport, fmt: str) -> str:
    renderers = {
        "table": render_table,
        "json": render_json,
        "html": render_html,
        "csv": render_csv,
    }
    return renderers[fmt](report)
