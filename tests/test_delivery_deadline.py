"""A receiver that answers one byte at a time: cut off at its timeout, never holding back the
other receivers, and never keeping a stopping daemon past its shutdown grace.

The trickling receiver is a real HTTP server on 127.0.0.1 (:attr:`HttpRecorder.trickle`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from detector.config import parse_config
from detector.notify import DeliveryError, WebhookReceiver

from .conftest import T0, Clock, PaymentsDb, in_process_daemon
from .daemon_process import LISTEN, DaemonProcess, wait_until
from .http_recorder import HttpRecorder
from .test_notify import firing, webhook

MINUTE = timedelta(minutes=1)


def test_a_trickling_answer_is_cut_off_when_the_timeout_is_used_up(
    http: HttpRecorder, session: requests.Session
) -> None:
    # Each byte comes well inside the timeout; the whole answer would take about a minute.
    http.trickle = 0.4
    receiver = WebhookReceiver("slow", webhook(http.url, timeout="1s"), session)
    with pytest.raises(DeliveryError) as caught:
        receiver.send(firing())
    assert caught.value.retryable
    assert str(caught.value) == f"POST {http.url}: no complete response within 1s"
    assert len(http.requests) == 1


def test_an_answer_cut_off_after_its_status_line_is_not_a_delivery(
    http: HttpRecorder, session: requests.Session
) -> None:
    # About the 17 bytes of "HTTP/1.0 200 OK\r\n" arrive before the deadline, no header.
    http.trickle = 0.1
    receiver = WebhookReceiver("slow", webhook(http.url, timeout="1.8s"), session)
    with pytest.raises(DeliveryError) as caught:
        receiver.send(firing())
    assert str(caught.value) == f"POST {http.url}: no complete response within 1.8s"


def _two_hooks(db: PaymentsDb, slow: HttpRecorder, healthy: HttpRecorder) -> dict[str, object]:
    return {
        "source": {"url": db.url, "table": db.table},
        "detection": {
            "outage": {"for": "0s", "keep_firing_for": "0s"},
            "sla_breach": {"enabled": False},
            "no_data": {"enabled": False},
            "volume_drop": {"enabled": False},
        },
        "receivers": {
            "slow": {"type": "webhook", "url": slow.url_for("/hook"), "timeout": "3s"},
            "healthy": {"type": "webhook", "url": healthy.url_for("/hook")},
        },
        "route": {"receivers": ["slow", "healthy"], "group_wait": "0s", "group_interval": "0s"},
    }


def test_a_trickling_receiver_does_not_hold_back_the_others(
    sqlite_db: PaymentsDb, session: requests.Session, tmp_path: Path
) -> None:
    with HttpRecorder() as slow, HttpRecorder() as healthy:
        slow.trickle = 0.4
        config = parse_config(_two_hooks(sqlite_db, slow, healthy), env={})
        sqlite_db.steady("stripe", T0 - 10 * MINUTE, minutes=10, per_minute=10, failed=10)
        sqlite_db.steady("adyen", T0 - 10 * MINUTE, minutes=10, per_minute=10)
        sqlite_db.steady("adyen", T0, minutes=2, per_minute=10, failed=10)
        clock = Clock(T0)
        state = f"sqlite:///{tmp_path / 'state.db'}"
        with in_process_daemon(config, state, clock, session) as daemon:
            daemon.tick()  # stripe fails
            daemon.deliver(wait=False)
            healthy.wait_for(1)
            slow.wait_for(1)
            # The healthy receiver's pass ends once its delivery is on record; a pass that
            # found it still busy would leave it to the next pass.
            wait_until(
                lambda: any(
                    d["receiver"] == "healthy" and d["delivered_at"]
                    for d in daemon.store.deliveries()
                ),
                "the healthy delivery to be recorded",
            )

            clock.now += MINUTE
            daemon.tick()  # adyen fails too
            daemon.deliver(wait=False)
            # The second pass reached the healthy receiver while the trickling one was
            # still on its first request: nothing of it is recorded yet.
            delivered = healthy.wait_for(2)
            assert [r.json()["labels"]["gateway"] for r in delivered] == ["stripe", "adyen"]
            assert _slow_rows(daemon.store.deliveries()) == [
                ("stripe", 0, None),
                ("adyen", 0, None),
            ]
            assert len(slow.requests) == 1

            wait_until(lambda: not daemon.dispatcher.busy(), "the trickling request to end")
            assert _slow_rows(daemon.store.deliveries()) == [
                ("stripe", 1, f"POST {slow.url}: no complete response within 3s"),
                ("adyen", 0, None),
            ]

            # Later, with the receiver answering normally, the retry sends both, in order.
            slow.trickle = 0
            clock.now += 10 * MINUTE
            daemon.deliver()
            assert [r.json()["labels"]["gateway"] for r in slow.requests] == [
                "stripe",
                "stripe",
                "adyen",
            ]
            assert len(healthy.requests) == 2


def _slow_rows(deliveries: list[dict[str, Any]]) -> list[tuple[str, int, str | None]]:
    """(gateway, attempts, last error) of each outbox entry of the trickling receiver."""
    return [
        (d["labels"]["gateway"], d["attempts"], d["last_error"])
        for d in deliveries
        if d["receiver"] == "slow"
    ]


@pytest.mark.slow
def test_sigterm_with_a_trickling_receiver_stops_within_the_grace(
    sqlite_db: PaymentsDb, tmp_path: Path, start_daemon: Callable[..., DaemonProcess]
) -> None:
    with HttpRecorder() as slow:
        slow.trickle = 0.5
        config = tmp_path / "alerts.yaml"
        config.write_text(
            f"""
source: {{url: "{sqlite_db.url}", table: {sqlite_db.table}}}
state: {{url: "sqlite:///{tmp_path / "state.db"}"}}
schedule: {{interval: 1s, shutdown_grace: 2s}}
detection:
  outage: {{window: 10m, min_payments: 5, failure_rate: 0.9, for: 0s, keep_firing_for: 0s}}
  sla_breach: {{enabled: false}}
  no_data: {{enabled: false}}
  volume_drop: {{enabled: false}}
receivers:
  # A timeout far beyond the grace: the grace must end the wait, not the timeout.
  slow: {{type: webhook, url: "{slow.url_for("/hook")}", timeout: 120s}}
route: {{receivers: [slow], group_wait: 0s}}
server: {{listen: "{LISTEN}"}}
"""
        )
        now = datetime.now(UTC)
        sqlite_db.steady("stripe", now - 5 * MINUTE, minutes=5, per_minute=10, failed=10)
        log = tmp_path / "daemon.log"
        daemon = start_daemon(config, log)
        slow.wait_for(1, timeout=30)  # the trickling answer has begun

        # Without the grace this would wait for the trickle (about a minute and a half).
        assert daemon.terminate() == 0
        text = log.read_text()
        assert "1 notification(s) still queued; the next leader sends them" in text
        assert "detector stopped" in text
