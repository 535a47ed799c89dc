"""The payments table the simulator writes: its columns, types and indexes."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
)
from sqlalchemy.dialects import mysql

__all__ = ["PAYMENT_COLUMNS", "create_schema", "payments_table"]

# MySQL and MariaDB drop the microseconds of a plain DATETIME.
_TIMESTAMP = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def payments_table(table: str) -> Table:
    """The payments table ``table`` (or ``schema.table``), its columns and indexes."""
    schema, _, name = table.rpartition(".")
    return Table(
        name,
        MetaData(),
        Column("id", String(40), primary_key=True),
        Column("created_at", _TIMESTAMP, nullable=False),
        Column("gateway", String(40)),
        Column("status", String(16)),
        Column("error_code", String(40), nullable=True),
        Column("amount", Numeric(12, 2)),
        Column("currency", String(3)),
        Column("method", String(16)),
        Column("country", String(2)),
        Column("latency_ms", Integer, nullable=True),  # NULL while pending
        # Index names are per schema in PostgreSQL, so they carry the table name.
        Index(f"ix_{name}_created_at", "created_at"),
        Index(f"ix_{name}_gateway_created_at", "gateway", "created_at"),
        schema=schema or None,
    )


def create_schema(engine: Engine, table: str = "payments") -> Table:
    """Create the payments table (``table`` or ``schema.table``) and its indexes if missing.

    >>> from sqlalchemy import create_engine, inspect
    >>> engine = create_engine("sqlite://")
    >>> create_schema(engine).name, sorted(inspect(engine).get_table_names())
    ('payments', ['payments'])
    """
    payments = payments_table(table)
    payments.metadata.create_all(engine, checkfirst=True)
    return payments


# The columns of a simulated payments frame are those of the table, in its order.
PAYMENT_COLUMNS = tuple(column.name for column in payments_table("payments").columns)
