"""A database that stops answering: every query ends within its timeout, the tick counts as
failed towards ``source_down``, and the API stops vouching for verdicts nobody renewed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from detector.config import Config, ConfigError, parse_config
from detector.db import connect
from detector.engine import Engine
from detector.notify import build_receivers
from detector.service.daemon import Daemon
from detector.service.web import WebServer
from detector.source import SqlSource
from detector.store import StateStore, StoreError

from .conftest import DIALECTS, T0, Clock, PaymentsDb, _state_url
from .freezing_proxy import FreezingProxy

TIMEOUT = "no answer within the 1s query timeout"


def _config(url: str, table: str = "payments", **source: object) -> Config:
    return parse_config(
        {
            "source": {"url": url, "table": table, "query_timeout": "1s", **source},
            "state": {"query_timeout": "1s"},
            "schedule": {"interval": "1m", "source_down_after": 2},
            "server": {"unhealthy_after": 3},
        },
        env={},
    )


def _source(config: Config) -> SqlSource:
    timeout = config.source_query_timeout
    return SqlSource(connect(config.source.url, query_timeout=timeout), config.source)


@contextmanager
def locked(engine: sa.Engine, table: str) -> Iterator[None]:
    """Another session holds ``table`` as a migration or VACUUM FULL does: nobody may read it."""
    dialect = engine.dialect.name
    with engine.connect() as holder:
        if dialect == "sqlite":
            holder.exec_driver_sql("BEGIN EXCLUSIVE")
        elif dialect == "postgresql":
            holder.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        else:
            holder.exec_driver_sql(f"LOCK TABLES {table} WRITE")
        try:
            yield
        finally:
            if dialect in {"mysql", "mariadb"}:
                holder.exec_driver_sql("UNLOCK TABLES")
            holder.rollback()


@pytest.mark.parametrize("payments_db", DIALECTS, indirect=True)  # DuckDB locks no table
def test_a_locked_payments_table_fails_the_tick_and_raises_source_down(
    payments_db: PaymentsDb,
) -> None:
    payments_db.steady("stripe", T0 - timedelta(minutes=30), minutes=40, per_minute=10)
    config = _config(payments_db.url, payments_db.table)
    source = _source(config)
    engine = Engine(config, source)
    try:
        assert engine.tick(T0).error is None
        with locked(payments_db.engine, payments_db.table):
            first = engine.tick(T0 + timedelta(minutes=1))
            second = engine.tick(T0 + timedelta(minutes=2))
        recovered = engine.tick(T0 + timedelta(minutes=3))
    finally:
        source.engine.dispose()
    assert first.error is not None
    assert first.error.startswith(f"cannot read payments: {TIMEOUT}")
    assert first.transitions == []  # one failed tick is not an outage of the source yet
    fired = [(t.event, t.alert.rule) for t in second.transitions]
    assert fired == [("firing", "source_down")]
    assert second.transitions[0].alert.summary.startswith(
        f"the payments source cannot be read (2 ticks in a row): cannot read payments: {TIMEOUT}"
    )
    assert [(t.event, t.alert.rule) for t in recovered.transitions] == [("resolved", "source_down")]


@pytest.fixture(params=DIALECTS)
def state_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StateStore]:
    for url in _state_url(request.param, tmp_path_factory):
        store = StateStore.open(url, timedelta(seconds=1))
        try:
            yield store
        finally:
            store.engine.dispose()


def test_a_locked_outbox_pauses_delivery_instead_of_hanging_it(
    state_store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config("sqlite://")  # the test reads no payments
    admin = sa.create_engine(state_store.engine.url)
    daemon = Daemon(config, _source(config), state_store, {}, Clock(T0))
    try:
        with locked(admin, "detector_outbox"), caplog.at_level(logging.ERROR):
            with pytest.raises(StoreError, match=f"cannot read the outbox: {TIMEOUT}"):
                state_store.due(T0)
            daemon.deliver()  # the delivery job's pass returns and the next one tries again
        assert state_store.due(T0) == []
    finally:
        daemon.engine.source.engine.dispose()  # type: ignore[attr-defined]
        admin.dispose()
    (paused,) = [m for m in caplog.messages if m.startswith("delivery paused")]
    assert paused.startswith(f"delivery paused: cannot read the outbox: {TIMEOUT} (")


@pytest.mark.parametrize("payments_db", DIALECTS[1:], indirect=True)  # the servers
def test_a_frozen_connection_fails_the_tick(payments_db: PaymentsDb) -> None:
    upstream = sa.make_url(payments_db.url)
    proxy = FreezingProxy(upstream.port or 0)
    config = _config(
        upstream.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        payments_db.table,
    )
    source = _source(config)
    engine = Engine(config, source)
    try:
        assert engine.tick(T0).error is None
        proxy.freeze()
        frozen = engine.tick(T0 + timedelta(minutes=1))
    finally:
        proxy.close()
        source.engine.dispose()
    # The watchdog (PostgreSQL) or the read timeout (MariaDB) ends the wait; the pool's
    # fresh connection cannot get through either.
    assert (frozen.error or "").startswith("cannot read payments: ")
    assert engine.failed_ticks == 1


def _get(server: WebServer, path: str) -> tuple[int, Any]:
    host, port = server.address
    response = requests.get(f"http://{host}:{port}{path}", timeout=10)
    return response.status_code, response.json()


def test_gateways_turn_unknown_with_the_reason_once_verdicts_are_stale(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=30), minutes=40, per_minute=10)
    config = _config(sqlite_db.url)
    clock = Clock(T0)
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}", timedelta(seconds=1))
    with requests.Session() as session:
        daemon = Daemon(config, _source(config), store, build_receivers(config, session), clock)
    server = WebServer(("127.0.0.1", 0), daemon).start()
    try:
        daemon.tick()
        clock.now = T0 + timedelta(minutes=3)  # exactly unhealthy_after intervals: still fresh
        _, fresh = _get(server, "/api/v1/gateways")
        clock.now = T0 + timedelta(minutes=4)  # the scheduler stalled: no tick since T0
        _, stale = _get(server, "/api/v1/gateways")
        healthz = _get(server, "/healthz")
        clock.now = T0 + timedelta(minutes=5)
        daemon.tick()
        _, renewed = _get(server, "/api/v1/gateways")
    finally:
        server.stop()
        daemon.engine.source.engine.dispose()  # type: ignore[attr-defined]
        store.engine.dispose()
    assert [(g["status"], g["stale_since"]) for g in fresh["gateways"]] == [("healthy", None)]
    (stripe,) = stale["gateways"]
    assert (stripe["status"], stripe["stale_since"]) == ("unknown", "2026-11-20T12:03:00Z")
    assert stripe["reason"] == (
        "no fresh verdict (payments last read at 2026-11-20T12:00:00Z, limit 180s): no tick ran"
    )
    assert healthz[0] == 503
    assert healthz[1]["stale_since"] == "2026-11-20T12:03:00Z"
    assert [(g["status"], g["stale_since"]) for g in renewed["gateways"]] == [("healthy", None)]


def test_a_tick_stuck_on_a_lock_makes_the_gateways_unknown_while_it_waits(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=30), minutes=40, per_minute=10)
    # A lock the busy timeout outlasts: the tick waits instead of failing.
    config = _config(sqlite_db.url, query_timeout="30s")
    clock = Clock(T0)
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    daemon = Daemon(config, _source(config), store, {}, clock)
    server = WebServer(("127.0.0.1", 0), daemon).start()
    try:
        daemon.tick()
        with locked(sqlite_db.engine, sqlite_db.table):
            clock.now = T0 + timedelta(minutes=1)
            waiting = threading.Thread(target=daemon.tick)
            waiting.start()
            clock.now = T0 + timedelta(minutes=3, seconds=30)
            for _ in range(100):
                _, document = _get(server, "/api/v1/gateways")
                if "has not finished" in document["gateways"][0]["reason"]:
                    break
                time.sleep(0.05)
        waiting.join()
        _, after = _get(server, "/api/v1/gateways")
    finally:
        server.stop()
        daemon.engine.source.engine.dispose()  # type: ignore[attr-defined]
        store.engine.dispose()
    (stripe,) = document["gateways"]
    assert stripe["status"] == "unknown"
    assert stripe["reason"].endswith("has not finished")
    assert [g["status"] for g in after["gateways"]] == ["healthy"]


def test_the_query_timeout_defaults_to_half_the_interval_and_must_be_shorter_than_it() -> None:
    assert parse_config({}, env={}).source_query_timeout == timedelta(seconds=30)
    short = parse_config({"schedule": {"interval": "10s"}}, env={})
    assert short.source_query_timeout == timedelta(seconds=5)
    with pytest.raises(ConfigError) as caught:
        parse_config({"source": {"query_timeout": "1m"}}, env={})
    assert "source.query_timeout: 60s is not shorter than schedule.interval (60s)" in str(
        caught.value
    )
    with pytest.raises(ConfigError) as caught:
        parse_config({"state": {"query_timeout": "0s"}}, env={})
    assert caught.value.problems == [("state.query_timeout", "the query timeout must be positive")]
