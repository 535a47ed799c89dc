"""Persisted state: the watermark, the alerts, the delivery outbox, the silences and the
history of resolved alert episodes, in one SQL database that every replica shares.

A tick's alert changes and the notifications they cause are written in one transaction,
so a crash either loses both (the tick is redone after restart) or keeps both (the
outbox delivers them): never a transition without its notification or the other way round.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import LONGBLOB
from sqlalchemy.engine import Engine

from detector.alerting import Delivery, Silence
from detector.alerts import Alert, Resolution, Transition
from detector.config import LabelMatcher
from detector.db import connect, create_tables, error_text
from detector.errors import DetectorError
from detector.model import Notification
from detector.rules.quarter_hours import QuarterHourTable
from detector.stats.seasonal import SLOTS_PER_HOUR
from detector.timeutil import aware_utc, naive_utc

__all__ = [
    "EPISODE_RETENTION",
    "Episode",
    "FencedOut",
    "HistoryUpdate",
    "OutboxEntry",
    "StateStore",
    "StoreError",
    "store_errors",
]

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
    # Entries of one receiver with the same group key are sent as one message.
    sa.Column("group_key", sa.String(64), nullable=False, default=""),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("next_attempt_at", sa.DateTime, nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("delivered_at", sa.DateTime, nullable=True),
    sa.Column("failed_at", sa.DateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.UniqueConstraint("receiver", "idempotency_key", name="uq_detector_outbox_delivery"),
    sa.Index("ix_detector_outbox_group", "receiver", "group_key"),
)

# One row per attempt at sending an outbox entry: when, how it went, what the receiver said.
_attempts = sa.Table(
    "detector_delivery_attempts",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("outbox_id", sa.Integer, nullable=False, index=True),
    sa.Column("attempted_at", sa.DateTime, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # delivered, retried, failed
    sa.Column("error", sa.Text, nullable=True),
)

_silences = sa.Table(
    "detector_silences",
    _metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("matchers", sa.Text, nullable=False),  # {"match": {...}, "match_re": {...}}
    sa.Column("starts_at", sa.DateTime, nullable=False),
    sa.Column("ends_at", sa.DateTime, nullable=False, index=True),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)


# Resolved episodes are what the monthly SLA report counts breaches from: a year of
# reports, and the month that is still being claimed.
EPISODE_RETENTION = timedelta(days=400)

# One row per alert from its start to its resolution: what the SLA report reads.
_episodes = sa.Table(
    "detector_alert_episodes",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("gateway", sa.String(200), nullable=True),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("fired_at", sa.DateTime, nullable=True),
    sa.Column("resolved_at", sa.DateTime, nullable=False, index=True),
    sa.Index("ix_detector_alert_episodes_rule", "rule", "started_at"),
)

# The volume rules' weeks of quarter hours, an hour a row (QuarterHourTable.pack_hour), and
# the gateways those rows number. The meta keys history_end (the epoch quarter hour the
# weeks end at) and history_source (what they were read from) go with them.
_quarter_hours = sa.Table(
    "detector_quarter_hours",
    _metadata,
    sa.Column("hour", sa.BigInteger, primary_key=True, autoincrement=False),  # epoch hour
    sa.Column(
        "data", sa.LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb"), nullable=False
    ),
)

# Meta keys of what the engine learnt of the payments table (how late its rows arrive, how
# fast they settle): "learnt." and the estimate's name, a compressed text each.
_LEARNT_PREFIX = "learnt."

_history_gateways = sa.Table(
    "detector_history_gateways",
    _metadata,
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class Episode:
    """An alert from the estimated start of its condition to its resolution (``None``:
    still firing)."""

    rule: str
    labels: dict[str, str]
    severity: str
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class HistoryUpdate:
    """The quarter hours to save with a tick: ``table`` from epoch hour ``first_hour`` on
    (what was read since the last save), read from the source ``key`` names."""

    key: str
    table: QuarterHourTable
    first_hour: int


class StoreError(DetectorError):
    """The state database could not be read or written."""


class FencedOut(StoreError):
    """A tick was not saved: this replica no longer holds the leader lease."""


@contextmanager
def store_errors(action: str) -> Iterator[None]:
    """Raise a database error of the block as :class:`StoreError` ``cannot {action}: ...``,
    with the first line of the database's message (never the SQL or its parameters)."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot {action}: {error_text(exc)}") from exc


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    receiver: str
    notification: Notification
    attempts: int
    group_key: str = ""


def _history_meta(connection: sa.Connection) -> dict[str, str]:
    keys = ["history_end", "history_source"]
    found = connection.execute(sa.select(_meta.c.key, _meta.c.value).where(_meta.c.key.in_(keys)))
    return {str(key): str(value) for key, value in found}


class StateStore:
    """The detector's own tables (``detector_*``), created on first use."""

    def __init__(self, engine: Engine):
        self.engine = engine
        try:
            create_tables(engine, _metadata)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"state.url: cannot open the state database ({exc.__class__.__name__}: "
                f"{error_text(exc)})"
            ) from exc

    @classmethod
    def open(cls, url: str, query_timeout: timedelta | None = None) -> StateStore:
        """The store at ``url``; with ``query_timeout`` (``state.query_timeout``) a query
        that outlives it fails as a :class:`StoreError` instead of holding its caller."""
        return cls(connect(url, read_only=False, query_timeout=query_timeout))

    # --- tick state -------------------------------------------------------------------------

    def load(self) -> tuple[datetime | None, dict[str, Alert]]:
        """The watermark and the alerts as the last committed tick left them."""
        with store_errors("read the state database"), self.engine.connect() as connection:
            value = connection.execute(
                sa.select(_meta.c.value).where(_meta.c.key == "watermark")
            ).scalar()
            rows = connection.execute(sa.select(_alerts.c.data)).scalars().all()
        alerts = {}
        for text in rows:
            alert = Alert.from_dict(json.loads(text))
            alerts[alert.fingerprint] = alert
        return (datetime.fromisoformat(value) if value else None), alerts

    def resolutions(self) -> dict[str, Resolution]:
        """When each alert whose evidence may still be in the count window last resolved."""
        with store_errors("read the state database"), self.engine.connect() as connection:
            value = connection.execute(
                sa.select(_meta.c.value).where(_meta.c.key == "resolved")
            ).scalar()
        marks = json.loads(value) if value else {}
        return {key: Resolution.from_dict(mark) for key, mark in marks.items()}

    def save_tick(
        self,
        watermark: datetime | None,
        alerts: dict[str, Alert],
        deliveries: Iterable[Delivery | tuple[str, Notification]],
        now: datetime,
        fence: Callable[[sa.Connection], bool] | None = None,
        resolved: dict[str, Resolution] | None = None,
        transitions: Sequence[Transition] = (),
        history: HistoryUpdate | None = None,
        learnt: dict[str, str] | None = None,
    ) -> int:
        """Commit a tick: watermark, alert states, new outbox entries and the episodes its
        ``transitions`` resolved, all or nothing.

        ``learnt``: what the engine learnt of its rows' lateness and settlement
        (:meth:`~detector.engine.Engine.learnt`), replacing what was saved.

        Returns how many outbox entries were added (a delivery already queued is not
        queued twice). ``fence``, run first in the same transaction, may refuse the write
        (:class:`FencedOut`): the leader lease uses it so that a replica which lost the
        lease mid-tick cannot commit alongside the new leader.
        """
        with store_errors("save state"), self.engine.begin() as connection:
            if fence is not None and not fence(connection):
                raise FencedOut("this replica no longer holds the leader lease")
            if watermark is not None:
                connection.execute(_meta.delete().where(_meta.c.key == "watermark"))
                connection.execute(
                    _meta.insert().values(key="watermark", value=watermark.isoformat())
                )
            if resolved is not None:
                marks = {key: mark.to_dict() for key, mark in resolved.items()}
                connection.execute(_meta.delete().where(_meta.c.key == "resolved"))
                connection.execute(_meta.insert().values(key="resolved", value=json.dumps(marks)))
            connection.execute(_alerts.delete())
            if alerts:
                connection.execute(
                    _alerts.insert(),
                    [
                        {"fingerprint": k, "data": json.dumps(a.to_dict())}
                        for k, a in alerts.items()
                    ],
                )
            if history is not None:
                self._save_history(connection, history)
            if learnt:
                keys = [_LEARNT_PREFIX + name for name in learnt]
                connection.execute(_meta.delete().where(_meta.c.key.in_(keys)))
                connection.execute(
                    _meta.insert(),
                    [{"key": _LEARNT_PREFIX + k, "value": v} for k, v in learnt.items()],
                )
            rows = self._outbox_rows(connection, [Delivery(*item) for item in deliveries], now)
            if rows:
                connection.execute(_outbox.insert(), rows)
            self._record_episodes(connection, transitions, now)
        return len(rows)

    @staticmethod
    def _record_episodes(
        connection: sa.Connection, transitions: Sequence[Transition], now: datetime
    ) -> None:
        """Store the episodes that resolved; those older than :data:`EPISODE_RETENTION`
        go when new ones come (so a quiet tick writes nothing)."""
        ended = [t.alert for t in transitions if t.event == "resolved"]
        if not ended:
            return
        connection.execute(
            _episodes.insert(),
            [
                {
                    "fingerprint": alert.fingerprint,
                    "rule": alert.rule,
                    "gateway": alert.labels.get("gateway"),
                    "labels": json.dumps(alert.labels, sort_keys=True),
                    "severity": alert.severity,
                    "started_at": naive_utc(alert.since),
                    "fired_at": naive_utc(alert.fired_at) if alert.fired_at else None,
                    "resolved_at": naive_utc(now),
                }
                for alert in ended
            ],
        )
        connection.execute(
            _episodes.delete().where(_episodes.c.resolved_at < naive_utc(now - EPISODE_RETENTION))
        )

    def episodes(self, rules: Sequence[str], start: datetime, end: datetime) -> list[Episode]:
        """Episodes of these rules that overlap ``[start, end)``: the resolved ones stored,
        then the alerts firing now; each by start time."""
        query = (
            sa.select(_episodes)
            .where(
                _episodes.c.rule.in_(list(rules)),
                _episodes.c.started_at < naive_utc(end),
                _episodes.c.resolved_at > naive_utc(start),
            )
            .order_by(_episodes.c.started_at, _episodes.c.id)
        )
        with store_errors("read the alert history"), self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        found = [
            Episode(
                row["rule"],
                json.loads(row["labels"]),
                row["severity"],
                aware_utc(row["started_at"]),
                aware_utc(row["resolved_at"]),
            )
            for row in rows
        ]
        _, alerts = self.load()
        found += sorted(
            (
                Episode(alert.rule, dict(alert.labels), alert.severity, alert.since, None)
                for alert in alerts.values()
                if alert.state == "firing" and alert.rule in rules and alert.since < end
            ),
            key=lambda episode: episode.started_at,
        )
        return found

    def load_learnt(self) -> dict[str, str]:
        """What the engine learnt of its rows' lateness and settlement, as last saved."""
        with store_errors("read the state database"), self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(_meta.c.key, _meta.c.value).where(_meta.c.key.startswith(_LEARNT_PREFIX))
            ).all()
        return {str(key)[len(_LEARNT_PREFIX) :]: str(value) for key, value in rows}

    # --- the volume history ----------------------------------------------------------------

    def load_history(self, key: str) -> QuarterHourTable | None:
        """The weeks of quarter hours as last saved, if read from the source ``key`` names."""
        with store_errors("read the volume history"), self.engine.connect() as connection:
            meta = _history_meta(connection)
            if meta.get("history_source") != key or "history_end" not in meta:
                return None
            names = connection.execute(
                sa.select(_history_gateways.c.name).order_by(_history_gateways.c.number)
            )
            hours = connection.execute(sa.select(_quarter_hours.c.hour, _quarter_hours.c.data))
            return QuarterHourTable.unpack(
                int(meta["history_end"]),
                list(names.scalars()),
                [(int(hour), bytes(data)) for hour, data in hours],
            )

    @staticmethod
    def _save_history(connection: sa.Connection, update: HistoryUpdate) -> None:
        """Replace the saved hours from ``update.first_hour`` (or from where the saved weeks
        end, if earlier) and drop those older than the table's weeks."""
        table, hours = update.table, update.table.hours()
        meta = _history_meta(connection)
        first = max(update.first_hour, hours.start)
        numbers: dict[str, int] = {}
        if meta.get("history_source") != update.key or "history_end" not in meta:
            connection.execute(_quarter_hours.delete())
            connection.execute(_history_gateways.delete())
            first = hours.start
        else:
            first = max(min(first, int(meta["history_end"]) // SLOTS_PER_HOUR), hours.start)
            known = connection.execute(
                sa.select(_history_gateways.c.name, _history_gateways.c.number)
            )
            numbers = {str(name): int(number) for name, number in known}
        connection.execute(
            _quarter_hours.delete().where(
                (_quarter_hours.c.hour < hours.start) | (_quarter_hours.c.hour >= first)
            )
        )
        before = len(numbers)
        rows = [
            {"hour": hour, "data": table.pack_hour(hour, numbers)}
            for hour in range(first, hours.stop)
        ]
        if rows:
            connection.execute(_quarter_hours.insert(), rows)
        added = [{"number": n, "name": name} for name, n in numbers.items() if n >= before]
        if added:
            connection.execute(_history_gateways.insert(), added)
        connection.execute(_meta.delete().where(_meta.c.key.in_(["history_end", "history_source"])))
        connection.execute(
            _meta.insert(),
            [
                {"key": "history_end", "value": str(table.end_slot)},
                {"key": "history_source", "value": update.key},
            ],
        )

    def _outbox_rows(
        self, connection: sa.Connection, deliveries: list[Delivery], now: datetime
    ) -> list[dict[str, object]]:
        """New outbox rows: deliveries not queued before, each due when its group is."""
        queued: set[tuple[str, str]] = set()
        keys = sorted({d.notification.idempotency_key for d in deliveries})
        for start in range(0, len(keys), 500):  # bound the number of bound parameters
            chunk = keys[start : start + 500]
            found = connection.execute(
                sa.select(_outbox.c.receiver, _outbox.c.idempotency_key).where(
                    _outbox.c.idempotency_key.in_(chunk)
                )
            )
            queued.update((row.receiver, row.idempotency_key) for row in found)
        due: dict[tuple[str, str], datetime] = {}
        rows: list[dict[str, object]] = []
        for delivery in deliveries:
            key = delivery.notification.idempotency_key
            if (delivery.receiver, key) in queued:
                continue
            queued.add((delivery.receiver, key))
            group = (delivery.receiver, delivery.group_key)
            if group not in due:  # later entries of a group join its first one
                due[group] = self._send_at(connection, delivery, now)
            rows.append(
                {
                    "receiver": delivery.receiver,
                    "group_key": delivery.group_key,
                    "idempotency_key": key,
                    "payload": delivery.notification.to_json(),
                    "created_at": naive_utc(now),
                    "next_attempt_at": naive_utc(due[group]),
                    "attempts": 0,
                }
            )
        return rows

    @staticmethod
    def _send_at(connection: sa.Connection, delivery: Delivery, now: datetime) -> datetime:
        """When a new entry goes out: with its group's waiting batch, else per group timing."""
        in_group = (_outbox.c.receiver == delivery.receiver) & (
            _outbox.c.group_key == delivery.group_key
        )
        waiting = connection.execute(
            sa.select(sa.func.min(_outbox.c.next_attempt_at)).where(
                in_group, _outbox.c.delivered_at.is_(None), _outbox.c.failed_at.is_(None)
            )
        ).scalar()
        if waiting is not None:
            return aware_utc(waiting)
        last_sent = connection.execute(
            sa.select(sa.func.max(_outbox.c.delivered_at)).where(in_group)
        ).scalar()
        if last_sent is not None and now - aware_utc(last_sent) < delivery.group_interval:
            return aware_utc(last_sent) + delivery.group_interval
        return now + delivery.group_wait

    # --- outbox -----------------------------------------------------------------------------

    def due(self, now: datetime, limit: int = 100) -> list[OutboxEntry]:
        """Undelivered entries whose next attempt is due, oldest first."""
        query = (
            sa.select(
                _outbox.c.id,
                _outbox.c.receiver,
                _outbox.c.payload,
                _outbox.c.attempts,
                _outbox.c.group_key,
            )
            .where(
                _outbox.c.delivered_at.is_(None),
                _outbox.c.failed_at.is_(None),
                _outbox.c.next_attempt_at <= naive_utc(now),
            )
            .order_by(_outbox.c.id)
            .limit(limit)
        )
        with store_errors("read the outbox"), self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            OutboxEntry(
                row.id,
                row.receiver,
                Notification.from_json(row.payload),
                row.attempts,
                row.group_key,
            )
            for row in rows
        ]

    def _update(
        self,
        entries: Sequence[OutboxEntry],
        now: datetime,
        outcome: str,
        error: str | None,
        **values: object,
    ) -> None:
        """Record one attempt at sending ``entries`` (one message) in one transaction."""
        with store_errors("record a delivery attempt"), self.engine.begin() as connection:
            for entry in entries:
                connection.execute(
                    _outbox.update()
                    .where(_outbox.c.id == entry.id)
                    .values(attempts=entry.attempts + 1, last_error=error, **values)
                )
            connection.execute(
                _attempts.insert(),
                [
                    {
                        "outbox_id": entry.id,
                        "attempted_at": naive_utc(now),
                        "outcome": outcome,
                        "error": error,
                    }
                    for entry in entries
                ],
            )

    def delivered(self, entries: Sequence[OutboxEntry], now: datetime) -> None:
        self._update(entries, now, "delivered", None, delivered_at=naive_utc(now))

    def retry_later(
        self, entries: Sequence[OutboxEntry], now: datetime, at: datetime, error: str
    ) -> None:
        self._update(entries, now, "retried", error, next_attempt_at=naive_utc(at))

    def given_up(self, entries: Sequence[OutboxEntry], now: datetime, error: str) -> None:
        self._update(entries, now, "failed", error, failed_at=naive_utc(now))

    def outbox_depth(self) -> int:
        """Entries still waiting to be delivered."""
        query = (
            sa.select(sa.func.count())
            .select_from(_outbox)
            .where(_outbox.c.delivered_at.is_(None), _outbox.c.failed_at.is_(None))
        )
        with store_errors("read the outbox"), self.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def notified_since(self, moment: datetime) -> list[Notification]:
        """Notifications queued since ``moment``, once each (not once per receiver), in order."""
        query = (
            sa.select(_outbox.c.idempotency_key, _outbox.c.payload)
            .where(_outbox.c.created_at >= naive_utc(moment))
            .order_by(_outbox.c.id)
        )
        with store_errors("read the outbox"), self.engine.connect() as connection:
            rows = connection.execute(query).all()
        unique = {row.idempotency_key: row.payload for row in rows}
        return [Notification.from_json(payload) for payload in unique.values()]

    def deliveries(self) -> list[dict[str, Any]]:
        """Every outbox entry with its outcome and ``history``, the list of its attempts as
        ``(time, outcome, error)`` (for `detector outbox` and the tests)."""
        with store_errors("read the outbox"), self.engine.connect() as connection:
            rows = connection.execute(sa.select(_outbox).order_by(_outbox.c.id)).mappings().all()
            attempts = connection.execute(sa.select(_attempts).order_by(_attempts.c.id)).mappings()
            history: dict[int, list[tuple[datetime, str, str | None]]] = {}
            for attempt in attempts:
                history.setdefault(attempt["outbox_id"], []).append(
                    (aware_utc(attempt["attempted_at"]), attempt["outcome"], attempt["error"])
                )
        return [
            {
                **{k: v for k, v in row.items() if k != "payload"},
                **{
                    k: (aware_utc(v) if isinstance(v, datetime) else v)
                    for k, v in row.items()
                    if k.endswith("_at") and v is not None
                },
                "event": json.loads(row["payload"])["event"],
                "labels": json.loads(row["payload"])["labels"],
                "history": history.get(row["id"], []),
            }
            for row in rows
        ]

    # --- silences ---------------------------------------------------------------------------

    def add_silence(
        self,
        match: dict[str, str],
        match_re: dict[str, str],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
        matchers: Sequence[LabelMatcher] = (),
    ) -> Silence:
        silence = Silence(
            uuid.uuid4().hex[:12],
            match,
            match_re,
            starts_at,
            ends_at,
            created_by,
            comment,
            tuple(matchers),
        )
        stored = {"match": match, "match_re": match_re, "matchers": [str(m) for m in matchers]}
        with store_errors("save the silence"), self.engine.begin() as connection:
            connection.execute(
                _silences.insert().values(
                    id=silence.id,
                    matchers=json.dumps(stored, sort_keys=True),
                    starts_at=naive_utc(starts_at),
                    ends_at=naive_utc(ends_at),
                    created_by=created_by,
                    comment=comment,
                    created_at=naive_utc(datetime.now(UTC)),
                )
            )
        return silence

    def silences(self, *, not_ended_at: datetime | None = None) -> list[Silence]:
        """Every silence, or those not yet ended at ``not_ended_at``, by start time."""
        query = sa.select(_silences).order_by(_silences.c.starts_at, _silences.c.id)
        if not_ended_at is not None:
            query = query.where(_silences.c.ends_at > naive_utc(not_ended_at))
        with store_errors("read silences"), self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        found = []
        for row in rows:
            matchers = json.loads(row["matchers"])
            found.append(
                Silence(
                    row["id"],
                    matchers["match"],
                    matchers["match_re"],
                    aware_utc(row["starts_at"]),
                    aware_utc(row["ends_at"]),
                    row["created_by"],
                    row["comment"],
                    # Silences stored before matcher strings existed have none.
                    tuple(map(LabelMatcher.model_validate, matchers.get("matchers", ()))),
                )
            )
        return found

    def expire_silence(self, silence_id: str, now: datetime) -> bool:
        """End a silence now; False if there is no such silence or it has ended already."""
        with store_errors("expire the silence"), self.engine.begin() as connection:
            result = connection.execute(
                _silences.update()
                .where(_silences.c.id == silence_id, _silences.c.ends_at > naive_utc(now))
                .values(ends_at=naive_utc(now))
            )
        return bool(result.rowcount)
