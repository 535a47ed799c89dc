"""Database plumbing shared by the payments source, the state store and the lease:
URLs checked before use, engines pinned to UTC, queries bounded in time, one-line error
text, and table creation that survives a race."""

from __future__ import annotations

import functools
import math
import os
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from detector.errors import DetectorError

__all__ = [
    "DatabaseUrlError",
    "QueryTimeout",
    "check_url",
    "connect",
    "create_tables",
    "error_text",
]

# The URL schemes that work with the drivers the detector installs, for the databases
# people name otherwise (a bare dialect picks a driver that is not installed).
_WORKING_SCHEMES = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "sqlite3": "sqlite",
}
_URL_FORMS = (
    "sqlite:///payments.db for a SQLite file, postgresql+psycopg://USER@HOST/DATABASE "
    "or mysql+pymysql://USER@HOST/DATABASE"
)

# Replicas racing to create the tables: how often one that lost tries again.
_CREATE_ATTEMPTS = 5
# How often SQLite's virtual machine asks whether its statement is past the deadline: a
# Python call per this many instructions costs well under 1% of a query.
_SQLITE_CHECK_EVERY = 10_000
# Where a pooled connection keeps the deadline of its statement in flight.
_DEADLINE = "detector_deadline"
_WATCHDOG = "detector_watchdog"
# PostgreSQL SQLSTATEs of a statement cancelled by statement_timeout or lock_timeout;
# MariaDB/MySQL errors of max_statement_time, max_execution_time and lock_wait_timeout.
_PG_TIMEOUTS = {"57014", "55P03"}
_MYSQL_TIMEOUTS = {1969, 3024, 1205}
_MYSQL_LOST_CONNECTION = 2013


class DatabaseUrlError(DetectorError, ValueError):
    """A database URL that cannot work: unreadable, an unknown database or driver, or a
    SQLite source file that does not exist."""


def check_url(url: str) -> sa.URL:
    """``url`` parsed, once its dialect and driver load; else :class:`DatabaseUrlError`
    saying what to write instead. The message never repeats the URL, which may hold a
    password."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        if "://" in url:
            raise DatabaseUrlError(f"not a database URL; write {_URL_FORMS}") from None
        raise DatabaseUrlError(
            f"{url!r} is not a database URL; for a SQLite file write sqlite:///{url} "
            f"(a server: postgresql+psycopg://USER@HOST/DATABASE or "
            "mysql+pymysql://USER@HOST/DATABASE)"
        ) from None
    scheme = parsed.drivername
    try:
        parsed.get_dialect().import_dbapi()
    except (sa.exc.NoSuchModuleError, ImportError):
        instead = _WORKING_SCHEMES.get(scheme) or _WORKING_SCHEMES.get(parsed.get_backend_name())
        if instead and instead != scheme:
            raise DatabaseUrlError(
                f"{scheme}:// cannot be opened (no such database or driver installed); "
                f"write {instead}:// instead"
            ) from None
        raise DatabaseUrlError(
            f"unknown database {scheme!r} (no such database or driver installed); "
            f"write {_URL_FORMS}"
        ) from None
    return parsed


def _sqlite_file(url: sa.URL) -> str | None:
    """The file of a SQLite URL naming a plain path (not memory, not a ``file:`` URI)."""
    if url.get_backend_name() != "sqlite" or "uri" in url.query:
        return None
    database = url.database or ""
    return None if database in {"", ":memory:"} else database


def _read_only_sqlite(url: sa.URL, name: str) -> sa.URL:
    """The SQLite source opened with ``mode=ro``: a mistyped path fails instead of
    creating an empty database."""
    path = _sqlite_file(url)
    if path is None:
        return url
    if not Path(path).is_file():
        raise DatabaseUrlError(
            f"{name}: the SQLite file {path} does not exist (the payments source is opened "
            "read-only and never created); check the path, e.g. sqlite:///payments.db for "
            "payments.db in the current folder"
        )
    return url.set(database=f"file:{quote(path)}", query={**url.query, "mode": "ro", "uri": "true"})


class QueryTimeout(sa.exc.OperationalError):
    """A statement ran, or waited for a lock, longer than its engine's query timeout."""

    def __init__(self, context: sa.engine.ExceptionContext, seconds: float):
        super().__init__(
            context.statement,
            context.parameters,
            context.original_exception,
            connection_invalidated=context.is_disconnect,
        )
        self.seconds = seconds


def connect(
    url: str,
    *,
    read_only: bool = True,
    query_timeout: timedelta | None = None,
    name: str | None = None,
) -> Engine:
    """An engine whose sessions run in UTC and, for the payments source, read only (a
    SQLite source must exist: it is opened with ``mode=ro``).

    With ``query_timeout`` every statement ends within about that long, answered or not:
    it fails with :class:`QueryTimeout` (see :func:`_bound_statements`). ``name``: the key
    or option that gave the URL, named in a :class:`DatabaseUrlError` (default
    ``source.url``, or ``state.url`` for a writable engine).
    """
    name = name or ("source.url" if read_only else "state.url")
    try:
        parsed = check_url(url)
    except DatabaseUrlError as exc:
        raise DatabaseUrlError(f"{name}: {exc}") from None
    if read_only:
        parsed = _read_only_sqlite(parsed, name)
    connect_args: dict[str, Any] = {}
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        # connect_args replaces the URL's own ?options= (e.g. a search_path): keep them.
        own = parsed.query.get("options", "")
        options = " ".join([*([own] if isinstance(own, str) else own), "-c timezone=UTC"]).strip()
        if read_only:
            options += " -c default_transaction_read_only=on"
        connect_args["options"] = options
        connect_args["connect_timeout"] = 10
    elif backend in {"mysql", "mariadb"}:
        connect_args["init_command"] = "SET time_zone = '+00:00'"
        connect_args["connect_timeout"] = 10
    if query_timeout is not None:
        connect_args.update(_timeout_arguments(backend, query_timeout, connect_args))
    # The ping on checkout must not hang on a frozen connection: _bound_statements pings
    # PostgreSQL under its watchdog instead.
    watched = query_timeout is not None and backend == "postgresql"
    engine = sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=not watched)
    guard = {"sqlite": "PRAGMA query_only = ON", "mysql": "SET SESSION TRANSACTION READ ONLY"}
    statement = guard.get("mysql" if backend == "mariadb" else backend)
    if read_only and statement:

        @sa.event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()

    if query_timeout is not None:
        _bound_statements(engine, backend, query_timeout)
    return engine


def _client_deadline(timeout: timedelta) -> float:
    """Seconds the client waits for an answer: the server's own timeout answers first
    whenever the server is reachable, with its clearer message."""
    seconds = timeout.total_seconds()
    return seconds + min(seconds, 5.0)


def _timeout_arguments(backend: str, timeout: timedelta, given: dict[str, Any]) -> dict[str, Any]:
    """Driver arguments that bound a statement on the server and a silent connection."""
    seconds = timeout.total_seconds()
    client = _client_deadline(timeout)
    if backend == "postgresql":
        ms = max(1, round(seconds * 1000))
        return {
            "options": f"{given.get('options', '')} -c statement_timeout={ms} "
            f"-c lock_timeout={ms}".strip(),
            # A peer that vanished (no ACK to data or keepalive probes) fails the read;
            # a peer that acknowledges but never answers is the watchdog's.
            "keepalives": 1,
            "keepalives_idle": max(1, math.ceil(seconds)),
            "keepalives_interval": max(1, math.ceil(seconds / 3)),
            "keepalives_count": 3,
            "tcp_user_timeout": round(client * 1000),
            "connect_timeout": _connect_seconds(given, client),
        }
    if backend in {"mysql", "mariadb"}:
        return {
            "read_timeout": client,
            "write_timeout": client,
            "connect_timeout": _connect_seconds(given, client),
        }
    if backend == "sqlite":
        return {"timeout": seconds}  # how long a statement waits for another writer's lock
    return {}


def _connect_seconds(given: dict[str, Any], client: float) -> int:
    # libpq takes whole seconds and treats fewer than 2 as 2.
    return min(int(given.get("connect_timeout", 10)), max(2, math.ceil(client)))


def _bound_statements(engine: Engine, backend: str, timeout: timedelta) -> None:
    """Make every statement of ``engine`` end within ``timeout`` (plus a little on the
    client side) and fail then with :class:`QueryTimeout`.

    - PostgreSQL: ``statement_timeout`` and ``lock_timeout`` (set at connect), and a
      watchdog that shuts the socket of a statement whose answer has not come a little
      after that: libpq has no read timeout, and a frozen connection or proxy never
      delivers the server's cancellation.
    - MariaDB: ``max_statement_time`` (MySQL: ``max_execution_time``) and
      ``lock_wait_timeout`` per session, and PyMySQL's read and write timeouts.
    - SQLite: the busy timeout (at connect) for another connection's lock, and a progress
      handler that interrupts a statement running past its deadline.
    """
    seconds = timeout.total_seconds()
    watch = _dialect_hooks(engine, backend, timeout)

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _arm(connection: sa.Connection, *_: Any) -> None:
        info = connection.info
        info[_DEADLINE] = time.monotonic() + seconds
        _disarm(info)
        if watch is not None:
            info[_WATCHDOG] = _Watchdog(connection.connection.dbapi_connection, watch)

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _answered(connection: sa.Connection, *_: Any) -> None:
        _disarm(connection.info)

    @sa.event.listens_for(engine, "commit")
    @sa.event.listens_for(engine, "rollback")
    def _finished(connection: sa.Connection) -> None:
        connection.info.pop(_DEADLINE, None)

    @sa.event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        # The pool's own rollback on return must not run under a stale deadline.
        record.info.pop(_DEADLINE, None)
        _disarm(record.info)

    @sa.event.listens_for(engine, "handle_error")
    def _timed_out(context: sa.engine.ExceptionContext) -> BaseException | None:
        connection = context.connection
        fired = connection is not None and _disarm(connection.info)
        if context.is_pre_ping or not (fired or _is_timeout(backend, context)):
            return None
        return QueryTimeout(context, seconds)


def _dialect_hooks(engine: Engine, backend: str, timeout: timedelta) -> float | None:
    """Register the dialect's own limits; the seconds after which a statement's watchdog
    shuts its connection, for a driver without a read timeout (else None)."""
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _interrupt_past_deadline)
    elif backend in {"mysql", "mariadb"}:
        limit = functools.partial(_limit_session, seconds=timeout.total_seconds())
        sa.event.listen(engine, "connect", limit)
    elif backend == "postgresql":
        watch = _client_deadline(timeout)
        sa.event.listen(engine, "checkout", functools.partial(_watched_ping, seconds=watch))
        return watch
    return None


def _interrupt_past_deadline(dbapi_connection: Any, record: Any) -> None:
    """SQLite: abort the statement in flight once its deadline has passed."""
    deadlines = record.info
    dbapi_connection.set_progress_handler(
        lambda: time.monotonic() > deadlines.get(_DEADLINE, math.inf), _SQLITE_CHECK_EVERY
    )


def _limit_session(dbapi_connection: Any, _record: Any, *, seconds: float) -> None:
    """MariaDB or MySQL: each statement and lock wait of the session ends after ``seconds``."""
    mariadb = "mariadb" in dbapi_connection.get_server_info().lower()
    limit = (
        f"max_statement_time = {seconds}"
        if mariadb
        else f"max_execution_time = {max(1, round(seconds * 1000))}"
    )
    cursor = dbapi_connection.cursor()
    cursor.execute(f"SET SESSION {limit}, lock_wait_timeout = {math.ceil(seconds)}")
    cursor.close()


def _watched_ping(dbapi_connection: Any, _record: Any, _proxy: Any, *, seconds: float) -> None:
    """PostgreSQL: the pool's liveness check on checkout, under a watchdog."""
    watchdog = _Watchdog(dbapi_connection, seconds)
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        dbapi_connection.rollback()
    except Exception as exc:
        # The pool discards this connection and checks out (or opens) another.
        raise sa.exc.DisconnectionError(str(exc).strip().splitlines()[0]) from exc
    finally:
        watchdog.disarm()


def _is_timeout(backend: str, context: sa.engine.ExceptionContext) -> bool:
    """Whether the database ended the statement for one of the limits set above."""
    error = context.original_exception
    if backend == "postgresql":
        return getattr(error, "sqlstate", None) in _PG_TIMEOUTS
    if backend in {"mysql", "mariadb"}:
        code = error.args[0] if error.args else None
        return code in _MYSQL_TIMEOUTS or (
            code == _MYSQL_LOST_CONNECTION and "timed out" in str(error)
        )
    if backend == "sqlite":
        return getattr(error, "sqlite_errorname", None) in {"SQLITE_BUSY", "SQLITE_INTERRUPT"}
    return False


class _Watchdog:
    """Shuts down a connection's socket unless :meth:`disarm` comes first; the blocked
    read then fails at once as a lost connection, which the pool discards."""

    def __init__(self, dbapi_connection: Any, seconds: float):
        self._fd = dbapi_connection.fileno()
        self._lock = threading.Lock()
        self._armed = True
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if not self._armed:
                return
            self._armed = False
            self.fired = True
            # A duplicate descriptor: shutting it down ends the connection's socket for
            # every descriptor, closing it leaves the driver's own descriptor to the driver.
            with socket.socket(fileno=os.dup(self._fd)) as duplicate:
                duplicate.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> bool:
        """Stop the timer; whether it had already fired."""
        with self._lock:
            self._armed = False
        self._timer.cancel()
        return self.fired


def _disarm(info: dict[Any, Any]) -> bool:
    """Stop the watchdog of the connection with ``info``; whether it had fired."""
    watchdog = info.pop(_WATCHDOG, None)
    return watchdog.disarm() if watchdog is not None else False


def create_tables(engine: Engine, metadata: sa.MetaData) -> None:
    """Create the missing tables.

    Replicas started together on a fresh database race to create the same tables, and
    every CREATE but the first fails (each dialect with its own error): a loser tries
    again a few times, by when the tables exist and it only checks them.
    """
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            metadata.create_all(engine)
            return
        except sa.exc.SQLAlchemyError:
            if attempt == _CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def error_text(exc: BaseException) -> str:
    """The first line of a database error, without the SQL and parameters it carried."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()[0][:300] if str(original).strip() else ""
    if isinstance(exc, QueryTimeout):
        return f"no answer within the {exc.seconds:g}s query timeout ({text or 'cancelled'})"
    return text or type(exc).__name__
