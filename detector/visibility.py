"""What the payments table showed at a past moment: the SQL conditions of
``detector backtest --as-visible``.

With ``source.columns.inserted_at`` a row is visible at moment ``t`` once
``inserted_at <= t``; with ``source.columns.updated_at`` its status counts only once
``updated_at <= t``, and before that it was still pending. This assumes that settling
(pending -> final) is the only update a row gets: a row updated later for another reason
(a refund, a back-office note) reads as pending until then. A NULL insert or update time
reads as "on time": visible from its timestamp, final since it was written.

Only expressions here; :class:`~detector.source.SqlSource` binds the moment (``as_of``)
to every query it runs, so the database still does all the counting.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from detector.config import SourceConfig

__all__ = ["AS_OF", "Visibility"]

# The name of the bound parameter holding the moment the table is read as of.
AS_OF = "as_of"


class Visibility:
    """The conditions that read a payments table as it stood at the bound moment ``as_of``."""

    def __init__(self, config: SourceConfig):
        columns = config.columns
        if columns.inserted_at is None and columns.updated_at is None:
            raise ValueError("reading as visible needs an insert or an update time column")
        self._inserted = (
            sa.column(columns.inserted_at, sa.DateTime()) if columns.inserted_at else None
        )
        self._updated = sa.column(columns.updated_at, sa.DateTime()) if columns.updated_at else None
        # The status a row not settled yet had (the config makes sure there is one).
        self._pending = config.statuses.pending[0] if config.statuses.pending else None

    @property
    def columns(self) -> list[sa.ColumnClause[Any]]:
        """The table's columns these conditions read."""
        return [c for c in (self._inserted, self._updated) if c is not None]

    def visible(self) -> ColumnElement[bool]:
        """Whether a row had been written by ``as_of``."""
        if self._inserted is None:
            return sa.true()
        return sa.or_(self._inserted.is_(None), self._inserted <= _as_of())

    def _settled(self) -> ColumnElement[bool] | None:
        if self._updated is None:
            return None
        return sa.or_(self._updated.is_(None), self._updated <= _as_of())

    def status(self, status: ColumnElement[Any]) -> ColumnElement[Any]:
        """The status a row had at ``as_of``: its own once updated, else pending."""
        settled = self._settled()
        if settled is None or self._pending is None:
            return status
        pending = sa.bindparam("pending_status", self._pending, type_=sa.String())
        return sa.case((settled, status), else_=pending)

    def settled_value(self, value: ColumnElement[Any]) -> ColumnElement[Any]:
        """A value a row gets when it settles (its latency): NULL before ``as_of`` saw it."""
        settled = self._settled()
        if settled is None:
            return value
        return sa.case((settled, value), else_=sa.null())


def _as_of() -> ColumnElement[Any]:
    return sa.bindparam(AS_OF, type_=sa.DateTime())
