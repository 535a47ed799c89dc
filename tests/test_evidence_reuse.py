"""A resolved sla_breach alert does not fire again on the evidence it already reported."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from detector.backtest import replay
from detector.config import Config, parse_config
from detector.model import Notification
from detector.simulate import GatewayProfile, Incident, simulate
from detector.source import SqlSource

from .conftest import Clock, PaymentsDb, in_process_daemon
from .http_recorder import HttpRecorder

DAY = datetime(2026, 11, 17, tzinfo=UTC)  # a Tuesday
# About one payment a minute, failing 1% (the SLA is 2%); half of them fail for an hour.
SLOW = GatewayProfile("slow", per_minute=1, failure_rate=0.01)
INCIDENT = Incident("slow", DAY + timedelta(hours=12), timedelta(hours=1), failure_rate=0.5)
END = DAY + timedelta(hours=13)


def _config(db: PaymentsDb, hook: str | None = None) -> Config:
    document: dict[str, object] = {
        "source": {"url": db.url, "table": db.table},
        "detection": {"no_data": {"enabled": False}, "volume_drop": {"enabled": False}},
    }
    if hook is not None:
        document["receivers"] = {"hook": {"type": "webhook", "url": hook}}
        document["route"] = {"receivers": ["hook"]}
    return parse_config(document, env={})


def _sla(events: list[Notification]) -> list[tuple[str, str]]:
    return [(e.event, e.at) for e in events if e.rule == "sla_breach"]


def _slow_gateway(db: PaymentsDb) -> None:
    # Seed 0: after this incident the window's recalibrated thresholds (the incident hour
    # reads as bursty traffic) put its old evidence back above the threshold at 16:00.
    simulate(db.engine, DAY - timedelta(days=1), 2, (SLOW,), (INCIDENT,), seed=0, table=db.table)


def test_an_alert_resolved_after_an_incident_does_not_fire_again_on_it(
    sqlite_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    _slow_gateway(sqlite_db)
    config = _config(sqlite_db)
    events = list(
        replay(config, open_source(config), DAY + timedelta(hours=11), END + timedelta(hours=6))
    )

    sla = _sla(events)
    assert [event for event, _ in sla] == ["firing", "resolved"]
    fired, resolved = (datetime.fromisoformat(at) for _, at in sla)
    assert INCIDENT.start < fired.replace(tzinfo=None) < INCIDENT.end
    # At one payment a minute the 2x member needs hours of healthy traffic to clear; the
    # window (6 h) still holds the incident long after that, and nothing fires again.
    assert END + timedelta(hours=2) < resolved < END + timedelta(hours=3)


def test_a_daemon_restarted_after_the_resolution_does_not_fire_again_either(
    sqlite_db: PaymentsDb, open_source: Callable[[Config], SqlSource], tmp_path: Path
) -> None:
    _slow_gateway(sqlite_db)
    begin, end = DAY + timedelta(hours=15), END + timedelta(hours=4)
    with HttpRecorder() as http:
        config = _config(sqlite_db, http.url_for("/hook"))
        replayed = _sla(list(replay(config, open_source(config), begin, end)))
        state = f"sqlite:///{tmp_path / 'state.db'}"
        clock = Clock(begin)
        # The daemon stops after the resolution (15:32) and starts again from its state
        # store before the hour whose thresholds would bring the old evidence back.
        for stop in (begin + timedelta(minutes=40), end + timedelta(minutes=1)):
            with (
                requests.Session() as session,
                in_process_daemon(config, state, clock, session) as daemon,
            ):
                while clock.now < stop:
                    daemon.tick()
                    daemon.deliver()
                    clock.now += timedelta(minutes=1)
        delivered = [(r.json()["event"], r.json()["at"]) for r in http.requests]
    assert delivered == replayed
    assert [event for event, _ in delivered] == ["firing", "resolved"]
