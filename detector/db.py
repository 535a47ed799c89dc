"""Database plumbing shared by the payments source, the state store and the lease:
engines pinned to UTC, one-line error text, and table creation that survives a race."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["connect", "create_tables", "error_text"]

# Replicas racing to create the tables: how often one that lost tries again.
_CREATE_ATTEMPTS = 5


def connect(url: str, *, read_only: bool = True) -> Engine:
    """An engine whose sessions run in UTC and, for the payments source, read only."""
    parsed = sa.make_url(url)
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
    engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    guard = {"sqlite": "PRAGMA query_only = ON", "mysql": "SET SESSION TRANSACTION READ ONLY"}
    statement = guard.get("mysql" if backend == "mariadb" else backend)
    if read_only and statement:

        @sa.event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()

    return engine


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
    return (
        str(original).strip().splitlines()[0][:300] if str(original).strip() else type(exc).__name__
    )
