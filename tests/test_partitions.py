"""Several replicas sharing the gateways (``ha.partitions``): each ticks the partitions it
holds a lease on, a dead replica's partitions move to the others within the lease TTL, and
every alert reaches the receivers exactly once, whichever replica raised it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from detector.alerts import Alert, Transition, notification_for
from detector.backtest import replay
from detector.config import Config, parse_config
from detector.db import connect
from detector.lateness import Lateness
from detector.model import Counts, Evidence
from detector.notify import build_receivers
from detector.partitions import Scope, partition_of
from detector.rules.quarter_hours import HISTORY_SLOTS, QuarterHourTable
from detector.service.daemon import Daemon
from detector.service.partition_leases import PartitionLeases
from detector.simulate import GatewayProfile, generate
from detector.simulate.arrivals import Arrivals, batched
from detector.source import SqlSource
from detector.store import FencedOut, StateStore
from detector.timeutil import epoch_minute

from .conftest import T0, Clock, PaymentsDb, in_process_daemon
from .http_recorder import HttpRecorder
from .test_evidence_reuse import DAY as SLOW_DAY
from .test_evidence_reuse import END as SLOW_END
from .test_evidence_reuse import _config as _slow_config
from .test_evidence_reuse import _sla, _slow_gateway
from .test_volume_history import DAY as WEEKS_DAY
from .test_volume_history import GATEWAYS as WEEKS_GATEWAYS
from .test_volume_history import _assert_same, _full_read, _insert, _seeded_rows

TTL = timedelta(seconds=30)
PARTITIONS = 3
# Two gateways in each of the three partitions (partition_of checks it below).
GATEWAYS = {"mollie": 0, "klarna": 0, "braintree": 1, "razorpay": 1, "stripe": 2, "adyen": 2}


def test_gateways_hash_to_the_same_partition_on_every_replica() -> None:
    assert {g: partition_of(g, PARTITIONS) for g in GATEWAYS} == GATEWAYS


# --- the leases ---------------------------------------------------------------------------


def _balanced(leases: list[PartitionLeases], clock: Clock, rounds: int = 3) -> list[set[int]]:
    for _ in range(rounds):
        for lease in leases:
            lease.balance(clock.now)
        clock.now += timedelta(seconds=10)
    return [set(lease.held) for lease in leases]


def test_live_replicas_share_the_partitions_and_take_over_a_dead_ones(state_url: str) -> None:
    store = StateStore.open(state_url)
    clock = Clock(T0)
    a, b, c = (PartitionLeases(store.engine, name, TTL, 6) for name in "abc")
    try:
        shares = _balanced([a, b, c], clock)
        assert sorted(len(held) for held in shares) == [2, 2, 2]
        assert set().union(*shares) == set(range(6))
        # Balanced: more passes move nothing.
        assert _balanced([a, b, c], clock) == shares

        # c dies (no release): once its leases expire (4 passes of a and b, 10s apart),
        # a and b split them.
        after = _balanced([a, b], clock, rounds=4)
        assert sorted(len(held) for held in after) == [3, 3]
        assert after[0] | after[1] == set(range(6))
        assert shares[0] <= after[0]  # nothing of theirs moved
        assert shares[1] <= after[1]

        # A replica that joins gets its share as the others give up their surplus.
        d = PartitionLeases(store.engine, "d", TTL, 6)
        joined = _balanced([a, b, d], clock)
        assert sorted(len(held) for held in joined) == [2, 2, 2]
        assert set().union(*joined) == set(range(6))
    finally:
        store.engine.dispose()


def test_a_replica_whose_lease_lapsed_cannot_commit_its_partitions(state_url: str) -> None:
    store = StateStore.open(state_url)
    clock = Clock(T0)
    old, new = (
        PartitionLeases(store.engine, "old", TTL, 2),
        PartitionLeases(store.engine, "new", TTL, 2),
    )
    alert = Alert(
        fingerprint="outage-stripe",
        labels={"rule": "outage", "gateway": "stripe"},
        state="firing",
        severity="critical",
        summary="stripe: outage",
        since=T0,
        active_since=T0,
        last_active=T0,
        evidence=Evidence(),
    )
    try:
        held = old.balance(clock.now)
        assert held == {0, 1}
        # The old holder stalls past its TTL; the new one takes both partitions over.
        clock.now += TTL + timedelta(seconds=1)
        assert new.balance(clock.now) == {0, 1}
        scope = Scope(2, held)
        notification = notification_for(Transition("firing", alert, clock.now), _CONFIG)
        with pytest.raises(FencedOut):
            store.save_tick(
                None,
                {alert.fingerprint: alert},
                [("hook", notification)],
                clock.now,
                fence=lambda connection: old.fence(connection, clock.now, held),
                scope=scope,
            )
        assert store.load()[1] == {}
        assert store.deliveries() == []
    finally:
        store.engine.dispose()


# --- replicas ticking -----------------------------------------------------------------------


def _config(db: PaymentsDb, hook: HttpRecorder, *, pending_for: str = "0s") -> Config:
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table},
            "schedule": {"interval": "1m"},
            "ha": {"partitions": PARTITIONS, "lease_ttl": "30s"},
            "detection": {
                "outage": {"for": pending_for, "keep_firing_for": "0s"},
                "sla_breach": {"enabled": False},
                "no_data": {"enabled": False},
            },
            "receivers": {"hook": {"type": "webhook", "url": hook.url_for("/hook")}},
            "route": {"receivers": ["hook"], "group_interval": "0s"},
        },
        env={},
    )


_CONFIG = parse_config({"source": {"url": "sqlite://", "table": "payments"}}, env={})


@contextmanager
def _replicas(config: Config, state: str, clock: Clock, names: str) -> Iterator[list[Daemon]]:
    with ExitStack() as stack:
        session = stack.enter_context(requests.Session())
        daemons = []
        for name in names:
            source = SqlSource(connect(config.source.url), config.source)
            store = StateStore.open(state)
            stack.callback(source.engine.dispose)
            stack.callback(store.engine.dispose)
            leases = PartitionLeases(store.engine, name, TTL, config.ha.partitions)
            daemons.append(
                Daemon(
                    config,
                    source,
                    store,
                    build_receivers(config, session),
                    clock,
                    partitions=leases,
                )
            )
        yield daemons


def _round(daemons: list[Daemon], clock: Clock) -> None:
    """Every replica ticks and delivers, then a minute passes, in which each renews its
    leases every 20 seconds (as the daemon's lease job does, every third of the TTL)."""
    for daemon in daemons:
        daemon.tick()
    for daemon in daemons:
        daemon.deliver()
    for _ in range(3):
        clock.now += timedelta(seconds=20)
        for daemon in daemons:
            assert daemon.partitions is not None
            daemon.partitions.renew(clock.now)


def _events(hook: HttpRecorder) -> Counter[tuple[str, str]]:
    return Counter((_gateway(r.json()), r.json()["event"]) for r in hook.requests)


def _gateway(body: dict[str, Any]) -> str:
    return str(body["labels"]["gateway"])


def _served(daemon: Daemon) -> set[str]:
    return {h.gateway for h in daemon.snapshot().health}


def test_replicas_split_the_gateways_and_each_alert_is_delivered_once(
    sqlite_db: PaymentsDb, state_url: str
) -> None:
    for gateway in GATEWAYS:
        failed = 10 if gateway in ("klarna", "razorpay", "adyen") else 0
        sqlite_db.steady(
            gateway, T0 - timedelta(minutes=10), minutes=14, per_minute=10, failed=failed
        )
    clock = Clock(T0)
    with HttpRecorder() as hook:
        config = _config(sqlite_db, hook)
        with _replicas(config, state_url, clock, "abc") as daemons:
            for _ in range(4):
                _round(daemons, clock)
            held = [d.partitions_held()["held"] for d in daemons]
            served = [_served(d) for d in daemons]
            health = [d.healthz() for d in daemons]
        events = _events(hook)

    # One partition each, and each replica answers for its own partition's gateways.
    assert sorted(p for h in held for p in h) == [0, 1, 2]
    for partitions, gateways in zip(held, served, strict=True):
        assert gateways == {g for g, p in GATEWAYS.items() if p in partitions}
    assert [code for code, _ in health] == [200, 200, 200]
    assert {body["partitions"]["holders"]["0"] for _, body in health} == {"a"}
    # The three outages fired once each, though their partitions moved from the first
    # replica (which took them all before the others started) to the others.
    assert events == Counter(
        {("klarna", "firing"): 1, ("razorpay", "firing"): 1, ("adyen", "firing"): 1}
    )


def test_a_killed_replicas_pending_incident_is_notified_once_by_the_replica_taking_over(
    sqlite_db: PaymentsDb, state_url: str
) -> None:
    for gateway in GATEWAYS:
        sqlite_db.steady(gateway, T0 - timedelta(minutes=10), minutes=12, per_minute=10)
    clock = Clock(T0)
    with HttpRecorder() as hook:
        config = _config(sqlite_db, hook, pending_for="2m")
        with _replicas(config, state_url, clock, "abc") as daemons:
            for _ in range(3):
                _round(daemons, clock)
            owners = {p: d for d in daemons for p in d.partitions_held()["held"]}
            # Partition 2's replica sees stripe fail and marks the outage pending; then it
            # dies (no release): its lease runs out.
            victim = owners[2]
            alive = [d for d in daemons if d is not victim]
            sqlite_db.steady(
                "stripe", clock.now - timedelta(minutes=1), minutes=5, per_minute=10, failed=10
            )
            for gateway in GATEWAYS.keys() - {"stripe"}:
                sqlite_db.steady(
                    gateway, clock.now - timedelta(minutes=1), minutes=5, per_minute=10
                )
            victim.tick()
            assert [a.state for a in victim.engine.alerts.alerts.values()] == ["pending"]
            pending_since = clock.now
            clock.now += TTL + timedelta(seconds=1)
            _round(alive, clock)  # partition 2 moves: within the TTL plus one interval
            taken = [d for d in alive if 2 in d.partitions_held()["held"]]
            _round(alive, clock)
            _round(alive, clock)
            # stripe recovers.
            sqlite_db.steady("stripe", clock.now - timedelta(minutes=1), minutes=15, per_minute=30)
            for gateway in GATEWAYS.keys() - {"stripe"}:
                sqlite_db.steady(
                    gateway, clock.now - timedelta(minutes=1), minutes=15, per_minute=10
                )
            for _ in range(3):
                _round(alive, clock)
        bodies = [r.json() for r in hook.requests]

    assert len(taken) == 1
    assert [(_gateway(b), b["event"]) for b in bodies] == [
        ("stripe", "firing"),
        ("stripe", "resolved"),
    ]
    # It fired as the pending alert stored by the dead replica said: its condition began
    # before that replica died, and it fired once pending for the outage's two minutes.
    assert datetime.fromisoformat(bodies[0]["since"]) <= pending_since
    assert datetime.fromisoformat(bodies[0]["at"]) >= pending_since + timedelta(minutes=2)


# --- what a partition taken over continues from ---------------------------------------------


class _Spans:
    """A source noting the span (epoch minutes) of every quarter-hourly read, of the
    gateways it is narrowed to (``only``) as well."""

    def __init__(self, source: Any, queries: list[tuple[int, int]] | None = None) -> None:
        self.source = source
        self.queries = [] if queries is None else queries

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def only(self, gateways: Any) -> _Spans:
        return _Spans(self.source.only(gateways), self.queries)

    def quarter_hourly(self, start: datetime, end: datetime) -> Any:
        self.queries.append((epoch_minute(start), epoch_minute(end)))
        return self.source.quarter_hourly(start, end)


def test_a_partition_taken_over_continues_from_its_saved_weeks_reading_only_the_gap(
    sqlite_db: PaymentsDb, state_url: str
) -> None:
    _insert(sqlite_db, _seeded_rows(np.random.default_rng(3), WEEKS_DAY, hours=30))
    clock = Clock(WEEKS_DAY + timedelta(hours=26, minutes=10))
    with HttpRecorder() as hook:
        config = _config(sqlite_db, hook)
        with _replicas(config, state_url, clock, "ab") as (a, b):
            a._source, b._source = _Spans(a._source), _Spans(b._source)
            for _ in range(3):
                _round([a, b], clock)
            # a read the weeks (as one query a day) and b, once a gave it a partition, only
            # the last hour that late rows may still change.
            first_hour = epoch_minute(clock.now) // 60
            assert a._source.queries[0][0] == (first_hour * 4 - HISTORY_SLOTS) * 15
            assert b.partitions_held()["held"]
            assert min(start for start, _ in b._source.queries) >= (first_hour - 1) * 60
            # a dies; two hours later b holds every partition, read the gap alone, and
            # its weeks are those a whole read gives.
            clock.now += timedelta(hours=2)
            b._source.queries.clear()
            _round([b], clock)
            assert b.partitions_held()["held"] == [0, 1, 2]
            history = b.engine.volume_history
            assert history is not None
            assert history.end_hour == first_hour + 2
            assert b._source.queries == [((first_hour - 1) * 60, history.end_hour * 60)]
            whole = _full_read(b._source.source, history.end_hour, config)
            _assert_same(history, whole, list(WEEKS_GATEWAYS))


def test_a_partition_taken_over_keeps_what_was_learnt_of_rows_copied_in_batches(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    adyen = GatewayProfile("adyen", per_minute=10, failure_rate=0.01)
    day = datetime(2026, 11, 17, tzinfo=UTC)
    frame = generate(day - timedelta(days=8), day + timedelta(hours=13), [adyen], seed=12)
    arrivals = Arrivals(sqlite_db.engine, sqlite_db.table, frame, batched(frame, 10, 3))
    clock = Clock(day + timedelta(hours=10))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with HttpRecorder() as hook:
        config = _config(sqlite_db, hook)
        with _replicas(config, state, clock, "ab") as (a, b):
            # a learns of the batches alone (its first ticks may take the minutes not
            # written yet for a drop); then it dies at 11:11 and b takes every partition
            # over at 11:12, the tick before a batch lands.
            for replica, minutes in ((a, 72), (b, 30)):
                sent = len(hook.requests)
                for _ in range(minutes):
                    arrivals.until(clock.now)
                    _round([replica], clock)
            held = b.partitions_held()["held"]
            late = b.engine.late_minutes()
        fired = [r.json()["labels"] for r in hook.requests[sent:] if r.json()["event"] == "firing"]
    assert held == [0, 1, 2]
    assert late is not None
    assert late.max() >= 9
    # Its first ticks already know that the newest ten minutes are not written yet.
    assert fired == []


def test_switching_from_one_leader_to_partitions_does_not_fire_a_resolved_alert_again(
    sqlite_db: PaymentsDb, open_source: Callable[[Config], SqlSource], tmp_path: Path
) -> None:
    _slow_gateway(sqlite_db)
    begin, end = SLOW_DAY + timedelta(hours=15), SLOW_END + timedelta(hours=4)
    with HttpRecorder() as http:
        single = _slow_config(sqlite_db, http.url_for("/hook"))
        replayed = _sla(list(replay(single, open_source(single), begin, end)))
        state = f"sqlite:///{tmp_path / 'state.db'}"
        clock = Clock(begin)
        # One leader resolves the alert (15:32) and stops; the deployment starts again with
        # three partitions before the hour whose thresholds would bring the evidence back.
        with requests.Session() as session, in_process_daemon(single, state, clock, session) as d:
            while clock.now < begin + timedelta(minutes=40):
                d.tick()
                d.deliver()
                clock.now += timedelta(minutes=1)
        partitioned = single.model_copy(
            update={"ha": single.ha.model_copy(update={"partitions": PARTITIONS})}
        )
        with _replicas(partitioned, state, clock, "a") as (replica,):
            while clock.now < end + timedelta(minutes=1):
                _round([replica], clock)
        delivered = [(r.json()["event"], r.json()["at"]) for r in http.requests]
    assert delivered == replayed
    assert [event for event, _ in delivered] == ["firing", "resolved"]


def test_weeks_and_estimates_split_by_partition_join_back_to_the_whole() -> None:
    rng = np.random.default_rng(5)
    names = tuple(GATEWAYS)
    cells = rng.integers(0, 9, size=(5, len(names), HISTORY_SLOTS), dtype=np.int32)
    table = QuarterHourTable(10_000, names, cells)
    parts = [table.only([g for g, p in GATEWAYS.items() if p == k]) for k in range(PARTITIONS)]
    joined = QuarterHourTable.joined(parts)
    rows = [joined.gateways.index(g) for g in names]
    np.testing.assert_array_equal(joined.cells[:, rows], cells)
    # A partition saved an hour later: the joined weeks end at the earlier end, where the
    # next read starts; the hour the later one dropped from its start is empty.
    later = parts[0].updated(parts[0].end_slot + 4, parts[0].end_slot + 4, Counts.empty())
    shifted = QuarterHourTable.joined([later, *parts[1:]])
    assert shifted.end_slot == table.end_slot
    assert shifted.gateways[:2] == ("mollie", "klarna")
    np.testing.assert_array_equal(shifted.cells[:, :2, 4:], cells[:, :2, 4:])
    assert not shifted.cells[:, :2, :4].any()

    lateness = Lateness(cap=3)
    minutes = np.array([[5, 0, 0]] * len(names))
    lateness.observe(list(names), 103, 100, 102, minutes, minutes + np.arange(len(names))[:, None])
    halves = [lateness.only(names[:3]), lateness.only(names[3:])]
    whole = Lateness.joined(halves)
    assert whole.gateways == list(names)
    assert whole.minutes(list(names)).tolist() == lateness.minutes(list(names)).tolist()
