"""Who notifies, as ``/healthz`` and the role tell it: a replica whose state database refuses
writes, or freezes, must not look fine while nobody notifies."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

from detector.config import Config, parse_config
from detector.db import connect
from detector.notify import build_receivers
from detector.service.daemon import Daemon
from detector.service.lease import Lease
from detector.source import SqlSource
from detector.store import StateStore

from .conftest import T0, Clock, PaymentsDb, _state_url
from .daemon_process import wait_until
from .freezing_proxy import FreezingProxy
from .http_recorder import HttpRecorder

TTL = timedelta(seconds=30)


@pytest.fixture
def pg_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh state database on the PostgreSQL server."""
    yield from _state_url("postgresql", tmp_path_factory)


def _config(db: PaymentsDb, hook: HttpRecorder) -> Config:
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table},
            "schedule": {"interval": "1m"},
            "detection": {
                "outage": {"for": "0s", "keep_firing_for": "0s"},
                "sla_breach": {"enabled": False},
            },
            "receivers": {"hook": {"type": "webhook", "url": hook.url_for("/hook")}},
            "route": {"receivers": ["hook"], "group_interval": "0s"},
        },
        env={},
    )


@contextmanager
def _replica(config: Config, state: str, name: str, clock: Clock) -> Iterator[Daemon]:
    source = SqlSource(connect(config.source.url), config.source)
    store = StateStore.open(state)
    try:
        with requests.Session() as session:
            yield Daemon(
                config,
                source,
                store,
                build_receivers(config, session),
                clock,
                lease=Lease(store.engine, name, TTL),
            )
    finally:
        source.engine.dispose()
        store.engine.dispose()


@contextmanager
def _select_only_role(state: str) -> Iterator[str]:
    """The URL of ``state`` as a login role granted SELECT on the detector's tables only: a
    state database that answers reads and refuses every write."""
    role = f"reader_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(state, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
            connection.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        yield sa.make_url(state).set(username=role).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP OWNED BY {role}"))
            connection.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


def _sessions(state: str) -> int:
    """Other sessions open on the database of ``state``."""
    admin = sa.create_engine(state)
    try:
        with admin.connect() as connection:
            return int(
                connection.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            )
    finally:
        admin.dispose()


def test_a_replica_that_cannot_write_the_lease_is_unhealthy_while_nobody_else_leads(
    sqlite_db: PaymentsDb, pg_state: str
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=12, per_minute=10, failed=10)
    clock = Clock(T0)
    with HttpRecorder() as hook:
        config = _config(sqlite_db, hook)
        first = StateStore.open(pg_state)  # the tables, as a first start made them
        Lease(first.engine, "b", TTL)
        first.engine.dispose()
        with (
            _select_only_role(pg_state) as read_only,
            _replica(config, read_only, "a", clock) as stuck,
        ):
            stuck.tick()
            alone = stuck.healthz()
            stuck.deliver()
            with _replica(config, pg_state, "b", clock) as writer:
                writer.tick()
                writer.deliver()
                clock.now += timedelta(minutes=1)
                writer.tick()
                stuck.tick()
                beside_a_leader = stuck.healthz()
            # b is gone; once its lease has expired nobody notifies again.
            clock.now += TTL + timedelta(minutes=1)
            stuck.tick()
            after = stuck.healthz()
        notified = [r.json()["event"] for r in hook.wait_for(1)]

    code, body = alone
    assert code == 503
    assert (body["status"], body["role"], body["lease_holder"]) == ("unhealthy", "follower", None)
    assert body["reason"].startswith(
        "cannot take the leader lease: cannot renew the leader lease: "
        "permission denied for table detector_lease"
    )
    assert body["reason"].endswith("no other replica holds it, so nobody notifies")
    # The firing outage reached the hook once, from b, never from the replica stuck reading.
    assert notified == ["firing"]
    code, body = beside_a_leader
    assert (code, body["status"], body["role"], body["lease_holder"]) == (
        200,
        "ok",
        "follower",
        "b",
    )
    assert after[0] == 503
    assert after[1]["lease_holder"] is None
    assert "no other replica holds it" in after[1]["reason"]


def test_a_leader_whose_state_connection_froze_stops_claiming_the_lead_once_its_lease_lapses(
    sqlite_db: PaymentsDb, pg_state: str
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=12, per_minute=10)
    upstream = sa.make_url(pg_state)
    proxy = FreezingProxy(upstream.port or 0)
    through_proxy = upstream.set(host="127.0.0.1", port=proxy.port)
    clock = Clock(T0)
    with HttpRecorder() as hook:
        config = _config(sqlite_db, hook)
        with (
            _replica(config, through_proxy.render_as_string(hide_password=False), "a", clock) as a,
            _replica(config, pg_state, "b", clock) as b,
        ):
            a.tick()
            b.tick()
            before = (a.healthz(), b.healthz())
            proxy.freeze()
            # Past the lease a renewed at T0: its next renewal hangs on the frozen connection.
            clock.now = T0 + TTL + timedelta(seconds=1)
            frozen_tick = threading.Thread(target=a.tick)
            frozen_tick.start()
            try:
                wait_until(lambda: "has not returned" in a.healthz()[1]["reason"], "a stuck")
                b.tick()
                frozen = a.healthz()
                a_serves = a.snapshot().role
                a_metric = a.exposition()
                b_health = b.healthz()
            finally:
                proxy.close()
                frozen_tick.join()
    # The server ends the frozen session once it sees the proxy's connection close.
    wait_until(lambda: not _sessions(pg_state), "the frozen session ends")

    assert [h[1]["role"] for h in before] == ["leader", "follower"]
    assert before[1][1]["lease_holder"] == "a"
    code, body = frozen
    assert (code, body["role"], a_serves) == (503, "follower", "follower")
    assert body["reason"].startswith(
        "this replica's leader lease lapsed at 2026-11-20T12:00:30Z without a renewal; "
        "the renewal started at 2026-11-20T12:00:31Z has not returned"
    )
    assert b"\ndetector_leader 0.0\n" in a_metric
    assert (b_health[0], b_health[1]["role"], b_health[1]["lease_holder"]) == (200, "leader", "b")
