"""What routing and the durable outbox cost per tick, next to committing the tick's state.

N gateways start failing on the same tick (the worst case: every alert transitions at once,
each routed to two receivers through a route tree with regex matchers, with a silence and the
default inhibit rules to check). Measured side by side, medians of ``--repeat`` runs:

- route: Router.deliveries for the N transitions (tree walk, muting, group keys);
- commit: StateStore.save_tick writing the alerts and the 2N outbox entries (with the group
  look-ups that time each entry), against save_tick of the same alerts without deliveries;
- steady: a later tick with the N alerts still firing and nothing due (reminder checks only).

    .venv/bin/python benchmarks/routing.py [--alerts 200] [--repeat 5] [--state URL]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import sqlalchemy as sa

from detector.alerting.routing import Router
from detector.alerts import AlertBook, Transition
from detector.config import parse_config
from detector.model import Evidence
from detector.notify import build_receivers
from detector.rules import Finding
from detector.store import StateStore

__all__ = ["main"]

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _median(action: Callable[[], object], repeat: int) -> float:
    return statistics.median(timeit.repeat(action, number=1, repeat=repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--state", help="state database URL (default: a temporary SQLite file)")
    args = parser.parse_args()

    config = parse_config(
        {
            "receivers": {"console": {"type": "console"}, "ops": {"type": "console"}},
            "route": {
                "receivers": ["console"],
                "routes": [
                    {"match": {"severity": "critical"}, "receivers": ["ops"], "continue": True},
                    {"match_re": {"gateway": "gw-1.*|gw-2.*"}, "receivers": ["console"]},
                ],
            },
        },
        env={},
    )
    findings = [
        Finding("outage", f"gw-{i}", "critical", f"gw-{i} fails", T0, Evidence(payments=10))
        for i in range(args.alerts)
    ]
    with tempfile.TemporaryDirectory() as folder, requests.Session() as session:
        url = args.state or f"sqlite:///{Path(folder) / 'state.db'}"
        store = StateStore.open(url)
        router = Router(config, build_receivers(config, session, io.StringIO()))
        silences = [
            store.add_silence({"gateway": "nobody"}, {}, T0, T0 + timedelta(hours=1), "b", "x")
        ]

        def fresh() -> tuple[AlertBook, list[Transition]]:
            book = AlertBook(config)
            return book, book.observe_findings("outage", findings, T0)

        book, transitions = fresh()
        route = _median(lambda: router.deliveries(transitions, fresh()[0].alerts, T0), args.repeat)
        deliveries = router.deliveries(transitions, book.alerts, T0, silences)

        def clear() -> None:
            with store.engine.begin() as connection:
                connection.execute(sa.text("DELETE FROM detector_outbox"))

        def commit(with_deliveries: bool) -> float:
            queued = deliveries if with_deliveries else []
            timings = timeit.repeat(
                lambda: store.save_tick(T0, book.alerts, queued, T0),
                setup=clear,
                number=1,
                repeat=args.repeat,
            )
            return statistics.median(timings)

        bare, full = commit(False), commit(True)
        later = T0 + timedelta(minutes=1)
        steady = _median(lambda: router.deliveries([], book.alerts, later, silences), args.repeat)
        store.engine.dispose()

    n = args.alerts
    print(f"{n} alerts firing at once, {len(deliveries)} outbox entries, state {url.split(':')[0]}")
    print(f"route      {route * 1e3:8.1f} ms   ({route / n * 1e6:.0f} us per alert)")
    print(
        f"commit     {full * 1e3:8.1f} ms   vs {bare * 1e3:.1f} ms without deliveries "
        f"(x{full / bare:.1f})"
    )
    print(f"steady     {steady * 1e3:8.1f} ms   ({steady / n * 1e6:.0f} us per firing alert)")


if __name__ == "__main__":
    main()
