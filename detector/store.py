"""Persisted state: the watermark, the alerts and the delivery outbox, in one SQL database.

A tick's alert changes and the notifications they cause are written in one transaction,
so a crash either loses both (the tick is redone after restart) or keeps both (the
outbox delivers them): never a transition without its notification or the other way round.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from detector.alerts import Alert
from detector.errors import DetectorError
from detector.notify.base import Notification
from detector.source import connect

__all__ = ["FencedOut", "OutboxEntry", "StateStore", "StoreError"]

log = logging.getLogger(__name__)

_metadata = sa.MetaData()

_meta = sa.Table(
    "detector_meta",
    _metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

_alerts = sa.Table(
    "detector_alerts",
    _metadata,
    sa.Column("fingerprint", sa.String(32), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)

_outbox = sa.Table(
    "detector_outbox",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("receiver", sa.String(100), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("next_attempt_at", sa.DateTime, nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("delivered_at", sa.DateTime, nullable=True),
    sa.Column("failed_at", sa.DateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.UniqueConstraint("receiver", "idempotency_key", name="uq_detector_outbox_delivery"),
)


class StoreError(DetectorError):
    """The state database could not be read or written."""


class FencedOut(StoreError):
    """A tick was not saved: this replica no longer holds the leader lease."""


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    receiver: str
    notification: Notification
    attempts: int


class StateStore:
    """The detector's own tables (``detector_*``), created on first use."""

    def __init__(self, engine: Engine):
        self.engine = engine
        try:
            _metadata.create_all(engine)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"state.url: cannot open the state database ({exc.__class__.__name__}: "
                f"{str(getattr(exc, 'orig', exc)).splitlines()[0]})"
            ) from exc

    @classmethod
    def open(cls, url: str) -> StateStore:
        return cls(connect(url, read_only=False))

    # --- tick state -------------------------------------------------------------------------

    def load(self) -> tuple[datetime | None, dict[str, Alert]]:
        """The watermark and the alerts as the last committed tick left them."""
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(_meta.c.value).where(_meta.c.key == "watermark")
            ).scalar()
            rows = connection.execute(sa.select(_alerts.c.data)).scalars().all()
        alerts = {}
        for text in rows:
            alert = Alert.from_dict(json.loads(text))
            alerts[alert.fingerprint] = alert
        return (datetime.fromisoformat(value) if value else None), alerts

    def save_tick(
        self,
        watermark: datetime | None,
        alerts: dict[str, Alert],
        deliveries: Iterable[tuple[str, Notification]],
        now: datetime,
        fence: Callable[[sa.Connection], bool] | None = None,
    ) -> int:
        """Commit a tick: watermark, alert states and new outbox entries, all or nothing.

        Returns how many outbox entries were added (a delivery already queued is not
        queued twice). ``fence``, run first in the same transaction, may refuse the write
        (:class:`FencedOut`): the leader lease uses it so that a replica which lost the
        lease mid-tick cannot commit alongside the new leader.
        """
        added = 0
        try:
            with self.engine.begin() as connection:
                if fence is not None and not fence(connection):
                    raise FencedOut("this replica no longer holds the leader lease")
                if watermark is not None:
                    connection.execute(_meta.delete().where(_meta.c.key == "watermark"))
                    connection.execute(
                        _meta.insert().values(key="watermark", value=watermark.isoformat())
                    )
                connection.execute(_alerts.delete())
                if alerts:
                    connection.execute(
                        _alerts.insert(),
                        [
                            {"fingerprint": k, "data": json.dumps(a.to_dict())}
                            for k, a in alerts.items()
                        ],
                    )
                for receiver, notification in deliveries:
                    exists = connection.execute(
                        sa.select(_outbox.c.id).where(
                            _outbox.c.receiver == receiver,
                            _outbox.c.idempotency_key == notification.idempotency_key,
                        )
                    ).first()
                    if exists:
                        continue
                    connection.execute(
                        _outbox.insert().values(
                            receiver=receiver,
                            idempotency_key=notification.idempotency_key,
                            payload=notification.to_json(),
                            created_at=_naive(now),
                            next_attempt_at=_naive(now),
                            attempts=0,
                        )
                    )
                    added += 1
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"cannot save state: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"
            ) from exc
        return added

    # --- outbox -----------------------------------------------------------------------------

    def due(self, now: datetime, limit: int = 100) -> list[OutboxEntry]:
        """Undelivered entries whose next attempt is due, oldest first."""
        query = (
            sa.select(_outbox.c.id, _outbox.c.receiver, _outbox.c.payload, _outbox.c.attempts)
            .where(
                _outbox.c.delivered_at.is_(None),
                _outbox.c.failed_at.is_(None),
                _outbox.c.next_attempt_at <= _naive(now),
            )
            .order_by(_outbox.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            OutboxEntry(row.id, row.receiver, Notification.from_json(row.payload), row.attempts)
            for row in rows
        ]

    def _update(self, entry_id: int, **values: object) -> None:
        with self.engine.begin() as connection:
            connection.execute(_outbox.update().where(_outbox.c.id == entry_id).values(**values))

    def delivered(self, entry: OutboxEntry, now: datetime) -> None:
        self._update(
            entry.id, delivered_at=_naive(now), attempts=entry.attempts + 1, last_error=None
        )

    def retry_later(self, entry: OutboxEntry, at: datetime, error: str) -> None:
        self._update(
            entry.id, next_attempt_at=_naive(at), attempts=entry.attempts + 1, last_error=error
        )

    def given_up(self, entry: OutboxEntry, now: datetime, error: str) -> None:
        self._update(entry.id, failed_at=_naive(now), attempts=entry.attempts + 1, last_error=error)

    def outbox_depth(self) -> int:
        """Entries still waiting to be delivered."""
        query = (
            sa.select(sa.func.count())
            .select_from(_outbox)
            .where(_outbox.c.delivered_at.is_(None), _outbox.c.failed_at.is_(None))
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def notified_since(self, moment: datetime) -> list[Notification]:
        """Notifications queued since ``moment``, once each (not once per receiver), in order."""
        query = (
            sa.select(_outbox.c.idempotency_key, _outbox.c.payload)
            .where(_outbox.c.created_at >= _naive(moment))
            .order_by(_outbox.c.id)
        )
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(query).all()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"cannot read the outbox: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"
            ) from exc
        unique = {row.idempotency_key: row.payload for row in rows}
        return [Notification.from_json(payload) for payload in unique.values()]

    def deliveries(self) -> list[dict[str, object]]:
        """Every outbox entry with its outcome (for `detector outbox` and the tests)."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(_outbox).order_by(_outbox.c.id)).mappings().all()
        return [
            {
                **{k: v for k, v in row.items() if k != "payload"},
                **{
                    k: (_aware(v) if isinstance(v, datetime) else v)
                    for k, v in row.items()
                    if k.endswith("_at") and v is not None
                },
                "event": json.loads(row["payload"])["event"],
            }
            for row in rows
        ]
