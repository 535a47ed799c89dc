"""What the status page and the alert texts say in the corners: the bucket in progress, the
figures of an alert that stays firing, a failing gateway that goes silent, a tiny p-value."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

from detector.config import Config, parse_config
from detector.engine import Engine
from detector.model import Evidence, Notification
from detector.notify.messages import facts
from detector.service.web import WebServer
from detector.source import SqlSource

from .conftest import T0, Clock, PaymentsDb, in_process_daemon


def _config(db: PaymentsDb, **outage: Any) -> Config:
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table},
            "detection": {"outage": {"for": "0s", **outage}, "sla_breach": {"enabled": False}},
        },
        env={},
    )


def test_the_volume_line_does_not_drop_to_zero_in_the_bucket_just_begun(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(hours=2), minutes=130, per_minute=12)
    # Ten seconds into a new 5-minute bucket: it holds 10 s of payments.
    clock = Clock(T0 + timedelta(minutes=5, seconds=10))
    with (
        requests.Session() as session,
        in_process_daemon(
            _config(sqlite_db), f"sqlite:///{tmp_path / 'state.db'}", clock, session
        ) as daemon,
    ):
        daemon.tick()
        server = WebServer(("127.0.0.1", 0), daemon).start()
        try:
            host, port = server.address
            page = session.get(f"http://{host}:{port}/", timeout=10).text
        finally:
            server.stop()
    (volume,) = re.findall(r'<path d="([^"]*)" fill="none" stroke="#5f6368"', page)
    points = [(float(x), float(y)) for x, y in re.findall(r"[ML]([\d.]+),([\d.]+)", volume)]
    # The last 2 h are flat at 12 a minute up to the last bucket drawn, the one before "now".
    recent = [y for _, y in points[-24:]]
    assert max(recent) - min(recent) < 0.5
    assert points[-1][0] < 600 - 600 / 288  # the bucket in progress is not drawn
    assert "max 13/min" in page  # the scale is that of 12 a minute


def _ticks(config: Config, source: SqlSource) -> Callable[[timedelta], list[str]]:
    engine = Engine(config, source)

    def tick(after: timedelta) -> list[str]:
        result = engine.tick(T0 + after)
        return [a.summary for a in engine.alerts.alerts.values()] + [
            t.alert.summary for t in result.transitions if t.event == "resolved"
        ]

    return tick


def test_an_alert_kept_firing_says_how_things_stand_now(
    sqlite_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10, failed=10)
    sqlite_db.steady("stripe", T0, minutes=10, per_minute=10)
    config = _config(sqlite_db, keep_firing_for="15m", window="10m")
    tick = _ticks(config, open_source(config))
    (down,) = tick(timedelta(0))
    (recovering,) = tick(timedelta(minutes=3))  # still firing: keep_firing_for
    assert down == "stripe is down: 100 of 100 payments failed in the last 10 min"
    assert recovering == "stripe is no longer down: 0 of 30 payments failed in the last 3 min"


def test_a_failing_gateway_that_goes_silent_resolves_saying_so(
    sqlite_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10, failed=10)
    config = _config(sqlite_db, keep_firing_for="0s", window="10m")
    tick = _ticks(config, open_source(config))
    tick(timedelta(0))
    summaries = tick(timedelta(minutes=11))  # the failures have left the window
    assert (
        "stripe went silent: no payments in the last 10 min, so no failure rate to judge "
        "(silence is the no_data rule's)"
    ) in summaries
    assert not [s for s in summaries if "0 of 0" in s]


def test_a_p_value_below_what_a_float_holds_reads_as_a_bound() -> None:
    evidence = Evidence(value=0.9, baseline=0.01, payments=500, failures=450, p_value=0.0)
    notification = Notification(
        event="firing",
        fingerprint="f",
        idempotency_key="k",
        rule="sla_breach",
        severity="critical",
        labels={"gateway": "stripe"},
        summary="s",
        at="2026-11-20T12:00:00Z",
        since="2026-11-20T11:50:00Z",
        evidence=evidence,
    )
    shown = {fact.key: fact.value for fact in facts(notification)}
    assert shown["p_value"] == "< 1e-300"
