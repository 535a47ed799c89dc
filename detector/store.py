"""Persisted state: the watermark, the alerts, the delivery outbox, the silences and the
history of resolved alert episodes, in one SQL database that every replica shares.

A tick's alert changes and the notifications they cause are written in one transaction,
so a crash either loses both (the tick is redone after restart) or keeps both (the
outbox delivers them): never a transition without its notification or the other way round.

The tables are declared in :mod:`detector.store_tables`; the volume history and the learnt
estimates a tick saves with it are read and written by :mod:`detector.store_history`.
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
from sqlalchemy.engine import Engine

from detector import store_history
from detector import store_tables as tables
from detector.alerting import Delivery, Silence
from detector.alerts import Alert, Resolution, Transition
from detector.config import LabelMatcher
from detector.db import connect, create_tables, error_text
from detector.errors import DetectorError
from detector.model import Notification
from detector.partitions import Scope, owner
from detector.rules.quarter_hours import QuarterHourTable
from detector.store_history import HistoryUpdate
from detector.timeutil import aware_utc, naive_utc

__all__ = [
    "EPISODE_RETENTION",
    "Episode",
    "FencedOut",
    "OutboxEntry",
    "StateStore",
    "StoreError",
    "store_errors",
]

log = logging.getLogger(__name__)

# Resolved episodes are what the monthly SLA report counts breaches from: a year of
# reports, and the month that is still being claimed.
EPISODE_RETENTION = timedelta(days=400)


@dataclass(frozen=True)
class Episode:
    """An alert from the estimated start of its condition to its resolution (``None``:
    still firing)."""

    rule: str
    labels: dict[str, str]
    severity: str
    started_at: datetime
    ended_at: datetime | None


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


def _resolved_keys(scope: Scope | None) -> list[str]:
    """The meta rows of the resolution marks: one, or one per held partition."""
    if scope is None:
        return ["resolved"]
    return [f"resolved-p{p}" for p in sorted(scope.held)]


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    receiver: str
    notification: Notification
    attempts: int
    group_key: str = ""


class StateStore:
    """The detector's own tables (``detector_*``), created on first use."""

    def __init__(self, engine: Engine):
        self.engine = engine
        try:
            create_tables(engine, tables.metadata)
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
                sa.select(tables.meta.c.value).where(tables.meta.c.key == "watermark")
            ).scalar()
            rows = connection.execute(sa.select(tables.alerts.c.data)).scalars().all()
        alerts = {}
        for text in rows:
            alert = Alert.from_dict(json.loads(text))
            alerts[alert.fingerprint] = alert
        return (datetime.fromisoformat(value) if value else None), alerts

    def resolutions(self, scope: Scope | None = None) -> dict[str, Resolution]:
        """When each alert whose evidence may still be in the count window last resolved
        (with ``scope``: of the partitions it holds)."""
        keys = _resolved_keys(scope)
        # A partition not ticked yet since the deployment went from one leader to
        # partitions continues from the leader's marks of its alerts.
        wanted = keys if scope is None else [*keys, "resolved"]
        with store_errors("read the state database"), self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(tables.meta.c.key, tables.meta.c.value).where(
                    tables.meta.c.key.in_(wanted)
                )
            ).all()
        found = {str(key): json.loads(value) for key, value in rows}
        marks = {k: v for key in keys for k, v in found.get(key, {}).items()}
        if scope is not None and "resolved" in found:
            unticked = {
                p for p, key in zip(sorted(scope.held), keys, strict=True) if key not in found
            }
            marks.update(
                (k, v)
                for k, v in found["resolved"].items()
                if owner(v["labels"], scope.count) in unticked
            )
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
        history: Sequence[HistoryUpdate] = (),
        learnt: dict[str, str] | None = None,
        scope: Scope | None = None,
    ) -> int:
        """Commit a tick: watermark, alert states, new outbox entries and the episodes its
        ``transitions`` resolved, all or nothing.

        ``history``: the weeks of quarter hours read since the last save (one update, or
        one per partition held). ``learnt``: what the engine learnt of its rows' lateness
        and settlement (:meth:`~detector.engine.Engine.learnt`), replacing what was saved.

        Returns how many outbox entries were added (a delivery already queued is not
        queued twice). ``fence``, run first in the same transaction, may refuse the write
        (:class:`FencedOut`): the leader lease uses it so that a replica which lost the
        lease mid-tick cannot commit alongside the new leader.

        With ``scope`` (``ha.partitions``) the tick replaces the alerts and resolution marks
        of the partitions held alone; the other replicas' rows stay as they are.
        """
        with store_errors("save state"), self.engine.begin() as connection:
            if fence is not None and not fence(connection):
                raise FencedOut("this replica no longer holds the leases it ticked for")
            if scope is not None:
                self._save_partitions(connection, scope, alerts, resolved or {})
                resolved = None
            elif watermark is not None:
                connection.execute(tables.meta.delete().where(tables.meta.c.key == "watermark"))
                connection.execute(
                    tables.meta.insert().values(key="watermark", value=watermark.isoformat())
                )
            if resolved is not None:
                marks = {key: mark.to_dict() for key, mark in resolved.items()}
                connection.execute(tables.meta.delete().where(tables.meta.c.key == "resolved"))
                connection.execute(
                    tables.meta.insert().values(key="resolved", value=json.dumps(marks))
                )
            if scope is None:
                connection.execute(tables.alerts.delete())
            if alerts:
                connection.execute(
                    tables.alerts.insert(),
                    [
                        {"fingerprint": k, "data": json.dumps(a.to_dict())}
                        for k, a in alerts.items()
                    ],
                )
            for update in history:
                store_history.save_history(connection, update)
            if learnt:
                store_history.save_learnt(connection, learnt)
            rows = self._outbox_rows(connection, [Delivery(*item) for item in deliveries], now)
            if rows:
                connection.execute(tables.outbox.insert(), rows)
            self._record_episodes(connection, transitions, now)
        return len(rows)

    @staticmethod
    def _save_partitions(
        connection: sa.Connection,
        scope: Scope,
        alerts: dict[str, Alert],
        resolved: dict[str, Resolution],
    ) -> None:
        """Clear the held partitions' alerts (for the caller to insert ``alerts``) and write
        their resolution marks, a meta row per partition so that replicas never rewrite
        each other's. The watermark is not saved: each replica reads its own."""
        stored = connection.execute(sa.select(tables.alerts.c.fingerprint, tables.alerts.c.data))
        held = [
            row.fingerprint for row in stored if scope.owns(json.loads(row.data).get("labels", {}))
        ]
        for start in range(0, len(held), 500):  # bound the number of bound parameters
            connection.execute(
                tables.alerts.delete().where(
                    tables.alerts.c.fingerprint.in_(held[start : start + 500])
                )
            )
        by_partition: dict[int, dict[str, Any]] = {p: {} for p in scope.held}
        for key, mark in resolved.items():
            partition = owner(mark.labels, scope.count)
            if partition in by_partition:
                by_partition[partition][key] = mark.to_dict()
        connection.execute(tables.meta.delete().where(tables.meta.c.key.in_(_resolved_keys(scope))))
        if by_partition:
            connection.execute(
                tables.meta.insert(),
                [
                    {"key": f"resolved-p{p}", "value": json.dumps(marks)}
                    for p, marks in sorted(by_partition.items())
                ],
            )

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
            tables.episodes.insert(),
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
            tables.episodes.delete().where(
                tables.episodes.c.resolved_at < naive_utc(now - EPISODE_RETENTION)
            )
        )

    def episodes(self, rules: Sequence[str], start: datetime, end: datetime) -> list[Episode]:
        """Episodes of these rules that overlap ``[start, end)``: the resolved ones stored,
        then the alerts firing now; each by start time."""
        query = (
            sa.select(tables.episodes)
            .where(
                tables.episodes.c.rule.in_(list(rules)),
                tables.episodes.c.started_at < naive_utc(end),
                tables.episodes.c.resolved_at > naive_utc(start),
            )
            .order_by(tables.episodes.c.started_at, tables.episodes.c.id)
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
            return store_history.load_learnt(connection)

    # --- the gateways of ha.partitions ------------------------------------------------------

    def known_gateways(self) -> list[str]:
        """The gateways seen in the payments so far (``ha.partitions``'s discovery)."""
        with store_errors("read the state database"), self.engine.connect() as connection:
            value = connection.execute(
                sa.select(tables.meta.c.value).where(tables.meta.c.key == "gateways")
            ).scalar()
        return list(json.loads(value)) if value else []

    def add_gateways(self, names: Iterable[str]) -> list[str]:
        """Add ``names`` to :meth:`known_gateways`; all of them after it."""
        with store_errors("save the gateways seen"), self.engine.begin() as connection:
            value = connection.execute(
                sa.select(tables.meta.c.value).where(tables.meta.c.key == "gateways")
            ).scalar()
            known = set(json.loads(value)) if value else set()
            merged = sorted(known | set(names))
            if len(merged) > len(known):
                connection.execute(tables.meta.delete().where(tables.meta.c.key == "gateways"))
                connection.execute(
                    tables.meta.insert().values(key="gateways", value=json.dumps(merged))
                )
        return merged

    # --- the volume history ----------------------------------------------------------------

    def load_history(self, key: str, partition: int | None = None) -> QuarterHourTable | None:
        """The weeks of quarter hours as last saved (with ``ha.partitions``, of
        ``partition``), if read from the source ``key`` names."""
        with store_errors("read the volume history"), self.engine.connect() as connection:
            return store_history.load_history(connection, key, partition)

    def _outbox_rows(
        self, connection: sa.Connection, deliveries: list[Delivery], now: datetime
    ) -> list[dict[str, object]]:
        """New outbox rows: deliveries not queued before, each due when its group is."""
        queued: set[tuple[str, str]] = set()
        keys = sorted({d.notification.idempotency_key for d in deliveries})
        for start in range(0, len(keys), 500):  # bound the number of bound parameters
            chunk = keys[start : start + 500]
            found = connection.execute(
                sa.select(tables.outbox.c.receiver, tables.outbox.c.idempotency_key).where(
                    tables.outbox.c.idempotency_key.in_(chunk)
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
        in_group = (tables.outbox.c.receiver == delivery.receiver) & (
            tables.outbox.c.group_key == delivery.group_key
        )
        waiting = connection.execute(
            sa.select(sa.func.min(tables.outbox.c.next_attempt_at)).where(
                in_group,
                tables.outbox.c.delivered_at.is_(None),
                tables.outbox.c.failed_at.is_(None),
            )
        ).scalar()
        if waiting is not None:
            return aware_utc(waiting)
        last_sent = connection.execute(
            sa.select(sa.func.max(tables.outbox.c.delivered_at)).where(in_group)
        ).scalar()
        if last_sent is not None and now - aware_utc(last_sent) < delivery.group_interval:
            return aware_utc(last_sent) + delivery.group_interval
        return now + delivery.group_wait

    # --- outbox -----------------------------------------------------------------------------

    def due(self, now: datetime, limit: int = 100) -> list[OutboxEntry]:
        """Undelivered entries whose next attempt is due, oldest first."""
        query = (
            sa.select(
                tables.outbox.c.id,
                tables.outbox.c.receiver,
                tables.outbox.c.payload,
                tables.outbox.c.attempts,
                tables.outbox.c.group_key,
            )
            .where(
                tables.outbox.c.delivered_at.is_(None),
                tables.outbox.c.failed_at.is_(None),
                tables.outbox.c.next_attempt_at <= naive_utc(now),
            )
            .order_by(tables.outbox.c.id)
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
                    tables.outbox.update()
                    .where(tables.outbox.c.id == entry.id)
                    .values(attempts=entry.attempts + 1, last_error=error, **values)
                )
            connection.execute(
                tables.attempts.insert(),
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
            .select_from(tables.outbox)
            .where(tables.outbox.c.delivered_at.is_(None), tables.outbox.c.failed_at.is_(None))
        )
        with store_errors("read the outbox"), self.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def notified_since(self, moment: datetime) -> list[Notification]:
        """Notifications queued since ``moment``, once each (not once per receiver), in order."""
        query = (
            sa.select(tables.outbox.c.idempotency_key, tables.outbox.c.payload)
            .where(tables.outbox.c.created_at >= naive_utc(moment))
            .order_by(tables.outbox.c.id)
        )
        with store_errors("read the outbox"), self.engine.connect() as connection:
            rows = connection.execute(query).all()
        unique = {row.idempotency_key: row.payload for row in rows}
        return [Notification.from_json(payload) for payload in unique.values()]

    def deliveries(self) -> list[dict[str, Any]]:
        """Every outbox entry with its outcome and ``history``, the list of its attempts as
        ``(time, outcome, error)`` (for `detector outbox` and the tests)."""
        with store_errors("read the outbox"), self.engine.connect() as connection:
            rows = (
                connection.execute(sa.select(tables.outbox).order_by(tables.outbox.c.id))
                .mappings()
                .all()
            )
            attempts = connection.execute(
                sa.select(tables.attempts).order_by(tables.attempts.c.id)
            ).mappings()
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
                tables.silences.insert().values(
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
        query = sa.select(tables.silences).order_by(
            tables.silences.c.starts_at, tables.silences.c.id
        )
        if not_ended_at is not None:
            query = query.where(tables.silences.c.ends_at > naive_utc(not_ended_at))
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
                tables.silences.update()
                .where(
                    tables.silences.c.id == silence_id, tables.silences.c.ends_at > naive_utc(now)
                )
                .values(ends_at=naive_utc(now))
            )
        return bool(result.rowcount)
