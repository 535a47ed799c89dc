"""Secrets stay out of logs, the state database and ``detector outbox``, even when a receiver
echoes the request it got in an error page and the daemon logs at DEBUG."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detector.store import StateStore

from .conftest import PaymentsDb
from .daemon_process import LISTEN, DaemonProcess
from .http_recorder import HttpRecorder

# Each is a credential a request carries: a bearer token, a webhook URL's path and query,
# a PagerDuty routing key, a Slack incoming-webhook path.
HOOK_TOKEN = "hook-T0KEN-abc123"
HOOK_PATH = "HOOKPATHsecret"
HOOK_QUERY = "HOOKQUERYsecret"
PAGERDUTY_KEY = "PDROUTINGKEYsecret0123"
SLACK_PATH = "SLACKsecretPATH"
SECRETS = (HOOK_TOKEN, HOOK_PATH, HOOK_QUERY, PAGERDUTY_KEY, SLACK_PATH)

CONFIG = """
source: {{url: "{db_url}", table: {table}}}
state: {{url: "{state_url}"}}
schedule: {{interval: 1s, shutdown_grace: 1s}}
detection:
  outage: {{window: 10m, min_payments: 5, failure_rate: 0.9, for: 0s, keep_firing_for: 0s}}
  sla_breach: {{enabled: false}}
  no_data: {{enabled: false}}
  volume_drop: {{enabled: false}}
receivers:
  hook:
    type: webhook
    url: ${{HOOK_URL}}
    headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}
  pager: {{type: pagerduty, url: "{echo}/v2/enqueue", routing_key: "${{PAGERDUTY_KEY}}"}}
  chat: {{type: slack, url: "${{SLACK_URL}}"}}
route: {{receivers: [hook, pager, chat], group_wait: 0s}}
server: {{listen: "{listen}"}}
"""


@pytest.mark.slow
def test_an_echoed_secret_is_in_no_log_line_row_or_outbox_listing(
    sqlite_db: PaymentsDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    with HttpRecorder() as echo:
        echo.echo = 500
        state_url = f"sqlite:///{tmp_path / 'state.db'}"
        config = tmp_path / "alerts.yaml"
        config.write_text(
            CONFIG.format(
                db_url=sqlite_db.url,
                table=sqlite_db.table,
                state_url=state_url,
                echo=echo.url,
                listen=LISTEN,
            )
        )
        monkeypatch.setenv("HOOK_URL", echo.url_for(f"/in/{HOOK_PATH}?token={HOOK_QUERY}"))
        monkeypatch.setenv("HOOK_TOKEN", HOOK_TOKEN)
        monkeypatch.setenv("PAGERDUTY_KEY", PAGERDUTY_KEY)
        monkeypatch.setenv("SLACK_URL", echo.url_for(f"/services/T0/B0/{SLACK_PATH}"))
        now = datetime.now(UTC)
        sqlite_db.steady("stripe", now - timedelta(minutes=5), minutes=5, per_minute=10, failed=10)
        log = tmp_path / "daemon.log"
        daemon = start_daemon(config, log, log_level="DEBUG")
        echo.wait_for(3, timeout=30)
        assert daemon.terminate() == 0
        monkeypatch.setenv("DETECTOR_TEST_LISTEN", "127.0.0.1:0")  # read, never listened on
        listing = subprocess.run(
            [sys.executable, "-m", "detector", "outbox", "--config", str(config)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    # Each secret reached the receiver and came back in its answer...
    echoed = "\n".join(r.path + "\n" + str(r.headers) + r.text for r in echo.requests)
    assert all(secret in echoed for secret in SECRETS)
    # ... and is masked wherever that answer was logged, stored or listed.
    store = StateStore.open(state_url)
    try:
        rows = store.deliveries()
    finally:
        store.engine.dispose()
    stored = repr(rows)
    text = log.read_text()
    assert "HTTP 500" in text
    assert "DEBUG" in text
    assert "<redacted>" in stored
    assert {row["receiver"] for row in rows if "HTTP 500" in str(row["last_error"])} == {
        "hook",
        "pager",
        "chat",
    }
    assert "<redacted>" in listing
    for secret in SECRETS:
        assert secret not in text, secret
        assert secret not in stored, secret
        assert secret not in listing, secret
