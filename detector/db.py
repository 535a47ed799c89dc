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
    "table_columns",
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
# Databases that may hold the payments but not the detector's own state.
_SOURCE_ONLY = {"duckdb"}

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
    """A database URL that cannot work: unreadable, an unknown database or driver, a
    SQLite or DuckDB source file that does not exist, or DuckDB for the state."""


def check_url(url: str, *, state: bool = False) -> sa.URL:
    """``url`` parsed, once its dialect and driver load; else :class:`DatabaseUrlError`
    saying what to write instead. The message never repeats the URL, which may hold a
    password. ``state``: the URL of the detector's own tables, which DuckDB cannot hold."""
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
    if state and parsed.get_backend_name() in _SOURCE_ONLY:
        # Checked before the driver loads: the answer does not depend on what is installed.
        raise DatabaseUrlError(
            f"{scheme}:// can hold the payments (source.url) but not the detector's state "
            "(alerts, outbox, lease: many small writes from several replicas); write "
            "sqlite:///detector-state.db, postgresql+psycopg://USER@HOST/DATABASE or "
            "mysql+pymysql://USER@HOST/DATABASE"
        )
    try:
        parsed.get_dialect().import_dbapi()
    except (sa.exc.NoSuchModuleError, ImportError):
        if parsed.get_backend_name() == "duckdb":
            raise DatabaseUrlError(
                "duckdb:// needs the DuckDB driver: pip install "
                "'payment-failure-detector[duckdb]' (duckdb and duckdb-engine)"
            ) from None
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


def _database_file(url: sa.URL) -> str | None:
    """The file of a SQLite or DuckDB URL naming a plain path (not memory, not a ``file:``
    URI, not a MotherDuck ``md:`` database)."""
    backend = url.get_backend_name()
    if backend not in {"sqlite", "duckdb"} or "uri" in url.query:
        return None
    database = url.database or ""
    if database in {"", ":memory:"} or (backend == "duckdb" and database.startswith("md:")):
        return None
    return database


def _existing_file(url: sa.URL, name: str) -> sa.URL:
    """The payments source of a SQLite or DuckDB file, which must exist: it is opened read
    only (SQLite with ``mode=ro``), so a mistyped path fails instead of creating an empty
    database."""
    path = _database_file(url)
    if path is None:
        return url
    if not Path(path).is_file():
        kind, example = (
            ("SQLite", "sqlite:///payments.db")
            if url.get_backend_name() == "sqlite"
            else ("DuckDB", "duckdb:///payments.duckdb")
        )
        raise DatabaseUrlError(
            f"{name}: the {kind} file {path} does not exist (the payments source is opened "
            f"read-only and never created); check the path, e.g. {example} for "
            f"{example.rpartition('/')[2]} in the current folder"
        )
    if url.get_backend_name() == "duckdb":
        return url
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
    SQLite or DuckDB source file must exist: it is opened read-only).

    With ``query_timeout`` every statement ends within about that long, answered or not:
    it fails with :class:`QueryTimeout` (see :func:`_bound_statements`). ``name``: the key
    or option that gave the URL, named in a :class:`DatabaseUrlError` (default
    ``source.url``, or ``state.url`` for a writable engine).
    """
    name = name or ("source.url" if read_only else "state.url")
    try:
        parsed = check_url(url, state=not read_only)
    except DatabaseUrlError as exc:
        raise DatabaseUrlError(f"{name}: {exc}") from None
    backend = parsed.get_backend_name()
    if read_only:
        parsed = _existing_file(parsed, name)
    connect_args = _session_arguments(backend, parsed, read_only)
    if query_timeout is not None:
        connect_args.update(_timeout_arguments(backend, query_timeout, connect_args))
    # The ping on checkout must not hang on a frozen connection: _bound_statements pings
    # PostgreSQL under its watchdog instead.
    watched = query_timeout is not None and backend == "postgresql"
    # A DuckDB file admits one writing process, and none while another process has it open
    # (even read-only): the detector opens it for each read only, leaving it to its writer
    # in between.
    pool = {"poolclass": sa.pool.NullPool} if backend == "duckdb" else {}
    engine = sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=not watched, **pool)
    if backend == "duckdb":
        sa.event.listen(engine, "connect", _duckdb_in_utc)
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


def _session_arguments(backend: str, url: sa.URL, read_only: bool) -> dict[str, Any]:
    """Driver arguments that pin a session to UTC and, for the payments source, read only."""
    if backend == "postgresql":
        # connect_args replaces the URL's own ?options= (e.g. a search_path): keep them.
        own = url.query.get("options", "")
        options = " ".join([*([own] if isinstance(own, str) else own), "-c timezone=UTC"]).strip()
        if read_only:
            options += " -c default_transaction_read_only=on"
        return {"options": options, "connect_timeout": 10}
    if backend in {"mysql", "mariadb"}:
        return {"init_command": "SET time_zone = '+00:00'", "connect_timeout": 10}
    if backend == "duckdb":
        return {"read_only": read_only}  # the time zone is set once connected
    return {}


def _duckdb_in_utc(dbapi_connection: Any, _record: Any) -> None:
    """DuckDB: read TIMESTAMPTZ columns and compare them with the (naive UTC) bounds in UTC.
    The time zone is the ICU extension's setting; without it DuckDB has UTC only."""
    if dbapi_connection.execute(
        "SELECT count(*) FROM duckdb_extensions() WHERE extension_name = 'icu' AND loaded"
    ).fetchone()[0]:
        dbapi_connection.execute("SET TimeZone = 'UTC'")


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
    - DuckDB: a watchdog that interrupts the statement at its deadline.
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
    stops it, for a driver without a read timeout (else None)."""
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _interrupt_past_deadline)
    elif backend in {"mysql", "mariadb"}:
        limit = functools.partial(_limit_session, seconds=timeout.total_seconds())
        sa.event.listen(engine, "connect", limit)
    elif backend == "postgresql":
        watch = _client_deadline(timeout)
        sa.event.listen(engine, "checkout", functools.partial(_watched_ping, seconds=watch))
        return watch
    elif backend == "duckdb":
        return timeout.total_seconds()  # in process: no server of its own to answer first
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
    """Stops a connection's statement unless :meth:`disarm` comes first: PostgreSQL's by
    shutting down the connection's socket (the blocked read then fails at once as a lost
    connection, which the pool discards), DuckDB's by interrupting it."""

    def __init__(self, dbapi_connection: Any, seconds: float):
        self._stop = (
            dbapi_connection.interrupt
            if hasattr(dbapi_connection, "interrupt")
            else functools.partial(_shut_socket, dbapi_connection.fileno())
        )
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
            self._stop()

    def disarm(self) -> bool:
        """Stop the timer; whether it had already fired."""
        with self._lock:
            self._armed = False
        self._timer.cancel()
        return self.fired


def _shut_socket(fd: int) -> None:
    # A duplicate descriptor: shutting it down ends the connection's socket for every
    # descriptor, closing it leaves the driver's own descriptor to the driver.
    with socket.socket(fileno=os.dup(fd)) as duplicate:
        duplicate.shutdown(socket.SHUT_RDWR)


def _disarm(info: dict[Any, Any]) -> bool:
    """Stop the watchdog of the connection with ``info``; whether it had fired."""
    watchdog = info.pop(_WATCHDOG, None)
    return watchdog.disarm() if watchdog is not None else False


def table_columns(engine: Engine, table: str) -> dict[str, Any]:
    """The columns of ``table`` (``name`` or ``schema.name``), lower-cased, with their types
    as the database declares them; :class:`sqlalchemy.exc.NoSuchTableError` if it has none.

    DuckDB's are read from its ``information_schema`` (a view over Parquet files counts as
    a table): duckdb-engine's reflection asks PostgreSQL's catalogue for more than DuckDB
    provides.
    """
    schema, _, name = table.rpartition(".")
    if engine.dialect.name != "duckdb":
        columns = sa.inspect(engine).get_columns(name, schema or None)
        return {column["name"].lower(): column["type"] for column in columns}
    query = sa.text(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = :name AND table_schema = coalesce(:schema, current_schema()) "
        "ORDER BY ordinal_position"
    )
    with engine.connect() as connection:
        rows = connection.execute(query, {"name": name, "schema": schema or None}).all()
    if not rows:
        raise sa.exc.NoSuchTableError(table)
    return {str(column).lower(): _duckdb_type(str(kind)) for column, kind in rows}


# DuckDB's integer types, as information_schema names them.
_DUCKDB_INTEGERS = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}


class _Declared(sa.types.UserDefinedType[Any]):
    """A DuckDB type the detector reads as it stands, printed under its own name."""

    cache_ok = True

    def __init__(self, name: str):
        self.name = name

    def get_col_spec(self, **_: Any) -> str:
        return self.name


def _duckdb_type(name: str) -> sa.types.TypeEngine[Any]:
    """The SQLAlchemy type of a DuckDB column type, as far as the detector tells them apart.

    >>> [str(_duckdb_type(t)) for t in ("TIMESTAMP WITH TIME ZONE", "DECIMAL(12,2)", "DATE")]
    ['TIMESTAMP', 'NUMERIC', 'DATE']
    """
    base = name.split("(")[0].strip().upper()
    if base.startswith("TIMESTAMP"):
        return sa.TIMESTAMP(timezone="TIME ZONE" in base)
    if base in {"DECIMAL", "NUMERIC", "DOUBLE", "FLOAT", "REAL"}:
        return sa.Numeric()
    if base in _DUCKDB_INTEGERS:
        return sa.Integer()
    return _Declared(name)


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
