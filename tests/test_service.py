"""The service as operators and payment routers meet it: `detector run` as a subprocess
serving HTTP on 127.0.0.1, the status page in headless Chromium, SIGHUP reloads, and two
replicas sharing a state database on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .accessibility import ARTIFACTS, audit, render, serious
from .conftest import PaymentsDb
from .daemon_process import LISTEN, DaemonProcess, wait_until
from .http_recorder import HttpRecorder


def _now() -> datetime:
    return datetime.now(UTC)


def _config(db: PaymentsDb, state_url: str, *hooks: str, extra: str = "", ttl: str = "3s") -> str:
    receivers = "".join(
        f'  hook{i}: {{type: webhook, url: "{url}"}}\n' for i, url in enumerate(hooks)
    )
    names = ", ".join(f"hook{i}" for i in range(len(hooks)))
    return f"""
source: {{url: "{db.url}", table: {db.table}}}
state: {{url: "{state_url}"}}
schedule: {{interval: 1s, shutdown_grace: 5s}}
server: {{listen: "{LISTEN}"}}
ha: {{lease_ttl: {ttl}}}
detection:
  outage: {{window: 10m, min_payments: 5, failure_rate: 0.9, for: 0s, keep_firing_for: 0s}}
  sla_breach: {{enabled: false}}
  no_data: {{enabled: false}}
gateways:
  stripe: {{backup: adyen}}
  adyen: {{backup: stripe}}
  paypal: {{}}
receivers:
{receivers}route:
  receivers: [{names}]
  group_interval: 0s   # the resolution follows the firing within seconds here
{extra}"""


def _traffic(db: PaymentsDb) -> None:
    # Ending two minutes ago, so a burst of failures "now" is a suffix of failures only.
    start = _now() - timedelta(minutes=32)
    for gateway in ("stripe", "adyen", "paypal"):
        db.steady(gateway, start, minutes=30, per_minute=10)


def _days_of_traffic(db: PaymentsDb, *gateways: str, days: int = 9) -> None:
    """Up to now, a day-night cycle (1 payment a minute before 08:00 UTC, 3 after): more
    than the week of history the status page's expected band needs."""
    now = _now()
    at = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    while at < now:
        night = at.hour < 8
        end = min(at.replace(hour=8) if night else at + timedelta(hours=24 - at.hour), now)
        minutes = int((end - at).total_seconds() // 60)
        for gateway in gateways if minutes else ():
            db.steady(gateway, at, minutes=minutes, per_minute=1 if night else 3)
        at = end


def _metrics(service: DaemonProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = service.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


# --- one replica: the endpoints, the status page, the logs -----------------------------------


@pytest.mark.slow
def test_endpoints_and_status_page_during_an_incident_and_after(
    sqlite_db: PaymentsDb, start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    with HttpRecorder() as hook:
        config = tmp_path / "alerts.yaml"
        state = f"sqlite:///{tmp_path / 'state.db'}"
        config.write_text(_config(sqlite_db, state, hook.url_for("/hook")))
        _traffic(sqlite_db)
        _days_of_traffic(sqlite_db, "stripe", "paypal")
        service = start_daemon(config, tmp_path / "service.log", json_logs=True)

        health = wait_until(lambda: service.get("/healthz").json()["status"] == "ok", "a tick")
        assert health
        response = service.get("/healthz")
        assert response.status_code == 200
        assert response.json()["role"] == "leader"
        metrics = _metrics(service)
        assert metrics[("detector_ticks_total", (("outcome", "ok"),))] >= 1
        assert metrics[("detector_rows_read_total", ())] >= 900
        assert metrics[("detector_leader", ())] == 1
        assert metrics[("detector_gateway_failure_ratio", (("gateway", "stripe"),))] == 0
        assert {g: v["status"] for g, v in service.gateways().items()} == {
            "stripe": "healthy",
            "adyen": "healthy",
            "paypal": "healthy",
        }

        # The incident: stripe fails every payment.
        sqlite_db.add("stripe", _now(), failed=40, error_code="gateway_timeout")
        (firing,) = hook.wait_for(1, timeout=20)
        stripe = wait_until(
            lambda: (s := service.gateways()["stripe"])["status"] == "down" and s, "stripe down"
        )
        assert stripe["backup"] == "adyen"
        assert stripe["backup_status"] == "healthy"
        assert stripe["failures"] == 40
        assert stripe["interval"][0] < stripe["failure_rate"] < stripe["interval"][1]
        assert [(a["rule"], a["state"]) for a in stripe["alerts"]] == [("outage", "firing")]
        assert stripe["alerts"][0]["fingerprint"] == firing.json()["fingerprint"]
        assert service.gateways()["adyen"]["status"] == "healthy"

        # The expected band is drawn from the weeks of volume history, read a day per query;
        # on a loaded machine a day that times out is read on the next tick.
        wait_until(
            lambda: service.gateways()["stripe"]["volume"]["expected"] is not None,
            "the volume history",
        )
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "status-page.png"
        screenshot.unlink(missing_ok=True)
        dom, browser_log = render(service.url + "/", screenshot, tmp_path / "chromium")
        for gateway, status in (("stripe", "down"), ("adyen", "healthy"), ("paypal", "healthy")):
            assert f'id="gw-{gateway}" data-status="{status}"' in dom
        assert '<tr class="alert firing">' in dom
        assert "outage" in dom
        assert 'class="sla-line"' in dom
        sections = {
            g: dom.split(f'id="gw-{g}"')[1].split("</section>")[0]
            for g in ("stripe", "adyen", "paypal")
        }
        assert 'class="expected-band"' in sections["stripe"]
        assert 'class="expected-band"' in sections["paypal"]
        assert "not enough history for an expected band (needs a week)" in sections["adyen"]
        assert "CONSOLE" not in browser_log, browser_log
        assert screenshot.stat().st_size > 10_000
        # axe-core finds nothing in the page as served, on a desktop and on a phone.
        page = service.get("/").text
        for width in (1200, 390):
            report = audit(page, tmp_path / "axe", width)
            assert [v["id"] for v in report["violations"]] == [], serious(report)
            assert report["cells_without_field_name"] == 0
            assert report["smallest_chart_label"] >= 11

        # Recovery: stripe succeeds again; the alert resolves and the API says so.
        sqlite_db.add("stripe", _now(), succeeded=600)
        resolved = hook.wait_for(2, timeout=20)[1].json()
        assert resolved["event"] == "resolved"
        wait_until(lambda: service.gateways()["stripe"]["status"] == "healthy", "stripe healthy")
        assert service.gateways()["stripe"]["alerts"] == []
        delivered = (
            "detector_notifications_total",
            (("outcome", "delivered"), ("receiver", "hook0")),
        )
        # The delivery pass counts a delivery first and recounts the outbox right after.
        wait_until(
            lambda: (
                (m := _metrics(service)).get(delivered) == 2
                and m[("detector_outbox_depth", ())] == 0
            ),
            "two deliveries counted and the outbox empty",
        )
        assert service.get("/nope").status_code == 404
        assert service.terminate() == 0

    lines = [json.loads(line) for line in service.log.read_text().splitlines()]
    messages = [line["message"] for line in lines]
    ticks = [m for m in messages if re.match(r"tick \d+: read \d+ rows .* in [0-9.]+s", m)]
    assert len(ticks) >= 3
    fingerprint = firing.json()["fingerprint"]
    deliveries = [m for m in messages if m.startswith("delivered ") and fingerprint in m]
    assert len(deliveries) == 2
    assert all(" to hook0 " in m for m in deliveries)
    assert messages[-2:] == ["released the leader lease", "detector stopped"]


# --- SIGHUP -------------------------------------------------------------------------------


@pytest.mark.slow
def test_sighup_applies_a_valid_config_keeping_alert_state_and_rejects_a_broken_one(
    sqlite_db: PaymentsDb, start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    with HttpRecorder() as old, HttpRecorder() as new:
        config = tmp_path / "alerts.yaml"
        state = f"sqlite:///{tmp_path / 'state.db'}"
        config.write_text(_config(sqlite_db, state, old.url_for("/old")))
        _traffic(sqlite_db)
        service = start_daemon(config, tmp_path / "service.log")
        sqlite_db.add("stripe", _now(), failed=40)
        assert old.wait_for(1, timeout=20)[0].json()["event"] == "firing"

        # A broken file: rejected with the key path, the old config keeps running.
        config.write_text(_config(sqlite_db, state, old.url_for("/old"), extra="bogus: 1\n"))
        service.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "config reload rejected" in service.log.read_text(), "the rejection")
        assert "bogus: unknown key" in service.log.read_text()
        service.wait_ticks(2)
        assert service.get("/healthz").status_code == 200
        metrics = _metrics(service)
        assert metrics[("detector_config_reloads_total", (("outcome", "rejected"),))] == 1

        # A valid one routing to a new receiver: the firing alert carries over, so the new
        # receiver gets its resolution and nobody gets a second "firing".
        config.write_text(_config(sqlite_db, state, new.url_for("/new")))
        service.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "config reloaded" in service.log.read_text(), "the reload")
        service.wait_ticks(2)
        assert service.gateways()["stripe"]["status"] == "down"
        sqlite_db.add("stripe", _now(), succeeded=600)
        (resolved,) = new.wait_for(1, timeout=20)
        service.wait_ticks(2)
        assert service.terminate() == 0
    assert resolved.json()["event"] == "resolved"
    assert len(old.requests) == 1
    assert len(new.requests) == 1


# --- two replicas sharing a state database -----------------------------------------------


@pytest.mark.slow
def test_two_replicas_notify_once_and_the_follower_takes_over_after_a_kill(
    sqlite_db: PaymentsDb,
    state_url: str,
    start_daemon: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    with HttpRecorder() as hook:
        config = tmp_path / "alerts.yaml"
        config.write_text(_config(sqlite_db, state_url, hook.url_for("/hook"), ttl="2s"))
        _traffic(sqlite_db)
        # Started together, as docker compose does, on a state database neither has seen.
        replicas = [
            start_daemon(config, tmp_path / f"{r}.log", replica=r, ready=False) for r in ("a", "b")
        ]
        for replica in replicas:
            replica.wait_ready()
        roles = wait_until(
            lambda: (
                (roles := sorted((s.role() or "", s.replica) for s in replicas))
                and roles[0][0] == "follower"
                and roles[1][0] == "leader"
                and roles
            ),
            "one leader and one follower",
        )
        leader, follower = (next(s for s in replicas if s.replica == roles[i][1]) for i in (1, 0))
        assert follower.get("/healthz").status_code == 200

        sqlite_db.add("stripe", _now(), failed=40)
        (firing,) = hook.wait_for(1, timeout=20)
        # The follower sees the incident too (from the leader's stored state) but stays quiet.
        wait_until(lambda: follower.gateways()["stripe"]["status"] == "down", "the follower's view")
        leader.wait_ticks(2)
        follower.wait_ticks(2)
        assert len(hook.requests) == 1

        leader.process.kill()  # mid-incident, without a chance to release the lease
        leader.process.wait(timeout=10)
        wait_until(lambda: follower.role() == "leader", "the follower to take over", timeout=15)
        follower.wait_ticks(2)
        assert len(hook.requests) == 1  # the takeover does not repeat the firing

        sqlite_db.add("stripe", _now(), succeeded=600)
        resolved = hook.wait_for(2, timeout=20)[1]
        follower.wait_ticks(2)
        assert follower.terminate() == 0
    events = [(r.json()["event"], r.json()["fingerprint"]) for r in hook.requests]
    fingerprint = firing.json()["fingerprint"]
    assert events == [("firing", fingerprint), ("resolved", fingerprint)]
    assert resolved.header("Idempotency-Key") != firing.header("Idempotency-Key")
    assert f"became the leader (replica {follower.replica}, term 2)" in follower.log.read_text()
