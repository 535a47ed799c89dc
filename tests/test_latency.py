"""The latency SLA (``latency_breach``): a slow checkout is alerted on with the share of
slow payments, healthy latency and gateways with a looser latency SLA stay quiet, and
nothing about latency is read where no latency column is configured."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import sqlalchemy as sa

from detector.alerts import notification_for
from detector.backtest import replay
from detector.config import Config, ConfigError, parse_config
from detector.engine import Engine
from detector.model import Notification
from detector.notify.messages import text
from detector.service import status_page
from detector.service.gateways_api import gateways_json
from detector.simulate import Incident, generate
from detector.source import FrameSource, SqlSource

from .conftest import T0, Clock, PaymentsDb, in_process_daemon, live_ticks

INCIDENT = T0 - timedelta(minutes=40)  # 11:20


def _config(db: PaymentsDb, latency_column: str | None = "latency_ms") -> Config:
    columns = {} if latency_column is None else {"latency_ms": latency_column}
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table, "columns": columns},
            "detection": {"latency": {"threshold": "2s", "sla": 0.05}},
            "gateways": {"adyen": {"latency_sla": 0.5}},
        },
        env={},
    )


def _slow_checkout(db: PaymentsDb) -> None:
    """Three hours at 300 ms; then stripe and adyen take 3 s for a third of their payments
    (adyen's latency SLA allows half), paypal stays fast. One pending payment a minute
    (no latency yet) on stripe."""
    healthy = INCIDENT - timedelta(hours=3)
    for gateway in ("stripe", "adyen", "paypal"):
        db.steady(gateway, healthy, minutes=180, per_minute=12, failed=0, latency_ms=300)
    for gateway in ("stripe", "adyen"):
        db.steady(gateway, INCIDENT, minutes=40, per_minute=12, latency_ms=300, slow=4)
    db.steady("paypal", INCIDENT, minutes=40, per_minute=12, latency_ms=300)
    for minute in range(40):
        db.add("stripe", INCIDENT + timedelta(minutes=minute, seconds=30), pending=1)


def _ticks(config: Config, source: SqlSource, end: datetime) -> list[Notification]:
    engine = Engine(config, source)
    sent = []
    now = INCIDENT - timedelta(minutes=5)
    while now <= end:
        sent += [notification_for(t, config) for t in engine.tick(now).transitions]
        now += timedelta(minutes=1)
    return sent


def test_a_slow_checkout_fires_latency_breach_with_the_share_of_slow_payments(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    _slow_checkout(payments_db)
    config = _config(payments_db)
    sent = _ticks(config, open_source(config), T0)

    assert [(n.event, n.rule, n.labels["gateway"]) for n in sent] == [
        ("firing", "latency_breach", "stripe")
    ]
    (alert,) = sent
    # 4 of every 12 final payments took 3 s; the pending ones have no latency and are left
    # out of the count.
    assert re.fullmatch(
        r"stripe: 33\.3% of (\d+) payments slower than 2 s since 11:2\d \((\d+) min\), above "
        r"the 5\.0% SLA \(CUSUM [\d.]+ >= [\d.]+, p = [\d.e+-]+\)",
        alert.summary,
    ), alert.summary
    evidence = alert.evidence
    assert evidence.payments == 12 * evidence.window_minutes
    assert evidence.failures == 4 * evidence.window_minutes
    assert evidence.baseline == 0.05
    assert alert.since.startswith("2026-11-20T11:2")
    body = text(alert)
    assert "Slow payments: 33.3% (95% CI" in body
    assert "vs SLA 5.0%" in body
    assert f"Slow: {evidence.failures} of {evidence.payments} timed payments" in body
    assert "Failure rate" not in body
    assert "declined" not in body


def test_the_api_status_page_and_metrics_show_the_slow_gateway_degraded(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    _slow_checkout(sqlite_db)
    config = _config(sqlite_db)
    clock = Clock(INCIDENT - timedelta(minutes=5))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with (
        requests.Session() as session,
        in_process_daemon(config, state, clock, session, io.StringIO()) as daemon,
    ):
        while clock.now <= T0:
            daemon.tick()
            clock.now += timedelta(minutes=1)
        snapshot = daemon.snapshot()
        metrics = daemon.exposition().decode()
    gateways = {g["gateway"]: g for g in json.loads(gateways_json(snapshot))["gateways"]}
    assert gateways["stripe"]["status"] == "degraded"
    assert [a["rule"] for a in gateways["stripe"]["alerts"]] == ["latency_breach"]
    assert "slower than 2 s" in gateways["stripe"]["reason"]
    assert gateways["adyen"]["status"] == gateways["paypal"]["status"] == "healthy"
    page = status_page.render(snapshot)
    assert '<td data-label="rule">latency_breach</td><td data-label="gateway">stripe</td>' in page
    ratio = re.search(
        r'detector_evidence_ratio\{gateway="stripe",rule="latency_breach"\} ([\d.]+)', metrics
    )
    assert ratio, metrics
    assert float(ratio.group(1)) >= 1.0


def test_latency_back_under_the_threshold_resolves_the_alert(
    sqlite_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    _slow_checkout(sqlite_db)
    for gateway in ("stripe", "adyen", "paypal"):
        sqlite_db.steady(gateway, T0, minutes=60, per_minute=12, latency_ms=300)
    config = _config(sqlite_db)
    sent = _ticks(config, open_source(config), T0 + timedelta(minutes=55))

    assert [(n.event, n.rule, n.labels["gateway"]) for n in sent] == [
        ("firing", "latency_breach", "stripe"),
        ("resolved", "latency_breach", "stripe"),
    ]
    recovered = re.fullmatch(
        r"stripe: ([\d.]+)% of payments slower than 2 s over the last \d+ min, back within "
        r"the 5\.0% SLA",
        sent[1].summary,
    )
    assert recovered, sent[1].summary
    assert float(recovered.group(1)) <= 5.0


def test_without_a_latency_column_no_latency_is_read_or_alerted(
    sqlite_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    _slow_checkout(sqlite_db)
    config = _config(sqlite_db, latency_column=None)
    source = open_source(config)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    sa.event.listen(source.engine, "before_cursor_execute", record)
    assert _ticks(config, source, T0) == []
    assert statements
    assert not any("latency" in statement for statement in statements)


def test_the_threshold_is_a_bound_parameter_of_the_one_counts_query(
    sqlite_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    _slow_checkout(sqlite_db)
    config = parse_config(
        {
            "source": {"url": sqlite_db.url, "table": sqlite_db.table,
                       "columns": {"latency_ms": "latency_ms"}},
            "detection": {"latency": {"threshold": "2500ms"}},
        },
        env={},
    )  # fmt: skip
    source = open_source(config)
    executed: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        executed.append((args[2], args[3]))

    sa.event.listen(source.engine, "before_cursor_execute", record)
    counts = source.read(INCIDENT, INCIDENT + timedelta(minutes=10))
    (statement, parameters), *_ = executed
    assert "latency_ms" in statement
    assert "2500" not in statement
    assert 2500.0 in parameters
    # A latency of 3000 ms is above 2.5 s; the pending payments have none.
    stripe = counts.gateway == "stripe"
    assert counts.slow[stripe].tolist() == [4] * 10
    assert counts.timed[stripe].tolist() == [12] * 10
    assert counts.volume[stripe].tolist() == [13] * 10


def test_a_replay_of_a_slow_checkout_sends_what_the_daemon_sends(
    sqlite_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    _slow_checkout(sqlite_db)
    config = _config(sqlite_db)
    counts = open_source(config).read(INCIDENT - timedelta(hours=3), T0 + timedelta(minutes=1))
    begin = INCIDENT - timedelta(minutes=5)
    replayed = [n.to_json() for n in replay(config, FrameSource(counts), begin, T0)]
    assert replayed == live_ticks(config, FrameSource(counts), begin, T0)
    assert [Notification.from_json(n).rule for n in replayed] == ["latency_breach"]


@pytest.mark.parametrize(
    ("detection", "gateways", "problem"),
    [
        ({"latency": {"threshold": "0s"}}, {}, "detection.latency.threshold"),
        ({"latency": {"sla": 1.5}}, {}, "detection.latency.sla"),
        ({}, {"stripe": {"latency_sla": 0}}, "gateways.stripe.latency_sla"),
    ],
)
def test_a_broken_latency_setting_names_its_key(
    detection: dict[str, Any], gateways: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"detection": detection, "gateways": gateways}, env={})
    assert problem in str(raised.value)


def test_simulated_payments_take_longer_during_a_latency_incident() -> None:
    start = datetime(2026, 11, 20, 18)
    incident = Incident.parse("stripe:+10m:20m:latency=3000", start)
    frame = generate(start, start + timedelta(minutes=40), incidents=[incident], seed=3)
    stripe = frame[frame["gateway"] == "stripe"]
    during = (stripe["created_at"] >= incident.start) & (stripe["created_at"] < incident.end)
    pending = stripe["status"] == "pending"
    assert stripe.loc[pending, "latency_ms"].isna().all()
    assert stripe.loc[~pending, "latency_ms"].notna().all()
    slow_p95 = np.percentile(stripe.loc[during & ~pending, "latency_ms"].astype(float), 95)
    fast_p95 = np.percentile(stripe.loc[~during & ~pending, "latency_ms"].astype(float), 95)
    assert slow_p95 == pytest.approx(3000, rel=0.1)
    assert fast_p95 == pytest.approx(680, rel=0.1)
    # A latency incident slows the payments and changes nothing else about them.
    plain = generate(start, start + timedelta(minutes=40), seed=3)
    assert frame.drop(columns="latency_ms").equals(plain.drop(columns="latency_ms"))
