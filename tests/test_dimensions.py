"""Dimension columns: the alert that arrives says which values hold the excess failures."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

from detector.config import Config, parse_config

from .conftest import T0, Clock, PaymentsDb, in_process_daemon
from .http_recorder import HttpRecorder

DIMENSIONS = {"method": "method", "country": "country"}


def _config(
    db: PaymentsDb, http: HttpRecorder, dimensions: dict[str, str] = DIMENSIONS, **detection: Any
) -> Config:
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table, "columns": {"dimensions": dimensions}},
            "detection": detection,
            "receivers": {
                "slack": {"type": "slack", "url": http.url_for("/slack")},
                "hook": {"type": "webhook", "url": http.url_for("/hook")},
            },
            "route": {"receivers": ["slack", "hook"]},
        },
        env={},
    )


def _card_in_brazil_fails(db: PaymentsDb) -> None:
    """An hour of healthy traffic, then half of card payments from Brazil fail for 10 min."""
    hour_ago = T0 - timedelta(hours=1)
    db.steady("stripe", hour_ago, minutes=70, per_minute=12, failed=0, country="US")
    db.steady("stripe", hour_ago, minutes=70, per_minute=4, method="wallet", country="BR")
    db.steady("stripe", hour_ago, minutes=60, per_minute=4, country="BR")
    db.steady("stripe", T0, minutes=10, per_minute=4, failed=2, country="BR")


def _run(config: Config, tmp_path: Path, minutes: int) -> None:
    clock = Clock(T0)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as daemon:
        for _ in range(minutes):
            daemon.tick()
            daemon.deliver()
            clock.now += timedelta(minutes=1)


def test_slack_and_the_webhook_say_which_values_hold_the_excess_failures(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    _card_in_brazil_fails(sqlite_db)
    _run(_config(sqlite_db, http), tmp_path, minutes=11)

    slack = [r.json() for r in http.requests if r.path == "/slack"]
    hooks = [r.json() for r in http.requests if r.path == "/hook"]
    assert [(h["event"], h["rule"]) for h in hooks] == [("firing", "sla_breach")]
    attribution = hooks[0]["evidence"]["attribution"]
    # All the failures are card payments from Brazil: a fifth of stripe's payments.
    assert attribution["segment"] == {"method": "card", "country": "BR"}
    assert attribution["excess_share"] == 1.0
    assert attribution["payments_share"] == 0.2
    line = "100% of excess failures are method=card, country=BR (20% of payments)"
    assert f"Attribution: {line}" in hooks[0]["text"]
    assert len(slack) == 1
    assert any(line in block.get("text", {}).get("text", "") for block in slack[0]["blocks"])


def test_no_attribution_line_without_dimensions(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    _card_in_brazil_fails(sqlite_db)
    _run(_config(sqlite_db, http, dimensions={}), tmp_path, minutes=11)
    hooks = [r.json() for r in http.requests if r.path == "/hook"]
    assert [h["rule"] for h in hooks] == ["sla_breach"]
    assert hooks[0]["evidence"]["attribution"] is None
    assert "Attribution" not in hooks[0]["text"]
