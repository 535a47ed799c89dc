"""What the monthly SLA report costs next to the SQL aggregation it needs.

Writes a year of simulated payments of 50 gateways into a database (SQLite by default) and
a year of stored alert episodes (``outage`` and ``sla_breach``, four per gateway and month)
into a state database, then times side by side, in one run, the twelve monthly reports
(``sla_report`` and its rendering) against the twelve bare aggregations they issue (the
per-gateway, per-day counts of each month, grouped by the database).

Each repeat times the two alternately, so both see the same load on a shared machine; the
medians of ``--repeat`` runs are printed, the ratio also in this process's CPU time (which
counts the query's work only where the database runs in process, SQLite).

    .venv/bin/python benchmarks/sla_report.py [--db URL] [--per-minute 0.1] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import wall_and_cpu
from detector.alerts import Alert, Transition, fingerprint
from detector.config import parse_config
from detector.db import connect
from detector.model import Evidence
from detector.simulate import GatewayProfile, simulate
from detector.sla_report import month_span, render, sla_report
from detector.source import SqlSource
from detector.store import StateStore

__all__ = ["main"]

YEAR = 2026
MONTHS = [f"{YEAR}-{month:02d}" for month in range(1, 13)]
GATEWAYS = 50
EPISODES_PER_MONTH = 4


def _episodes(names: list[str], seed: int) -> list[Transition]:
    """Resolved outages and SLA breaches of 10 minutes to 3 hours, spread over the year."""
    rng = random.Random(seed)
    resolved = []
    for month in MONTHS:
        start, end = month_span(month)
        for name in names:
            for _ in range(EPISODES_PER_MONTH):
                rule = rng.choice(("outage", "sla_breach"))
                since = start + (end - start) * rng.random()
                until = since + timedelta(minutes=rng.randint(10, 180))
                labels = {"rule": rule, "gateway": name}
                alert = Alert(
                    fingerprint(labels),
                    labels,
                    "firing",
                    "critical",
                    f"{rule} on {name}",
                    since,
                    since,
                    until,
                    Evidence(),
                    fired_at=since,
                )
                resolved.append(Transition("resolved", alert, until))
    return sorted(resolved, key=lambda transition: transition.at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="payments database URL (default: a temporary SQLite file)")
    parser.add_argument("--state", help="state database URL (default: a temporary SQLite file)")
    parser.add_argument(
        "--per-minute", type=float, default=0.1, help="payments per minute of each gateway"
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="detector-bench-"))
    url = args.db or f"sqlite:///{folder / 'payments.db'}"
    state_url = args.state or f"sqlite:///{folder / 'state.db'}"
    names = [f"gw{i:02d}" for i in range(GATEWAYS)]
    profiles = [
        GatewayProfile(name, per_minute=args.per_minute, failure_rate=0.01, decline_rate=0.08)
        for name in names
    ]
    year_start, _ = month_span(MONTHS[0])
    _, year_end = month_span(MONTHS[-1])
    began = time.perf_counter()
    rows = simulate(url, year_start, (year_end - year_start).days, profiles, seed=1)
    print(
        f"wrote {rows:,} payments of {GATEWAYS} gateways over {YEAR} "
        f"in {time.perf_counter() - began:.0f}s ({url})"
    )

    config = parse_config(
        {
            "source": {
                "url": url,
                "declines": {
                    "error_codes": [code for code, _ in profiles[0].decline_codes],
                },
            },
            "state": {"url": state_url},
            "gateways": {name: {"sla": 0.02} for name in names},
        },
        env={},
    )
    source = SqlSource(connect(url), config.source)
    store = StateStore.open(state_url)
    resolved = _episodes(names, seed=2)
    for month in MONTHS:  # one save per month, as ticks resolving alerts would add them
        start, end = month_span(month)
        batch = [t for t in resolved if start <= t.at < end]
        store.save_tick(None, {}, [], end, transitions=batch)
    print(f"stored {len(resolved):,} resolved alert episodes ({state_url})")

    now = year_end + timedelta(days=1)

    def aggregations() -> None:
        for month in MONTHS:
            source.daily(*month_span(month))

    def reports() -> None:
        for month in MONTHS:
            render(sla_report(config, source, store, month, now), "html")

    runs = [(wall_and_cpu(aggregations), wall_and_cpu(reports)) for _ in range(args.repeat)]
    sql = statistics.median(b[0] for b, _ in runs)
    whole = statistics.median(m[0] for _, m in runs)
    ratio = statistics.median(m[0] / b[0] for b, m in runs)
    cpu_ratio = statistics.median(m[1] / b[1] for b, m in runs)
    print(f"\ntwelve monthly reports of {GATEWAYS} gateways (median of {args.repeat})")
    print(f"  SQL aggregation alone      {sql:8.3f} s")
    print(f"  whole reports (HTML)       {whole:8.3f} s")
    print(f"  ratio reports / SQL        {ratio:8.2f}   (in CPU time {cpu_ratio:.2f})")
    source.engine.dispose()
    store.engine.dispose()


if __name__ == "__main__":
    main()
