"""Shared fixtures: the three real databases (and DuckDB for the payments), explicit payment
rows, a fixed clock, the daemon in-process and as a subprocess."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import pytest
import requests
import sqlalchemy as sa

from detector.alerts import notification_for
from detector.config import Config
from detector.db import connect
from detector.engine import Engine
from detector.notify import build_receivers
from detector.service.daemon import Daemon
from detector.simulate import create_schema
from detector.source import Source, SqlSource
from detector.store import StateStore
from detector.volume_source import open_volumes

from .daemon_process import DaemonProcess
from .http_recorder import HttpRecorder

SERVER_URLS = {
    "postgresql": os.environ.get(
        "DETECTOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get(
        "DETECTOR_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
    ),
}

# .ci/run sets this so that an unreachable server fails the run instead of skipping.
REQUIRE_SERVERS = os.environ.get("DETECTOR_REQUIRE_DATABASES") == "1"

DIALECTS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.database),
    pytest.param("mariadb", marks=pytest.mark.database),
]
# The databases the payments are read from: those above, and DuckDB (a file, no server),
# which holds no state.
SOURCE_DIALECTS = [*DIALECTS, "duckdb"]

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # a Friday noon: the tests' "now"


def _unreachable(url: str) -> str | None:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        return str(getattr(exc, "orig", exc)).splitlines()[0]
    finally:
        engine.dispose()
    return None


@dataclass
class PaymentsDb:
    """A payments table in one of the three databases, with a helper to add rows."""

    dialect: str
    url: str
    table: str
    engine: sa.Engine

    def add(
        self,
        gateway: str | None,
        at: datetime,
        *,
        succeeded: int = 0,
        failed: int = 0,
        pending: int = 0,
        other: dict[str | None, int] | None = None,
        error_code: str | None = "card_declined",
        method: str | None = "card",
        country: str | None = "US",
        amount: float = 10,
        currency: str = "USD",
        latency_ms: int | None = None,
    ) -> None:
        """Insert rows at ``at`` (a microsecond apart); pending rows have no latency."""
        statuses: list[tuple[str | None, int]] = [
            ("succeeded", succeeded),
            ("failed", failed),
            ("pending", pending),
            *(other or {}).items(),
        ]
        rows = []
        for status, count in statuses:
            for _ in range(count):
                offset = timedelta(microseconds=len(rows))
                rows.append(
                    {
                        "id": f"pay_{uuid.uuid4().hex[:20]}",
                        "created_at": (at + offset).astimezone(UTC).replace(tzinfo=None),
                        "gateway": gateway,
                        "status": status,
                        "error_code": error_code if status == "failed" else None,
                        "amount": amount,
                        "currency": currency,
                        "method": method,
                        "country": country,
                        "latency_ms": None if status == "pending" else latency_ms,
                    }
                )
        if rows:
            with self.engine.begin() as connection:
                connection.execute(create_schema(self.engine, self.table).insert(), rows)

    def steady(
        self,
        gateway: str,
        start: datetime,
        minutes: int,
        per_minute: int,
        failed: int = 0,
        *,
        method: str = "card",
        country: str = "US",
        latency_ms: int | None = None,
        slow: int = 0,
    ) -> None:
        """``per_minute`` payments each minute, ``failed`` of them failed, for ``minutes``;
        each takes ``latency_ms``, and ``slow`` of them (the last ones) ten times that."""
        rows = []
        table = create_schema(self.engine, self.table)
        for m in range(minutes):
            for j in range(per_minute):
                rows.append(
                    {
                        "id": f"pay_{uuid.uuid4().hex[:20]}",
                        "created_at": (start + timedelta(minutes=m, seconds=j * 59 / per_minute))
                        .astimezone(UTC)
                        .replace(tzinfo=None),
                        "gateway": gateway,
                        "status": "failed" if j < failed else "succeeded",
                        "error_code": "card_declined" if j < failed else None,
                        "amount": 10,
                        "currency": "USD",
                        "method": method,
                        "country": country,
                        "latency_ms": None
                        if latency_ms is None
                        else latency_ms * (10 if j >= per_minute - slow else 1),
                    }
                )
        with self.engine.begin() as connection:
            connection.execute(table.insert(), rows)


def _server(dialect: str) -> str:
    """The URL of a reachable server for ``dialect``; skips (or fails, in CI) otherwise."""
    url = SERVER_URLS[dialect]
    problem = _unreachable(url)
    if problem:
        message = f"{dialect} server at {sa.make_url(url).host} is unreachable: {problem}"
        if REQUIRE_SERVERS:
            pytest.fail(message)
        pytest.skip(message)
    return url


def _duckdb(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, sa.Engine]:
    """A DuckDB file and an engine writing it that holds the file only while it writes:
    the detector's read-only engine opens the same file in between."""
    try:
        import duckdb_engine  # noqa: F401
    except ImportError:
        message = "duckdb-engine is not installed (pip install -e '.[test]')"
        if REQUIRE_SERVERS:
            pytest.fail(message)
        pytest.skip(message)
    url = f"duckdb:///{tmp_path_factory.mktemp('db') / 'payments.duckdb'}"
    return url, sa.create_engine(url, poolclass=sa.pool.NullPool)


def _database(dialect: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaymentsDb]:
    table = "payments"
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'payments.db'}"
        engine = sa.create_engine(url)
    elif dialect == "duckdb":
        url, engine = _duckdb(tmp_path_factory)
    else:
        url = _server(dialect)
        table = f"payments_{uuid.uuid4().hex[:10]}"
        engine = sa.create_engine(url)
    create_schema(engine, table)
    try:
        yield PaymentsDb(dialect, url, table, engine)
    finally:
        if dialect not in {"sqlite", "duckdb"}:
            with engine.begin() as connection:
                connection.execute(sa.text(f"DROP TABLE {table}"))
        engine.dispose()


@pytest.fixture(params=SOURCE_DIALECTS)
def payments_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PaymentsDb]:
    """The same test on SQLite, PostgreSQL, MariaDB and DuckDB."""
    yield from _database(request.param, tmp_path_factory)


@pytest.fixture
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaymentsDb]:
    yield from _database("sqlite", tmp_path_factory)


@pytest.fixture
def open_source() -> Iterator[Callable[[Config], SqlSource]]:
    """Opens the configured payments source; every one is closed after the test."""
    opened: list[SqlSource] = []

    def open_(config: Config) -> SqlSource:
        source = SqlSource(connect(config.source.url), config.source, config.latency_threshold)
        opened.append(source)
        return source

    yield open_
    for source in opened:
        source.engine.dispose()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture
def http() -> Iterator[HttpRecorder]:
    """A real HTTP server on 127.0.0.1 recording what it receives."""
    with HttpRecorder() as server:
        yield server


class Clock:
    """The injected clock of simulated-time tests; move it by assigning ``now``."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def in_process_daemon(
    config: Config,
    state_url: str,
    clock: Clock,
    session: requests.Session,
    stream: TextIO | None = None,
) -> Iterator[Daemon]:
    """A daemon ticked and delivered by the test; leaving the block is a crash (no shutdown)."""
    source = SqlSource(connect(config.source.url), config.source, config.latency_threshold)
    volumes = open_volumes(config, strict=True)
    store = StateStore.open(state_url)
    try:
        yield Daemon(
            config, source, store, build_receivers(config, session, stream), clock, volumes=volumes
        )
    finally:
        source.engine.dispose()
        store.engine.dispose()
        if volumes is not None:
            volumes.dispose()


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., DaemonProcess]]:
    """Starts ``detector run`` as a :class:`DaemonProcess`, returned once it is ready unless
    ``ready=False``; every process still running after the test is killed."""
    started: list[DaemonProcess] = []

    def start(config: Path, log: Path, *, ready: bool = True, **options: Any) -> DaemonProcess:
        daemon = DaemonProcess(config, log, **options)
        started.append(daemon)
        return daemon.wait_ready() if ready else daemon

    yield start
    for daemon in started:
        daemon.close()


def _state_url(dialect: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A state database of its own: the detector's table names are fixed, so on the shared
    servers each test gets a fresh database."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('state') / 'state.db'}"
        return
    server = _server(dialect)
    name = f"state_{uuid.uuid4().hex[:10]}"
    # CREATE DATABASE cannot run inside a transaction on PostgreSQL.
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {name}"))
        yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE {name}"))
        admin.dispose()


@pytest.fixture(params=DIALECTS)
def state_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh state database on SQLite, PostgreSQL and MariaDB."""
    yield from _state_url(request.param, tmp_path_factory)


def live_ticks(config: Config, source: Source, begin: datetime, end: datetime) -> list[str]:
    """Notifications (as JSON) of the daemon's engine ticked one minute at a time against the
    database from ``begin`` to ``end``, repeats left out: what a replay must reproduce."""
    engine = Engine(config, source)
    live = []
    now = begin
    while now <= end:
        live += [
            notification_for(t, config).to_json()
            for t in engine.tick(now).transitions
            if not t.repeat
        ]
        now += timedelta(minutes=1)
    return live
