"""Payments that stay ``pending`` for minutes before they settle, and a daemon restarted on
a table whose rows arrive late: the daemon's ticks, replayed row by row in simulated time,
judge the failure rate without the settle-speed bias and keep what they learnt of the
table across a restart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import requests

from detector.alerts import notification_for
from detector.backtest import replay
from detector.config import Config, parse_config
from detector.engine import Engine
from detector.model import Notification
from detector.rules import evaluate
from detector.simulate import GatewayProfile, Incident, generate
from detector.simulate.arrivals import Arrivals, batched, settled_late
from detector.source import SqlSource
from detector.window import CountWindow

from .conftest import Clock, PaymentsDb, in_process_daemon

DAY = datetime(2026, 11, 17, tzinfo=UTC)  # a Tuesday
BEGIN, END = DAY + timedelta(hours=10), DAY + timedelta(hours=15)
SLOW = GatewayProfile("stripe", per_minute=20, failure_rate=0.015)
# Technical failures 1.5% -> 8% for an hour, three hours into the replay.
INCIDENT = Incident("stripe", DAY + timedelta(hours=13), timedelta(hours=1), failure_rate=0.08)


def _config(db: PaymentsDb) -> Config:
    return parse_config({"source": {"url": db.url, "table": db.table}}, env={})


def test_successes_pending_for_minutes_raise_no_sla_breach_and_an_incident_still_fires(
    sqlite_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    # Successes are written pending and settle a median 8 minutes later; failures are
    # final at once.
    frame = generate(DAY + timedelta(hours=4), END, [SLOW], [INCIDENT], seed=3)
    created = frame["created_at"].to_numpy(dtype="datetime64[us]")
    arrivals = Arrivals(
        sqlite_db.engine, sqlite_db.table, frame, created, settled_late(frame, 8, 3)
    )
    config = _config(sqlite_db)
    engine = Engine(config, open_source(config), hold_first_start=True)
    # Per tick before the incident: failures and payments of the newest 10 minutes, as
    # read and as the failure-rate rules judge them.
    newest = np.zeros((2, 2))

    def tick(now: datetime) -> list[Notification]:
        transitions = engine.tick(now).transitions
        if BEGIN <= now < INCIDENT.start.replace(tzinfo=UTC):
            for row, window in enumerate((engine.window, engine.judged_window())):
                newest[row] += window.failures[:, -10:].sum(), window.payments[:, -10:].sum()
        return [notification_for(t, config) for t in transitions if not t.repeat]

    live = arrivals.ticked(tick, BEGIN, END, timedelta(minutes=30))

    read, judged = newest[:, 0] / newest[:, 1]
    assert read > 0.03  # the settle-speed bias in the rows as they stand
    assert 0.01 < judged < 0.02
    firing = [n for n in live if n.event == "firing"]
    assert [(n.rule, n.labels["gateway"]) for n in firing] == [("sla_breach", "stripe")]
    start = INCIDENT.start.replace(tzinfo=UTC)
    delay = datetime.fromisoformat(firing[0].at) - start
    assert timedelta(0) < delay <= timedelta(minutes=30)

    # The backtest of the final table raises the same alert.
    arrivals.until(END + timedelta(hours=2))
    final = [n for n in replay(config, open_source(config), BEGIN, END) if n.event == "firing"]
    assert [(n.rule, n.labels["gateway"]) for n in final] == [("sla_breach", "stripe")]
    assert abs(datetime.fromisoformat(final[0].at) - start - delay) <= timedelta(minutes=15)


def test_a_restarted_daemon_keeps_what_it_learnt_of_rows_copied_in_batches(
    sqlite_db: PaymentsDb, state_url: str, session: requests.Session
) -> None:
    adyen = GatewayProfile("adyen", per_minute=10, failure_rate=0.01)
    end = DAY + timedelta(hours=13)
    frame = generate(DAY - timedelta(days=8), end, [adyen], seed=12)
    arrivals = Arrivals(sqlite_db.engine, sqlite_db.table, frame, batched(frame, 10, 3))
    config = _config(sqlite_db)
    clock = Clock(DAY + timedelta(hours=10))

    def run(minutes: int) -> list[str]:
        fired = []
        with in_process_daemon(config, state_url, clock, session) as daemon:
            for _ in range(minutes):
                arrivals.until(clock.now)
                result = daemon.tick()
                fired += [t.alert.summary for t in result.transitions if t.event == "firing"]
                clock.now += timedelta(minutes=1)
            late = daemon.engine.late_minutes()
        assert late is not None
        assert late.max() >= 9
        return fired

    # A fresh daemon learns of the batches from its first re-reads, holding its volume
    # verdict on the newest minutes meanwhile.
    assert run(72) == []
    # Restarted at 11:12, the tick before a batch lands: its first ticks already know that
    # the newest ten minutes are not written yet (84 rows in 15 minutes where 169 are usual).
    assert run(30) == []


def test_sla_breach_judges_the_minutes_up_to_the_newest_complete_one() -> None:
    # 30% failing for half an hour; the failed rows of the newest 10 minutes, written 10
    # minutes late, are not there yet.
    window = CountWindow(60, ["stripe"])
    window.advance(29_000_000)  # 21:20 UTC
    window.payments[:] = window.volume[:] = 20
    window.failures[:, -40:-10] = 6

    as_they_stand = {r.rule: r for r in evaluate(window, Config())}["sla_breach"]
    complete = {r.rule: r for r in evaluate(window, Config(), lateness=np.array([10]))}
    breach = complete["sla_breach"]

    assert not as_they_stand.active[0]
    assert breach.active[0]
    assert breach.build(0).summary.endswith(
        "(rows arrive up to 10 min late; judged up to 21:10 UTC)"
    )


def test_dimension_series_judge_pending_rows_as_their_gateway_does(
    sqlite_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    # 100 payments a minute whose successes settle a median 8 minutes later (failures final
    # at once), watched per method and per country; Brazil's payments fail 30% for an hour
    # from 11:15.
    busy = GatewayProfile("stripe", per_minute=100, failure_rate=0.015)
    frame = generate(
        DAY + timedelta(hours=4), DAY + timedelta(hours=12, minutes=15), [busy], seed=1
    )
    start = DAY + timedelta(hours=11, minutes=15)
    at = frame["created_at"].to_numpy(dtype="datetime64[us]")
    hit = (
        (frame["country"] == "BR").to_numpy()
        & (frame["status"] != "pending").to_numpy()
        & (at >= np.datetime64(start.replace(tzinfo=None), "us"))
    )
    failed = hit & (np.random.default_rng(1).random(len(frame)) < 0.3)
    frame.loc[failed, ["status", "error_code"]] = ["failed", "gateway_timeout"]
    arrivals = Arrivals(sqlite_db.engine, sqlite_db.table, frame, at, settled_late(frame, 8, 1))
    config = parse_config(
        {
            "source": {
                "url": sqlite_db.url,
                "table": sqlite_db.table,
                "columns": {"dimensions": {"method": "method", "country": "country"}},
            },
            "detection": {"sla_breach": {"series": [["method"], ["country"]]}},
        },
        env={},
    )
    engine = Engine(config, open_source(config), hold_first_start=True)

    def tick(now: datetime) -> list[Notification]:
        transitions = engine.tick(now).transitions
        return [notification_for(t, config) for t in transitions if not t.repeat]

    live = arrivals.ticked(tick, BEGIN, start + timedelta(hours=1), timedelta(minutes=30))

    # Judged as they stand, a series' newest minutes fail far above its true rate (their
    # failures counted, most of their successes not yet): series alerts before the incident.
    firing = [n for n in live if n.event == "firing"]
    assert all(datetime.fromisoformat(n.at) > start for n in firing)
    # Brazil's incident is Brazil's alert first (the gateway, lifted above its SLA by it,
    # may follow).
    assert firing[0].rule in ("sla_breach", "outage")
    assert firing[0].labels.get("country") == "BR"
    assert datetime.fromisoformat(firing[0].at) - start <= timedelta(minutes=15)
    assert all(
        n.labels.get("country") == "BR" or set(n.labels) == {"rule", "gateway", "severity"}
        for n in firing
    )
