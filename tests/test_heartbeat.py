"""The heartbeat (``heartbeat:``): the leader pings a dead-man's switch after each successful
tick, at most once per ``every``; a failed tick, a follower and a failing endpoint never ping
or stop anything. Against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from detector.config import Config, ConfigError, parse_config
from detector.db import connect
from detector.notify import build_receivers
from detector.service.daemon import Daemon
from detector.service.lease import Lease
from detector.source import SqlSource
from detector.store import StateStore

from .conftest import T0, Clock, PaymentsDb
from .http_recorder import HttpRecorder

SECRET_PATH = "/ping/5f1c0e7a-secret-uuid"


def _config(db: PaymentsDb, heartbeat: dict[str, Any]) -> Config:
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table},
            "schedule": {"interval": "1m"},
            "heartbeat": heartbeat,
        },
        env={},
    )


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    """Daemons the test builds; their connections and heartbeats are closed after it."""
    built: list[Daemon] = []
    yield built
    for daemon in built:
        daemon.heartbeat.close()
        daemon.engine.source.engine.dispose()  # type: ignore[attr-defined]
        daemon.store.engine.dispose()


def _daemon(
    daemons: list[Daemon], config: Config, state: str, clock: Clock, **kwargs: Any
) -> Daemon:
    source = SqlSource(connect(config.source.url), config.source)
    with requests.Session() as session:
        daemon = Daemon(
            config,
            source,
            StateStore.open(state),
            build_receivers(config, session),
            clock,
            **kwargs,
        )
    daemons.append(daemon)
    return daemon


def _tick(daemon: Daemon) -> None:
    daemon.tick()
    daemon.heartbeat.wait()


def _pings(daemon: Daemon, outcome: str) -> float:
    return daemon.registry.get_sample_value("detector_heartbeat_pings_total", {"outcome": outcome})


def test_successful_ticks_ping_at_most_once_per_every(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path, daemons: list[Daemon]
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=5)
    config = _config(sqlite_db, {"url": http.url_for(SECRET_PATH), "every": "2m"})
    clock = Clock(T0)
    daemon = _daemon(daemons, config, f"sqlite:///{tmp_path / 'state.db'}", clock)
    for minute in range(5):
        clock.now = T0 + timedelta(minutes=minute)
        _tick(daemon)
    assert [(r.method, r.path) for r in http.requests] == [("GET", SECRET_PATH)] * 3
    assert _pings(daemon, "ok") == 3


def test_a_failed_tick_does_not_ping(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path, daemons: list[Daemon]
) -> None:
    config = _config(sqlite_db, {"url": http.url_for(SECRET_PATH), "every": "1m"})
    clock = Clock(T0)
    daemon = _daemon(daemons, config, f"sqlite:///{tmp_path / 'state.db'}", clock)
    _tick(daemon)
    assert len(http.requests) == 1
    with sqlite_db.engine.begin() as connection:  # the payments cannot be read any more
        connection.execute(sa.text(f"DROP TABLE {sqlite_db.table}"))
    for minute in (1, 2):
        clock.now = T0 + timedelta(minutes=minute)
        _tick(daemon)
    assert daemon.last_tick is not None
    assert daemon.last_tick.error is not None
    assert len(http.requests) == 1
    assert daemon.registry.get_sample_value("detector_ticks_total", {"outcome": "source_error"})


def test_only_the_leader_pings_and_posts_a_small_document(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path, daemons: list[Daemon]
) -> None:
    state = f"sqlite:///{tmp_path / 'state.db'}"
    config = _config(sqlite_db, {"url": http.url_for(SECRET_PATH), "method": "POST"})
    clock = Clock(T0)
    store_engine = connect(state, read_only=False)
    StateStore(store_engine)
    ttl = timedelta(seconds=30)
    leader = _daemon(daemons, config, state, clock, lease=Lease(store_engine, "a", ttl))
    follower = _daemon(daemons, config, state, clock, lease=Lease(store_engine, "b", ttl))
    try:
        for minute in (0, 1):
            clock.now = T0 + timedelta(minutes=minute)
            _tick(leader)
            _tick(follower)
    finally:
        store_engine.dispose()
    assert (leader.role, follower.role) == ("leader", "follower")
    assert [r.json() for r in http.requests] == [
        {"status": "ok", "tick_at": "2026-11-20T12:00:00Z", "replica": "a"},
        {"status": "ok", "tick_at": "2026-11-20T12:01:00Z", "replica": "a"},
    ]
    assert http.requests[0].header("Content-Type") == "application/json"
    assert _pings(follower, "ok") is None


def test_a_failing_ping_is_logged_without_its_path_and_counted(
    sqlite_db: PaymentsDb,
    http: HttpRecorder,
    tmp_path: Path,
    daemons: list[Daemon],
    caplog: pytest.LogCaptureFixture,
) -> None:
    http.echo = 500  # the error page quotes the request, path included
    config = _config(sqlite_db, {"url": http.url_for(SECRET_PATH)})
    clock = Clock(T0)
    daemon = _daemon(daemons, config, f"sqlite:///{tmp_path / 'state.db'}", clock)
    with caplog.at_level(logging.WARNING, logger="detector.service.heartbeat"):
        _tick(daemon)
    assert daemon.last_tick is not None
    assert daemon.last_tick.error is None
    assert len(http.requests) == 1
    assert f"heartbeat failed: GET {http.url}: HTTP 500" in caplog.text
    assert "secret-uuid" not in caplog.text
    assert _pings(daemon, "failed") == 1
    # The next due tick tries again.
    http.echo = None
    clock.now += timedelta(minutes=1)
    _tick(daemon)
    assert _pings(daemon, "ok") == 1


def test_a_slow_endpoint_never_holds_the_tick(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path, daemons: list[Daemon]
) -> None:
    http.trickle = 0.2  # one byte at a time: only the whole-request deadline ends it
    config = _config(sqlite_db, {"url": http.url_for(SECRET_PATH), "timeout": "3s"})
    clock = Clock(T0)
    daemon = _daemon(daemons, config, f"sqlite:///{tmp_path / 'state.db'}", clock)
    daemon.tick()
    assert daemon.heartbeat.in_flight  # the tick is done while the ping still waits
    http.wait_for(1)
    daemon.heartbeat.wait()
    assert _pings(daemon, "failed") == 1


def test_the_url_comes_from_the_environment_and_is_checked() -> None:
    document = {"heartbeat": {"url": "${HEARTBEAT_URL}", "every": "5m"}}
    config = parse_config(document, env={"HEARTBEAT_URL": "https://hc-ping.com/uuid"})
    assert config.heartbeat is not None
    assert config.heartbeat.url.get_secret_value() == "https://hc-ping.com/uuid"
    assert config.heartbeat.every == timedelta(minutes=5)
    assert "uuid" not in repr(config.heartbeat)
    with pytest.raises(ConfigError, match=r"heartbeat\.url: environment variable HEARTBEAT_URL"):
        parse_config(document, env={})
    with pytest.raises(ConfigError, match=r"heartbeat\.url: .*must start with http"):
        parse_config({"heartbeat": {"url": "hc-ping.com/uuid"}}, env={})
    with pytest.raises(ConfigError, match=r"heartbeat\.every: .*must be positive"):
        parse_config({"heartbeat": {"url": "https://hc-ping.com/u", "every": "0s"}}, env={})
