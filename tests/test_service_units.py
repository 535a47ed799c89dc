"""The service's parts in-process: gateway health, the leader lease on all three databases,
the 24 h history, /healthz, metrics, and that secrets stay out of the logs."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import requests
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from detector.alerts import Alert, Transition, notification_for
from detector.config import Config, ConfigError, parse_config
from detector.db import connect
from detector.model import Counts, Evidence
from detector.notify import build_receivers
from detector.rules import Finding, RuleResult, VolumeHistory, evaluate
from detector.service.daemon import Daemon
from detector.service.health import gateway_health, gateways_document
from detector.service.history import History
from detector.service.lease import Lease
from detector.service.metrics import Metrics
from detector.service.web import WebServer
from detector.source import SqlSource
from detector.stats.seasonal import SLOT_MINUTES, SLOTS_PER_HOUR
from detector.store import FencedOut, StateStore, StoreError
from detector.timeutil import epoch_minute
from detector.window import CountWindow

from .conftest import REQUIRE_SERVERS, SERVER_URLS, T0, PaymentsDb, _unreachable
from .daemon_process import unused_port
from .http_recorder import HttpRecorder

REPO = Path(__file__).resolve().parents[1]


# --- gateway health -------------------------------------------------------------------------


def _alert(rule: str, gateway: str, state: str = "firing", severity: str = "critical") -> Alert:
    return Alert(
        fingerprint=f"{rule}-{gateway}",
        labels={"rule": rule, "gateway": gateway},
        state=state,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        summary=f"{gateway}: {rule}",
        since=T0 - timedelta(minutes=7),
        active_since=T0 - timedelta(minutes=5),
        last_active=T0,
        evidence=Evidence(),
    )


def _window(per_gateway: dict[str, tuple[int, int]]) -> CountWindow:
    """30 one-minute buckets; each gateway gets (payments, failures) in its newest minute."""
    window = CountWindow(30, gateways=per_gateway)
    window.advance(epoch_minute(T0))
    for row, (payments, failures) in enumerate(per_gateway.values()):
        window.payments[row, -1] = payments
        window.failures[row, -1] = failures
        window.volume[row, -1] = payments + 1
    return window


CONFIG = parse_config(
    {
        "gateways": {
            "stripe": {"backup": "adyen"},
            "adyen": {"backup": "stripe"},
            "paypal": {"sla": 0.05},
            "tiny": {},
        }
    },
    env={},
)


def test_each_gateway_gets_the_status_a_router_acts_on() -> None:
    window = _window({"stripe": (100, 100), "adyen": (400, 8), "paypal": (200, 40), "tiny": (5, 0)})
    alerts = [
        _alert("outage", "stripe"),
        _alert("sla_breach", "paypal", severity="warning"),
        _alert("sla_breach", "adyen", state="pending", severity="warning"),
    ]
    health = {h.gateway: h for h in gateway_health(window, alerts, CONFIG)}
    assert {g: h.status for g, h in health.items()} == {
        "stripe": "down",
        "adyen": "healthy",  # a pending alert is not a verdict yet
        "paypal": "degraded",
        "tiny": "unknown",  # 5 payments are too few to judge
    }
    assert health["stripe"].since == T0 - timedelta(minutes=7)
    assert "not firing yet" in health["adyen"].reason
    assert health["adyen"].failure_rate == pytest.approx(0.02)
    low, high = health["adyen"].interval or (0, 0)
    assert low < 0.02 < high
    assert health["paypal"].baseline == 0.05

    document = gateways_document(list(health.values()), T0, "leader")
    stripe = document["gateways"][0]
    assert (stripe["gateway"], stripe["backup"], stripe["backup_status"]) == (
        "stripe",
        "adyen",
        "healthy",
    )
    assert stripe["volume"] == {"payments": 101, "expected": None}
    assert [a["rule"] for a in stripe["alerts"]] == ["outage"]
    assert document["at"] == "2026-11-20T12:00:00Z"


def test_a_decline_wave_is_no_reason_to_route_around_the_gateway() -> None:
    window = _window({"stripe": (400, 8), "adyen": (400, 40)})
    alerts = [
        _alert("decline_rate", "stripe", severity="warning"),
        _alert("decline_rate", "adyen", severity="warning"),
        _alert("sla_breach", "adyen", severity="warning"),
    ]
    health = {h.gateway: h for h in gateway_health(window, alerts, CONFIG)}
    assert {g: h.status for g, h in health.items()} == {"stripe": "healthy", "adyen": "degraded"}
    assert (
        health["stripe"].reason == "failure rate within the SLA; decline wave: stripe: decline_rate"
    )
    assert health["adyen"].reason == "adyen: sla_breach"
    document = gateways_document(list(health.values()), T0, "leader")
    assert [a["rule"] for a in document["gateways"][0]["alerts"]] == ["decline_rate"]


def test_an_unreadable_source_makes_every_gateway_unknown() -> None:
    window = _window({"stripe": (100, 0), "adyen": (400, 8)})
    health = gateway_health(window, [_alert("outage", "stripe")], CONFIG, "connection refused")
    assert {h.status for h in health} == {"unknown"}
    assert "connection refused" in health[0].reason


# --- history ----------------------------------------------------------------------------------


def test_history_keeps_24h_in_5_minute_buckets_from_backfill_and_ticks(
    sqlite_db: PaymentsDb,
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(hours=20), minutes=20 * 60, per_minute=2, failed=1)
    config = parse_config({"source": {"url": sqlite_db.url}}, env={})
    source = SqlSource(connect(sqlite_db.url), config.source)
    try:
        history = History()
        history.backfill(source.read(T0 - timedelta(hours=24), T0), epoch_minute(T0))
        window = CountWindow(60, gateways=["stripe"])
        window.advance(epoch_minute(T0) + 3)
        window.replace(
            epoch_minute(T0) - 57,
            epoch_minute(T0) + 3,
            source.read(T0 - timedelta(minutes=57), T0 + timedelta(minutes=3)),
        )
        window.payments[0, -3:] = 50  # three new minutes past the backfill
        history.update(window, firing=["stripe"])
    finally:
        source.engine.dispose()
    snap = history.snapshot()
    row = snap.row("stripe")
    assert row is not None
    assert snap.payments.shape == (1, 288)
    # 20 hours of 2 a minute, counted once where the window overlaps the backfill.
    assert snap.payments[row].sum() == 2 * 20 * 60 + 150
    assert snap.payments[row, -1] == 150
    assert snap.minutes_per_bucket()[-1] == 3
    assert snap.alerting[row].tolist() == [False] * 287 + [True]


@pytest.mark.parametrize("end_minute", [29_000_000, 29_000_003])  # on and off a bucket edge
@pytest.mark.parametrize("minutes", [7, 60, 3000])  # shorter than a bucket ... longer than 24 h
def test_history_buckets_sum_the_minutes_the_window_wholly_covers(
    end_minute: int, minutes: int
) -> None:
    rng = np.random.default_rng(minutes)
    window = CountWindow(minutes, gateways=["stripe", "adyen"])
    window.advance(end_minute)
    window.payments[:] = rng.poisson(20, size=window.payments.shape)
    history = History()
    history.update(window, firing=["adyen"])
    snap = history.snapshot()
    assert snap.alerting[:, -1].tolist() == [False, True]  # however short the window
    # Expected: every bucket whose minutes all lie in the window (the newest may be partial).
    first_minute = end_minute - minutes
    want = np.zeros((2, history.buckets), dtype=np.int64)
    for column in range(history.buckets):
        start = snap.first_minute + 5 * column
        if start >= first_minute:
            lo = start - first_minute
            want[:, column] = window.payments[:, lo : lo + 5].sum(axis=1)
    np.testing.assert_array_equal(snap.payments, want)
    assert snap.end_minute == end_minute


def test_history_is_the_same_whatever_order_the_window_lists_its_gateways() -> None:
    """The backfill and the window may list gateways in different orders, and a new gateway
    may appear between ticks: each gateway's buckets and alert shading stay its own."""
    rng = np.random.default_rng(14)
    names = [f"gw{i:02d}" for i in range(12)]
    end = 29_000_000
    minute = np.repeat(np.arange(end - 600, end, dtype=np.int64), len(names))
    volume = rng.poisson(20, size=minute.size).astype(np.int64)
    backfill = Counts(
        np.tile(np.array(names, dtype=object), 600), minute, volume, volume // 7, volume
    )

    def run(order: list[str]) -> dict[str, tuple[list[int], list[bool]]]:
        history = History()
        history.backfill(backfill, end)
        window = CountWindow(30, gateways=order)
        for tick in range(1, 13):  # two quarter hours of ticks, a new gateway halfway
            if tick == 7:
                window.replace(
                    end + tick - 1,
                    end + tick,
                    Counts(
                        np.array(["late"], dtype=object),
                        *np.array([[end + tick - 1], [5], [1], [5]]),
                    ),
                )
            window.advance(end + tick)
            rows = [window.row(g) for g in names]
            window.payments[rows, -1] = np.arange(len(names)) + tick
            history.update(window, firing=[names[tick % len(names)]])
        snap = history.snapshot()
        return {
            g: (snap.payments[i].tolist(), snap.alerting[i].tolist())
            for i, g in enumerate(snap.gateways)
        }

    in_order = run(names)
    shuffled = run([str(g) for g in rng.permutation(names)])
    assert shuffled == in_order
    assert set(in_order) == {*names, "late"}
    # The newest bucket holds minutes end+10 to end+14: ticks 11 and 12 fired gw11 and gw00.
    assert [g for g, (_, shaded) in in_order.items() if shaded[-1]] == ["gw00", "gw11"]


# --- the lease on SQLite, PostgreSQL and MariaDB ------------------------------------------------


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.database),
        pytest.param("mariadb", marks=pytest.mark.database),
    ]
)
def state_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = SERVER_URLS[request.param]
        problem = _unreachable(url)
        if problem:
            (pytest.fail if REQUIRE_SERVERS else pytest.skip)(f"{request.param}: {problem}")
    engine = connect(url, read_only=False)
    yield engine
    engine.dispose()


def test_only_one_replica_holds_the_lease_until_it_expires_or_is_released(
    state_engine: sa.Engine,
) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    ttl = timedelta(seconds=30)
    a = Lease(state_engine, "replica-a", ttl, name=name)
    b = Lease(state_engine, "replica-b", ttl, name=name)
    assert a.acquire(T0)
    assert not b.acquire(T0 + timedelta(seconds=1))
    assert a.acquire(T0 + timedelta(seconds=20))  # renewed until T0 + 50 s
    assert not b.acquire(T0 + timedelta(seconds=40))
    assert a.current_holder(T0 + timedelta(seconds=40)) == "replica-a"
    # a dies: b takes over once the renewed lease has expired
    assert b.acquire(T0 + timedelta(seconds=51))
    assert (a.term, b.term) == (1, 2)
    assert not a.acquire(T0 + timedelta(seconds=52))
    b.release()
    assert a.current_holder(T0 + timedelta(seconds=53)) is None
    assert a.acquire(T0 + timedelta(seconds=53))


def _contend(leases: list[Lease], at: datetime) -> list[str]:
    """Every lease tries to acquire at the same moment, from its own thread; who won."""
    winners: list[str] = []
    barrier = threading.Barrier(len(leases))

    def contend(lease: Lease) -> None:
        barrier.wait()
        if lease.acquire(at):
            winners.append(lease.holder)

    threads = [threading.Thread(target=contend, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return winners


def test_racing_replicas_never_both_win(state_engine: sa.Engine) -> None:
    name = f"race-{uuid.uuid4().hex[:8]}"
    leases = [
        Lease(state_engine, f"replica-{i}", timedelta(seconds=10), name=name) for i in range(4)
    ]
    for round_ in range(5):
        # Each round starts after the previous round's lease expired.
        winners = _contend(leases, T0 + timedelta(seconds=20 * round_))
        assert len(winners) == 1, (round_, winners)


# --- the daemon in-process: /healthz, metrics, followers --------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


def _config(db: PaymentsDb | str, hook: HttpRecorder | None = None, **extra: object) -> Config:
    """Outage alerts on ``db`` (or a payments URL) sent to ``hook``; ``extra`` top-level keys."""
    if hook is not None:
        extra["receivers"] = {"hook": {"type": "webhook", "url": hook.url_for("/hook")}}
        extra["route"] = {"receivers": ["hook"], "group_interval": "0s"}
    url, table = (db, "payments") if isinstance(db, str) else (db.url, db.table)
    return parse_config(
        {
            "source": {"url": url, "table": table},
            "schedule": {"interval": "1m", "source_down_after": 2},
            "server": {"unhealthy_after": 3},
            "detection": {
                "outage": {"for": "0s", "keep_firing_for": "0s"},
                "sla_breach": {"enabled": False},  # the CUSUM would fire on the outage too
            },
            **extra,
        },
        env={},
    )


def _daemon(config: Config, state: str, clock: Clock, **kwargs: object) -> Daemon:
    source = SqlSource(connect(config.source.url), config.source)
    with requests.Session() as session:
        return Daemon(
            config,
            source,
            StateStore.open(state),
            build_receivers(config, session),
            clock,
            **kwargs,  # type: ignore[arg-type]
        )


def _close(daemon: Daemon) -> None:
    daemon.engine.source.engine.dispose()  # type: ignore[attr-defined]
    daemon.store.engine.dispose()


def test_healthz_turns_503_with_the_reason_when_ticks_stop_succeeding(tmp_path: Path) -> None:
    config = _config(f"postgresql+psycopg://postgres@127.0.0.1:{unused_port()}/test")
    clock = Clock()
    daemon = _daemon(config, f"sqlite:///{tmp_path / 'state.db'}", clock)
    try:
        assert daemon.healthz()[1]["status"] == "starting"
        daemon.tick()
        code, body = daemon.healthz()
        assert code == 200  # one failed read is not yet an outage
        clock.now += timedelta(minutes=1)
        daemon.tick()
        code, body = daemon.healthz()
    finally:
        _close(daemon)
    assert code == 503
    assert "payments source unreachable for 2 ticks" in body["reason"]
    assert body["role"] == "leader"


def test_healthz_503_when_the_last_successful_tick_is_too_old(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    config = _config(sqlite_db)
    clock = Clock()
    daemon = _daemon(config, f"sqlite:///{tmp_path / 'state.db'}", clock)
    try:
        daemon.tick()
        clock.now += timedelta(minutes=2)
        assert daemon.healthz()[0] == 200
        clock.now += timedelta(minutes=2)  # the scheduler stalled: no tick for 4 intervals
        code, body = daemon.healthz()
    finally:
        _close(daemon)
    assert (code, body["reason"]) == (503, "last successful tick 240s ago (limit 180s)")


def test_a_follower_notifies_nothing_serves_health_and_takes_over_from_the_stored_state(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    state = f"sqlite:///{tmp_path / 'state.db'}"
    sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10, failed=10)
    with HttpRecorder() as hook:
        config = _config(sqlite_db, hook)
        clock = Clock()
        ttl = timedelta(seconds=30)
        store_engine = connect(state, read_only=False)
        StateStore(store_engine)  # the lease lives beside the detector's other tables
        leader = _daemon(config, state, clock, lease=Lease(store_engine, "a", ttl))
        follower = _daemon(config, state, clock, lease=Lease(store_engine, "b", ttl))
        try:
            leader.tick()
            follower.tick()
            leader.deliver()
            follower.deliver()
            assert (leader.role, follower.role) == ("leader", "follower")
            assert follower.healthz() == (200, follower.healthz()[1])
            assert follower.healthz()[1]["role"] == "follower"
            # The follower shows the leader's firing alert without notifying it.
            assert [h.status for h in follower.snapshot().health] == ["down"]
            assert len(hook.wait_for(1)) == 1

            # The leader dies mid-incident; the follower takes over after the TTL.
            sqlite_db.steady("stripe", T0, minutes=1, per_minute=30)
            clock.now += timedelta(seconds=31)
            follower.tick()
            follower.deliver()
            assert follower.role == "leader"
            bodies = [r.json() for r in hook.wait_for(2)]
        finally:
            _close(leader)
            _close(follower)
            store_engine.dispose()
    assert [b["event"] for b in bodies] == ["firing", "resolved"]
    assert bodies[0]["fingerprint"] == bodies[1]["fingerprint"]
    registry_leader = follower.registry.get_sample_value("detector_leader")
    assert registry_leader == 1.0


def _rule(rule: str, gateways: list[str], **arrays: npt.NDArray[np.float64]) -> RuleResult:
    def build(_: int) -> Finding:
        raise AssertionError("not needed")

    return RuleResult(rule, gateways, np.zeros(len(gateways), dtype=bool), build, **arrays)


def test_gateway_volume_is_compared_with_the_seasonal_expectation() -> None:
    window = _window({"stripe": (40, 0), "adyen": (20, 0)})
    volume = _rule("volume_drop", window.gateways, expected_per_minute=np.array([2.5, np.nan]))
    health = {h.gateway: h for h in gateway_health(window, [], CONFIG, None, [volume])}
    minutes = health["stripe"].window_minutes
    assert health["stripe"].expected_volume == pytest.approx(2.5 * minutes)
    assert health["adyen"].expected_volume is None  # less than a week of history

    assert gateways_document(list(health.values()), T0, "leader")["gateways"][0]["volume"] == {
        "payments": 41,
        "expected": pytest.approx(2.5 * minutes),
    }


def _quarter_hours(
    per_gateway: dict[str, tuple[int, npt.NDArray[np.int64]]], end_hour: int
) -> Counts:
    """Volume rows per quarter hour: each gateway's ``(first hour, volumes)`` up to
    ``end_hour``, as the database aggregates them for the volume rules."""
    gateway, slot, volume = [], [], []
    for name, (first, volumes) in per_gateway.items():
        slots = (end_hour - first) * SLOTS_PER_HOUR
        gateway += [name] * slots
        slot.append(np.arange(first * SLOTS_PER_HOUR, end_hour * SLOTS_PER_HOUR))
        volume.append(volumes[:slots])
    minutes = np.concatenate(slot) * SLOT_MINUTES
    volumes = np.concatenate(volume).astype(np.int64)
    return Counts(np.array(gateway, dtype=object), minutes, volumes, volumes * 0, volumes)


def test_the_expected_band_is_what_the_volume_rules_expected_during_each_hour() -> None:
    rng = np.random.default_rng(7)
    now = epoch_minute(T0) // 60
    # "old" has three weeks of a daily cycle; "young" crossed its first week 5 hours ago.
    slot_hours = np.arange(4 * 168 * SLOTS_PER_HOUR) / SLOTS_PER_HOUR
    cycle = 10 + 8 * np.sin(slot_hours * 2 * np.pi / 24)
    series = {
        "old": (now - 3 * 168, rng.poisson(cycle)),
        "young": (now - 168 - 5, rng.poisson(cycle)),
    }
    gateways = list(series)
    history = VolumeHistory(now, _quarter_hours(series, now))
    expected, size = history.expected_hours(gateways, now - 23)
    assert expected.shape == (2, 24)
    assert size.shape == (2,)
    assert np.isnan(expected[1, :18]).all()
    assert np.isfinite(expected[1, 18:]).all()
    # volume_drop over exactly one hour: what it expects then is that hour's expectation.
    config = parse_config({"detection": {"volume_drop": {"window": "60m"}}}, env={})
    for back in (0, 4, 5, 23):
        hour = now - back
        # The rule's own expectation during that hour, from the history it had then.
        then = VolumeHistory(hour, _quarter_hours(series, hour))
        window = CountWindow(600, gateways=gateways)
        window.advance(hour * 60 + 60)
        (volume,) = [r for r in evaluate(window, config, history=then) if r.rule == "volume_drop"]
        assert volume.expected_per_minute is not None
        np.testing.assert_allclose(expected[:, -1 - back], volume.expected_per_minute * 60)


def _status_page_after_one_tick(db: PaymentsDb, tmp_path: Path) -> requests.Response:
    """The status page served by a daemon that read its volume history and ticked once."""
    daemon = _daemon(_config(db), f"sqlite:///{tmp_path / 'state.db'}", Clock())
    server = WebServer(("127.0.0.1", 0), daemon).start()
    try:
        daemon.backfill_history()
        daemon.tick()
        host, port = server.address
        return requests.get(f"http://{host}:{port}/", timeout=10)
    finally:
        server.stop()
        _close(daemon)


def test_the_status_page_shades_the_expected_volume_once_a_gateway_has_a_week(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(days=8), minutes=8 * 24 * 60, per_minute=1)
    sqlite_db.steady("adyen", T0 - timedelta(hours=2), minutes=120, per_minute=1)
    page = _status_page_after_one_tick(sqlite_db, tmp_path).text
    stripe, adyen = (
        page.split(f'id="gw-{g}"')[1].split("</section>")[0] for g in ("stripe", "adyen")
    )
    assert 'class="expected-band"' in stripe
    assert "vs the expected 5-95% band (blue; usual now 1.0/min)" in stripe
    assert 'class="expected-band"' not in adyen
    assert "not enough history for an expected band (needs a week)" in adyen


def test_the_status_page_answers_when_no_gateway_had_payments_in_the_last_day(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    # Payments weeks ago only: the volume history knows the gateway, the last 24 h do not.
    sqlite_db.steady("stripe", T0 - timedelta(days=20), minutes=60, per_minute=1)
    reply = _status_page_after_one_tick(sqlite_db, tmp_path)
    assert reply.status_code == 200
    assert "<html" in reply.text


def _scrape(metrics: Metrics) -> Callable[..., float | None]:
    """``get_sample_value`` over what ``/metrics`` serves, as Prometheus would parse it."""
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
    }

    def value(name: str, labels: dict[str, str] | None = None) -> float | None:
        return samples.get((name, tuple(sorted((labels or {}).items()))))

    return value


def test_metrics_export_how_close_each_detector_is_to_alarm() -> None:
    metrics = Metrics(CollectorRegistry())
    window = _window({"stripe": (40, 0), 'a"b': (20, 20)})
    bank = _rule("sla_breach", window.gateways, evidence_ratio=np.array([0.4, 1.2]))
    metrics.observe_health(gateway_health(window, [], CONFIG), [], [bank])
    value = _scrape(metrics)
    assert value("detector_evidence_ratio", {"gateway": "stripe", "rule": "sla_breach"}) == 0.4
    assert value("detector_evidence_ratio", {"gateway": 'a"b', "rule": "sla_breach"}) == 1.2
    assert value("detector_gateway_failure_ratio", {"gateway": 'a"b'}) == 1.0
    assert value("detector_gateway_status", {"gateway": "stripe", "status": "healthy"}) == 1
    assert value("detector_gateway_status", {"gateway": "stripe", "status": "down"}) == 0


def test_every_gateway_is_in_every_gateway_family_once_and_promtool_accepts_it() -> None:
    """The gauges are written straight from the tick's arrays: each gateway, quoted names
    and gateways without payments (NaN ratio) included, once per family."""
    names = [f"gw{i:04d}" for i in range(600)] + ["back\\slash", "new\nline", 'quo"te']
    window = _window({name: (40, i % 5) for i, name in enumerate(names)})
    window.payments[3, -1] = window.failures[3, -1] = 0  # gw0003: no ratio
    ratio = np.linspace(0, 2, len(names))
    rules = [_rule("sla_breach", window.gateways, evidence_ratio=ratio), _rule("no_data", names)]
    metrics = Metrics(CollectorRegistry())
    metrics.observe_health(gateway_health(window, [], CONFIG), [], rules)
    text = metrics.exposition().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for family in ("payments", "failures", "declines", "failure_ratio"):
        gateways = [s.labels["gateway"] for s in families[f"detector_gateway_{family}"].samples]
        assert gateways == names
    status = families["detector_gateway_status"].samples
    assert len(status) == 4 * len(names)
    assert {s.labels["status"] for s in status if s.value == 1} == {"healthy", "unknown"}
    value = _scrape(metrics)
    assert value("detector_gateway_failures", {"gateway": "gw0007"}) == 2
    assert np.isnan(value("detector_gateway_failure_ratio", {"gateway": "gw0003"}) or 0)
    assert value("detector_gateway_payments", {"gateway": 'quo"te'}) == 40
    assert value("detector_gateway_payments", {"gateway": "new\nline"}) == 40
    assert value("detector_evidence_ratio", {"gateway": 'quo"te', "rule": "sla_breach"}) == 2
    assert value("detector_rule_active", {"gateway": "back\\slash", "rule": "no_data"}) == 0
    assert len(families["detector_rule_active"].samples) == 2 * len(names)
    promtool = shutil.which("promtool")
    if promtool is not None:
        lint = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
        )
        assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")


def test_the_registry_passed_in_holds_the_gateway_gauges_that_metrics_serves() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    window = _window({"stripe": (40, 4)})
    bank = _rule("sla_breach", window.gateways, evidence_ratio=np.array([0.4]))
    metrics.observe_health(gateway_health(window, [], CONFIG), [], [bank])
    labels = {"gateway": "stripe", "rule": "sla_breach"}
    assert registry.get_sample_value("detector_evidence_ratio", labels) == 0.4
    assert registry.get_sample_value("detector_gateway_failure_ratio", {"gateway": "stripe"}) == 0.1
    assert _scrape(metrics)("detector_gateway_failure_ratio", {"gateway": "stripe"}) == 0.1
    # Their names are taken: nothing else on the registry may export them.
    with pytest.raises(ValueError, match="detector_gateway_status"):
        Gauge("detector_gateway_status", "A clash.", registry=registry)


def test_metrics_count_ticks_rows_alerts_and_deliveries_per_receiver(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10, failed=10)
    sqlite_db.add(None, T0 - timedelta(minutes=2), succeeded=3)  # invalid: no gateway
    with HttpRecorder() as hook:
        hook.respond_with([503])
        config = _config(sqlite_db, hook)
        clock = Clock()
        registry = CollectorRegistry()
        daemon = _daemon(config, f"sqlite:///{tmp_path / 'state.db'}", clock, registry=registry)
        try:
            daemon.tick()
            daemon.deliver()  # 503: retried later
            clock.now += timedelta(minutes=1)
            daemon.deliver()
        finally:
            _close(daemon)
    value = _scrape(daemon.metrics)
    assert value("detector_ticks_total", {"outcome": "ok"}) == 1
    assert value("detector_rows_read_total") == 100
    assert value("detector_rows_invalid_total") == 3
    assert value("detector_tick_duration_seconds_count") == 1
    assert value("detector_gateway_failure_ratio", {"gateway": "stripe"}) == 1.0
    assert value("detector_gateway_status", {"gateway": "stripe", "status": "down"}) == 1
    assert value("detector_rule_active", {"gateway": "stripe", "rule": "outage"}) == 1
    labels = {"rule": "outage", "state": "firing", "severity": "critical"}
    assert value("detector_alerts", labels) == 1
    assert value("detector_notifications_total", {"receiver": "hook", "outcome": "retried"}) == 1
    assert value("detector_notifications_total", {"receiver": "hook", "outcome": "delivered"}) == 1
    assert value("detector_outbox_depth") == 0
    assert value("detector_leader") == 1


# --- secrets never reach the logs -----------------------------------------------------------


SECRETS = {
    "WEBHOOK_TOKEN": "tok-3b9d1f0c7a",
    "SLACK_WEBHOOK_URL": "",  # set per test: it needs the closed port
    "SMTP_PASSWORD": "pw-8c2e5a4471",
}


def test_secrets_stay_out_of_the_logs_of_failing_deliveries(
    sqlite_db: PaymentsDb, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = unused_port()
    env = {**SECRETS, "SLACK_WEBHOOK_URL": f"http://127.0.0.1:{port}/services/T0/B0/slk-9f7e6d5c"}
    config = parse_config(
        {
            "source": {"url": sqlite_db.url, "table": sqlite_db.table},
            "detection": {"outage": {"for": "0s"}},
            "receivers": {
                "hook": {
                    "type": "webhook",
                    "url": f"http://127.0.0.1:{port}/hook",
                    "headers": {"Authorization": "Bearer ${WEBHOOK_TOKEN}"},
                },
                "slack": {"type": "slack", "url": "${SLACK_WEBHOOK_URL}"},
                "mail": {
                    "type": "email",
                    "host": "127.0.0.1",
                    "port": port,
                    "starttls": False,
                    "username": "detector",
                    "password": "${SMTP_PASSWORD}",
                    "from": "d@example.com",
                    "to": ["oncall@example.com"],
                },
            },
            "route": {"receivers": ["hook", "slack", "mail"]},
        },
        env=env,
    )
    sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10, failed=10)
    clock = Clock()
    caplog.set_level(logging.DEBUG)
    daemon = _daemon(config, f"sqlite:///{tmp_path / 'state.db'}", clock)
    try:
        daemon.tick()
        for _ in range(3):
            daemon.deliver()
            clock.now += timedelta(minutes=10)
    finally:
        _close(daemon)
    assert caplog.text.count("delivery to") == 9  # every receiver failed three times
    for secret in ("tok-3b9d1f0c7a", "slk-9f7e6d5c", "pw-8c2e5a4471"):
        assert secret not in caplog.text


def test_secrets_stay_out_of_config_errors(tmp_path: Path) -> None:
    config = tmp_path / "alerts.yaml"
    config.write_text(
        "receivers:\n"
        "  slack: {type: slack, url: '${SLACK_WEBHOOK_URL}', chanel: '#x'}\n"
        "  mail: {type: email, host: h, port: 99999, password: '${SMTP_PASSWORD}',\n"
        "         from: a@b.c, to: [x@y.z]}\n"
        "route: {receivers: [slack, mail]}\n"
    )
    env = {**os.environ, **SECRETS, "SLACK_WEBHOOK_URL": "https://hooks.slack.com/T/B/slk-77aa"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "detector.cli",
            "--log-format",
            "json",
            "validate",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "receivers.slack.chanel: unknown key" in done.stderr
    assert "receivers.mail.port" in done.stderr
    assert "slk-77aa" not in done.stderr + done.stdout
    assert "pw-8c2e5a4471" not in done.stderr + done.stdout


def test_windows_with_no_payments_report_no_rate() -> None:
    health = gateway_health(_window({"stripe": (0, 0)}), [], CONFIG)
    assert (health[0].failure_rate, health[0].interval, health[0].status) == (
        None,
        None,
        "unknown",
    )


def test_shutdown_waits_within_the_grace_period_for_a_retry_to_go_through(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    sqlite_db.steady("stripe", now - timedelta(minutes=5), minutes=5, per_minute=10, failed=10)
    with HttpRecorder() as hook:
        hook.respond_with([503])  # the first attempt fails; the retry comes 1-2 s later
        config = _config(sqlite_db, hook, server={"listen": "127.0.0.1:0"})
        config = config.model_copy(
            update={
                "schedule": config.schedule.model_copy(
                    update={"shutdown_grace": timedelta(seconds=10)}
                )
            }
        )
        source = SqlSource(connect(config.source.url), config.source)
        with requests.Session() as session:
            daemon = Daemon(
                config,
                source,
                StateStore.open(f"sqlite:///{tmp_path / 's.db'}"),
                build_receivers(config, session),
            )
            runner = threading.Thread(target=daemon.run, kwargs={"install_signal_handlers": False})
            runner.start()
            try:
                hook.wait_for(1, timeout=10)
            finally:
                daemon.stop()  # as SIGTERM does
                runner.join(timeout=30)
            _close(daemon)
        statuses = [r.json()["event"] for r in hook.requests]
    assert not runner.is_alive()
    assert statuses == ["firing", "firing"]  # the 503, then the retry before exiting
    (entry,) = daemon.store.deliveries()
    assert entry["delivered_at"] is not None


def test_every_state_database_failure_is_a_store_error_naming_what_failed(
    tmp_path: Path,
) -> None:
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    lease = Lease(store.engine, "a", timedelta(seconds=30))
    with store.engine.begin() as connection:
        for table in ("meta", "alerts", "outbox", "silences", "lease"):
            connection.execute(sa.text(f"DROP TABLE detector_{table}"))
    calls: dict[str, Callable[[], object]] = {
        "read the state database": store.load,
        "save state": lambda: store.save_tick(T0, {}, [], T0),
        "read the outbox": lambda: store.due(T0),
        "save the silence": lambda: store.add_silence({"gateway": "x"}, {}, T0, T0, "me", "why"),
        "read silences": store.silences,
        "expire the silence": lambda: store.expire_silence("x", T0),
        "renew the leader lease": lambda: lease.acquire(T0),
        "release the leader lease": lease.release,
        "read the leader lease": lambda: lease.current_holder(T0),
    }
    try:
        for action, call in calls.items():
            with pytest.raises(StoreError, match=f"^cannot {action}: no such table: detector_"):
                call()
        for read in (store.outbox_depth, lambda: store.notified_since(T0), store.deliveries):
            with pytest.raises(StoreError, match=r"^cannot read the outbox: no such table"):
                read()
    finally:
        store.engine.dispose()


def test_healthz_503_when_the_state_cannot_be_saved(sqlite_db: PaymentsDb, tmp_path: Path) -> None:
    clock = Clock()
    daemon = _daemon(_config(sqlite_db), f"sqlite:///{tmp_path / 'state.db'}", clock)
    try:
        daemon.tick()
        with daemon.store.engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE detector_alerts"))
        for _ in range(4):
            clock.now += timedelta(minutes=1)
            daemon.tick()
        code, body = daemon.healthz()
    finally:
        _close(daemon)
    assert code == 503
    assert body["reason"].startswith("last successful tick 240s ago (limit 180s); last tick: ")
    assert "no such table: detector_alerts" in body["reason"]


def test_run_exits_2_naming_the_key_when_the_port_is_taken(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "alerts.yaml"
        config.write_text(
            f"source: {{url: '{sqlite_db.url}'}}\n"
            f"state: {{url: 'sqlite:///{tmp_path / 'state.db'}'}}\n"
            f"server: {{listen: '127.0.0.1:{port}'}}\n"
        )
        done = subprocess.run(
            [sys.executable, "-m", "detector.cli", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"error: server.listen: cannot listen on 127.0.0.1:{port}" in done.stderr


def test_a_listen_address_without_a_port_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"server.listen: 'localhost': write HOST:PORT"):
        parse_config({"server": {"listen": "localhost"}}, env={})


def test_a_restarted_service_shades_the_alerts_of_the_last_24h_from_the_outbox(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    start = T0 - timedelta(hours=3)
    sqlite_db.steady("stripe", start, minutes=60, per_minute=10)
    sqlite_db.steady("stripe", start + timedelta(hours=1), minutes=10, per_minute=10, failed=10)
    sqlite_db.steady("stripe", start + timedelta(minutes=70), minutes=110, per_minute=10)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    config = _config(sqlite_db)
    detection = config.detection.model_copy(
        update={"sla_breach": config.detection.sla_breach.model_copy(update={"enabled": False})}
    )
    config = config.model_copy(update={"detection": detection})
    clock = Clock()
    clock.now = start + timedelta(minutes=70)  # the outage fires...
    before = _daemon(config, state, clock)
    try:
        before.tick()
        clock.now += timedelta(minutes=10)  # ...and resolves ten minutes later
        before.tick()
    finally:
        _close(before)
    clock.now = T0
    after = _daemon(config, state, clock)
    try:
        after.backfill_history()
    finally:
        _close(after)
    snap = after.history.snapshot()
    row = snap.row("stripe")
    assert row is not None
    shaded = [snap.first_minute + 5 * i for i in np.flatnonzero(snap.alerting[row]).tolist()]
    fired, resolved = epoch_minute(start) + 70, epoch_minute(start) + 80
    assert shaded == list(range(fired, resolved + 1, 5))
    assert snap.payments[row].sum() == 10 * 180


def test_a_replica_that_lost_the_lease_cannot_commit_a_tick(state_url: str) -> None:
    store = StateStore.open(state_url)
    ttl = timedelta(seconds=30)
    old, new = Lease(store.engine, "old", ttl), Lease(store.engine, "new", ttl)
    try:
        assert old.acquire(T0)
        alert = _alert("outage", "stripe")
        notification = notification_for(Transition("firing", alert, T0), CONFIG)
        deliveries = [("hook", notification)]

        def save(lease: Lease, at: datetime) -> int:
            return store.save_tick(
                at,
                {alert.fingerprint: alert},
                deliveries,
                at,
                fence=lambda connection: lease.fence(connection, at),
            )

        # The old leader stalls past its TTL; the new one takes over and commits first.
        later = T0 + timedelta(seconds=40)
        assert new.acquire(later)
        assert save(new, later) == 1
        with pytest.raises(FencedOut):
            save(old, later + timedelta(seconds=1))
        assert len(store.deliveries()) == 1
        assert new.current_holder(later + timedelta(seconds=2)) == "new"
    finally:
        store.engine.dispose()


def test_a_takeover_waits_for_the_leaders_fenced_commit_and_then_finds_the_lease_renewed(
    state_url: str,
) -> None:
    store = StateStore.open(state_url)
    ttl = timedelta(seconds=30)
    old, new = Lease(store.engine, "old", ttl), Lease(store.engine, "new", ttl)
    later = T0 + timedelta(seconds=31)  # the old leader's lease has just expired
    fenced, attempted = threading.Event(), threading.Event()
    rival_waited: list[bool] = []
    taken: list[bool] = []

    def slow_fence(connection: sa.Connection) -> bool:
        renewed = old.fence(connection, later)
        fenced.set()
        # The tick's commit takes a while; meanwhile the rival must not get anywhere.
        rival_waited.append(not attempted.wait(timeout=1))
        return renewed

    def take_over() -> None:
        fenced.wait()
        taken.append(new.acquire(later + timedelta(seconds=1)))
        attempted.set()

    try:
        assert old.acquire(T0)
        rival = threading.Thread(target=take_over)
        rival.start()
        store.save_tick(later, {}, [], later, fence=slow_fence)
        rival.join()
        holder = new.current_holder(later + timedelta(seconds=2))
    finally:
        store.engine.dispose()
    # The renewal inside the commit locked the lease: the rival waited for the commit and
    # then found the lease renewed, so there was never a second leader.
    assert rival_waited == [True]
    assert taken == [False]
    assert holder == "old"


def test_replicas_starting_together_on_a_fresh_state_database_all_open_it(
    state_url: str,
) -> None:
    # docker compose starts both replicas at once: each creates the tables it finds missing.
    barrier = threading.Barrier(4)
    problems: list[str] = []
    engines: list[sa.Engine] = []

    def start(replica: str) -> None:
        barrier.wait()
        try:
            store = StateStore.open(state_url)
            engines.append(store.engine)
            Lease(store.engine, replica, timedelta(seconds=30))
        except Exception as exc:
            problems.append(f"{replica}: {exc}")

    threads = [threading.Thread(target=start, args=(f"replica-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert problems == []
