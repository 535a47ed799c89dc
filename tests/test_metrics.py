"""``/metrics`` as Prometheus reads it: names, the label values exported from the start, the
build info, and the example alert rules checked against the live exposition."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from detector import __version__
from detector.config import parse_config
from detector.service.web import WebServer

from .conftest import T0, Clock, PaymentsDb, in_process_daemon
from .http_recorder import HttpRecorder

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "docs" / "prometheus-alerts.yml"


def _scrape(db: PaymentsDb, tmp_path: Path) -> str:
    """``/metrics`` over HTTP after one tick of an outage, before any delivery."""
    db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10, failed=10)
    with HttpRecorder() as hook:
        config = parse_config(
            {
                "source": {"url": db.url, "table": db.table},
                "detection": {"outage": {"for": "0s"}},
                "receivers": {"hook": {"type": "webhook", "url": hook.url_for("/hook")}},
                "route": {"receivers": ["hook"]},
            },
            env={},
        )
        state = f"sqlite:///{tmp_path / 'state.db'}"
        with (
            requests.Session() as session,
            in_process_daemon(config, state, Clock(T0), session) as daemon,
        ):
            daemon.tick()
            server = WebServer(("127.0.0.1", 0), daemon).start()
            try:
                host, port = server.address
                response = session.get(f"http://{host}:{port}/metrics", timeout=10)
            finally:
                server.stop()
    assert response.status_code == 200
    return response.text


def test_the_exposition_names_ratios_exports_every_label_value_and_no_created_series(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    text = _scrape(sqlite_db, tmp_path)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert not [name for name, _ in samples if name.endswith("_created")]
    assert samples[("detector_build_info", (("version", __version__),))] == 1
    # Ratios say so; no "rate" that is not per second.
    assert samples[("detector_gateway_failure_ratio", (("gateway", "stripe"),))] == 1.0
    assert "detector_gateway_failure_upper_bound_ratio" in families
    assert not [name for name in families if "_rate" in name]
    # Counters list every outcome before it happens, at 0.
    ticks = {
        dict(labels)["outcome"]: v
        for (n, labels), v in samples.items()
        if n == "detector_ticks_total"
    }
    assert ticks == {"ok": 1, "source_error": 0, "store_error": 0, "follower": 0, "skipped": 0}
    sent = {
        (dict(labels)["receiver"], dict(labels)["outcome"]): v
        for (n, labels), v in samples.items()
        if n == "detector_notifications_total"
    }
    assert sent == {("hook", "delivered"): 0, ("hook", "retried"): 0, ("hook", "failed"): 0}
    reloads = [
        dict(labels)["outcome"] for (n, labels) in samples if n == "detector_config_reloads_total"
    ]
    assert sorted(reloads) == ["applied", "rejected"]
    assert (
        samples[
            ("detector_alerts", (("rule", "outage"), ("severity", "critical"), ("state", "firing")))
        ]
        == 1
    )
    assert (
        samples[
            (
                "detector_alerts",
                (("rule", "no_data"), ("severity", "critical"), ("state", "firing")),
            )
        ]
        == 0
    )


def test_promtool_accepts_the_exposition_and_the_example_alert_rules(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    text = _scrape(sqlite_db, tmp_path)
    # Every metric the example rules name is one the service exports.
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    named = set(re.findall(r"\bdetector_[a-z_]+", RULES.read_text()))
    assert len(named) >= 6
    assert named <= exported, named - exported
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("DETECTOR_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is not installed (Debian package prometheus)")
        pytest.skip("promtool is not installed (Debian package prometheus)")
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")
    rules = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 6 rules found" in rules.stdout
