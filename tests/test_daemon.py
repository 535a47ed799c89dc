"""The daemon: as a real subprocess against a database the test writes to, and in-process
with an injected clock for the outbox and source-outage behaviour."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from detector.config import Config, parse_config

from .conftest import T0, Clock, PaymentsDb, in_process_daemon
from .daemon_process import LISTEN, DaemonProcess, unused_port
from .http_recorder import HttpRecorder


@pytest.fixture
def webhook() -> Iterator[HttpRecorder]:
    with HttpRecorder() as server:
        yield server


def _daemon_config(db: PaymentsDb, hook_url: str, state_url: str) -> str:
    return f"""
source:
  url: {db.url}
  table: {db.table}
state:
  url: {state_url}
schedule:
  interval: 1s
detection:
  outage: {{window: 10m, min_payments: 5, failure_rate: 0.9, for: 0s, keep_firing_for: 0s}}
  sla_breach: {{enabled: false}}
  no_data: {{enabled: false}}
receivers:
  hook: {{type: webhook, url: "{hook_url}"}}
route:
  receivers: [hook]
  group_interval: 0s   # the resolution follows the firing within seconds here
server: {{listen: "{LISTEN}"}}
ha: {{lease_ttl: 3s}}
"""


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.slow
def test_daemon_notifies_once_per_transition_across_a_kill(
    sqlite_db: PaymentsDb,
    webhook: HttpRecorder,
    tmp_path: Path,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    config = tmp_path / "alerts.yaml"
    config.write_text(
        _daemon_config(sqlite_db, webhook.url_for("/hook"), f"sqlite:///{tmp_path / 'state.db'}")
    )
    sqlite_db.steady("stripe", _now() - timedelta(minutes=30), minutes=29, per_minute=10)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    daemon.wait_ticks(2)
    assert webhook.requests == []

    sqlite_db.add("stripe", _now(), failed=30, error_code="gateway_timeout")
    (firing,) = webhook.wait_for(1, timeout=20)
    body = firing.json()
    assert (body["event"], body["rule"], body["labels"]["gateway"]) == (
        "firing",
        "outage",
        "stripe",
    )
    assert body["evidence"]["failures"] == 30
    assert firing.header("Idempotency-Key") == body["idempotency_key"]
    daemon.wait_ticks(2)
    assert len(webhook.requests) == 1

    # Killed without warning while the alert fires; the new process must not re-send it.
    daemon.process.kill()
    daemon.process.wait(timeout=10)
    daemon = start_daemon(config, log)
    daemon.wait_ticks(3)
    assert len(webhook.requests) == 1

    sqlite_db.add("stripe", _now(), succeeded=600)
    resolved = webhook.wait_for(2, timeout=20)[1].json()
    assert (resolved["event"], resolved["fingerprint"]) == ("resolved", body["fingerprint"])
    daemon.wait_ticks(2)
    assert len(webhook.requests) == 2

    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=20) == 0
    assert "detector stopped" in log.read_text()


@pytest.mark.slow
def test_a_daemon_killed_before_delivery_delivers_after_restart_exactly_once(
    sqlite_db: PaymentsDb,
    webhook: HttpRecorder,
    tmp_path: Path,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    config = tmp_path / "alerts.yaml"
    state = f"sqlite:///{tmp_path / 'state.db'}"
    config.write_text(_daemon_config(sqlite_db, webhook.url_for("/hook"), state))
    webhook.respond_with([503] * 1000)  # the receiver is down
    sqlite_db.steady("stripe", _now() - timedelta(minutes=30), minutes=29, per_minute=10)
    sqlite_db.add("stripe", _now(), failed=30)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    webhook.wait_for(1, timeout=20)  # the transition is committed, its delivery failed
    daemon.process.kill()
    daemon.process.wait(timeout=10)
    attempts = len(webhook.requests)

    webhook.respond_with([], replace=True)  # the receiver is back
    daemon = start_daemon(config, log)
    delivered = webhook.wait_for(attempts + 1, timeout=30)[-1]
    assert delivered.json()["event"] == "firing"
    daemon.wait_ticks(3)
    assert len(webhook.requests) == attempts + 1
    assert {r.header("Idempotency-Key") for r in webhook.requests} == {
        delivered.header("Idempotency-Key")
    }


# --- in-process, simulated time -------------------------------------------------------------


def _hooks_config(source_url: str, table: str, *hooks: HttpRecorder) -> Config:
    return parse_config(
        {
            "source": {"url": source_url, "table": table},
            # One alert per outage: the SLA CUSUM would also fire on it.
            "detection": {
                "outage": {"for": "0s", "keep_firing_for": "0s"},
                "sla_breach": {"enabled": False},
            },
            "receivers": {
                f"hook{i}": {"type": "webhook", "url": h.url_for(f"/hook{i}")}
                for i, h in enumerate(hooks)
            },
            "route": {"receivers": [f"hook{i}" for i in range(len(hooks))]},
        },
        env={},
    )


def test_one_source_down_alert_instead_of_one_per_gateway(
    webhook: HttpRecorder, tmp_path: Path
) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{unused_port()}/test"
    config = _hooks_config(url, "payments", webhook)
    clock = Clock(T0)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as daemon:
        for _ in range(5):
            daemon.tick()
            daemon.deliver()
            clock.now += timedelta(minutes=1)
    bodies = [r.json() for r in webhook.requests]
    assert [(b["event"], b["rule"]) for b in bodies] == [("firing", "source_down")]
    assert "gateway" not in bodies[0]["labels"]
    assert "cannot read payments" in bodies[0]["summary"]


def test_a_failing_receiver_gets_the_alert_once_it_recovers_without_delaying_others(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    with HttpRecorder() as flaky, HttpRecorder() as healthy, requests.Session() as session:
        flaky.respond_with([500, 503, (429, "slow down")])
        config = _hooks_config(sqlite_db.url, sqlite_db.table, flaky, healthy)
        clock = Clock(T0)
        state = f"sqlite:///{tmp_path / 'state.db'}"
        sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10, failed=10)
        with in_process_daemon(config, state, clock, session) as daemon:
            daemon.tick()
            daemon.deliver()
        assert len(healthy.requests) == 1
        assert len(flaky.requests) == 1

        # The process restarts while the flaky receiver is still down: the outbox survives.
        with in_process_daemon(config, state, clock, session) as daemon:
            for _ in range(20):
                clock.now += timedelta(seconds=30)
                daemon.deliver()
            outcomes = daemon.store.deliveries()
        assert len(flaky.requests) == 4  # 500, 503, 429, then delivered
        assert len(healthy.requests) == 1
        keys = {r.header("Idempotency-Key") for r in flaky.requests}
        assert keys == {healthy.requests[0].header("Idempotency-Key")}
        assert [
            (d["receiver"], d["attempts"], d["delivered_at"] is not None) for d in outcomes
        ] == [("hook0", 4, True), ("hook1", 1, True)]


def test_a_rejected_notification_is_given_up_with_the_reason(
    sqlite_db: PaymentsDb, webhook: HttpRecorder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.respond_with([(400, "unknown field 'evidence'")])
    config = _hooks_config(sqlite_db.url, sqlite_db.table, webhook)
    clock = Clock(T0)
    sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10, failed=10)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as daemon:
        daemon.tick()
        for _ in range(3):
            daemon.deliver()
            clock.now += timedelta(minutes=5)
        (entry,) = daemon.store.deliveries()
    assert len(webhook.requests) == 1
    assert entry["failed_at"] is not None
    assert "unknown field 'evidence'" in str(entry["last_error"])
    assert "unknown field 'evidence'" in caplog.text
