"""A table written as production writes it, replayed row by row in simulated time through the
daemon's own tick: the live alerts match the backtest of the final table, and
``detector backtest --as-visible`` reproduces the live replay exactly from the insert and
update times."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from detector.alerts import notification_for
from detector.backtest import replay, replay_as_visible
from detector.cli import main
from detector.config import Config, parse_config
from detector.db import connect
from detector.engine import Engine
from detector.model import Notification
from detector.simulate import GatewayProfile, Incident, generate
from detector.simulate.arrivals import batched
from detector.simulate.schema import payments_table
from detector.source import SqlSource

from .conftest import PaymentsDb

DAY = datetime(2026, 11, 17, tzinfo=UTC)  # a Tuesday
# Ticks run from WARM (a daemon that has run for half an hour has seen how late rows land)
# to END; alerts are compared from BEGIN on.
WARM, BEGIN, END = (DAY + timedelta(hours=h) for h in (9.5, 10, 13))
# stripe's failed rows are written by a reaper up to 2 minutes late, and it fails outright
# for 15 minutes; adyen writes every payment pending and settles it 0.5-2 minutes later
# (failures and successes alike), and fails 12% for 45 minutes; paypal's rows are copied
# in batches every 5 minutes.
REAPED = GatewayProfile("stripe", per_minute=20, failure_rate=0.015)
SETTLING = GatewayProfile("adyen", per_minute=10, failure_rate=0.01)
BATCHED = GatewayProfile("paypal", per_minute=6, failure_rate=0.01)
INCIDENTS = [
    Incident("stripe", DAY + timedelta(hours=12), timedelta(minutes=15), failure_rate=1.0),
    Incident("adyen", DAY + timedelta(hours=11), timedelta(minutes=45), failure_rate=0.12),
]
_TIME_TYPES = {
    "sqlite": "DATETIME",
    "postgresql": "TIMESTAMP",
    "mariadb": "DATETIME(6)",
    "duckdb": "TIMESTAMP",
}
_MINUTE = np.timedelta64(60_000_000, "us")


class ProductionWrites:
    """The rows of a simulated frame, inserted at their insert time and (for those written
    pending) updated to their final status at their settle time, with ``inserted_at`` and
    ``updated_at`` set as a database default and an update trigger would set them."""

    def __init__(
        self, db: PaymentsDb, frame: pd.DataFrame, inserted: np.ndarray, settled: np.ndarray
    ):
        _add_time_columns(db)
        self.table = payments_table(db.table)
        for column in ("inserted_at", "updated_at"):
            self.table.append_column(sa.Column(column, sa.DateTime()))
        self.engine = db.engine
        order = np.argsort(inserted, kind="stable")
        frame = frame.iloc[order].reset_index(drop=True)
        self._rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        self._inserted, self._settled = inserted[order], settled[order]
        self._written = 0
        self._pending = np.zeros(len(frame), dtype=bool)  # written pending, not settled yet

    def until(self, moment: datetime) -> None:
        """Write what was inserted or settled up to ``moment`` (included)."""
        at = np.datetime64(moment.replace(tzinfo=None), "us")
        end = int(np.searchsorted(self._inserted, at, side="right"))
        new = range(self._written, end)
        settles = np.flatnonzero(self._pending & (self._settled <= at))
        inserts = [self._inserted_row(i, at) for i in new]
        updates = [self._settled_row(i) for i in settles]
        self._pending[settles] = False
        self._written = max(self._written, end)
        with self.engine.begin() as connection:
            if inserts:
                connection.execute(self.table.insert(), inserts)
            if updates:
                key = self.table.c.id == sa.bindparam("row_id")
                connection.execute(self.table.update().where(key), updates)

    def _inserted_row(self, i: int, at: np.datetime64) -> dict[str, object]:
        row = dict(self._rows[i])
        inserted = _python(self._inserted[i])
        row["inserted_at"] = row["updated_at"] = inserted
        if self._settled[i] > at:  # written pending: its outcome comes with the settle
            self._pending[i] = True
            row.update(status="pending", error_code=None, latency_ms=None)
        elif not np.isnat(self._settled[i]):
            row["updated_at"] = _python(self._settled[i])
        return row

    def _settled_row(self, i: int) -> dict[str, object]:
        row = self._rows[i]
        return {
            "row_id": row["id"],
            "status": row["status"],
            "error_code": row["error_code"],
            "latency_ms": row["latency_ms"],
            "updated_at": _python(self._settled[i]),
        }


def _add_time_columns(db: PaymentsDb) -> None:
    """Add the insert and update time columns to the simulator's payments table."""
    with db.engine.begin() as connection:
        for column in ("inserted_at", "updated_at"):
            kind = _TIME_TYPES[db.dialect]
            connection.execute(sa.text(f"ALTER TABLE {db.table} ADD {column} {kind}"))


def _python(moment: np.datetime64) -> datetime:
    return pd.Timestamp(moment).to_pydatetime()


def _production_table(db: PaymentsDb) -> ProductionWrites:
    # A week and a day of history for the batched gateway: its volume is judged against the
    # usual for the time of the week.
    frame = pd.concat(
        [
            generate(DAY - timedelta(days=8), END, [BATCHED], seed=21),
            generate(DAY + timedelta(hours=6), END, [REAPED, SETTLING], INCIDENTS, seed=22),
        ],
        ignore_index=True,
    )
    created = frame["created_at"].to_numpy(dtype="datetime64[us]")
    gateway = frame["gateway"].astype(str).to_numpy()
    rng = np.random.default_rng(23)
    reaped = (gateway == "stripe") & (frame["status"] == "failed").to_numpy()
    inserted = created + (reaped * rng.uniform(0, 2, len(frame)) * _MINUTE).astype("m8[us]")
    inserted = np.where(gateway == "paypal", batched(frame, 5, 2), inserted)
    settling = (gateway == "adyen") & (frame["status"] != "pending").to_numpy()
    settle = created + (rng.uniform(0.5, 2, len(frame)) * _MINUTE).astype("m8[us]")
    settled = np.where(settling, settle, np.datetime64("NaT", "us"))
    return ProductionWrites(db, frame, inserted, settled)


def _config(db: PaymentsDb) -> Config:
    columns = {"inserted_at": "inserted_at", "updated_at": "updated_at"}
    return parse_config({"source": {"url": db.url, "table": db.table, "columns": columns}}, env={})


def _live(config: Config, source: SqlSource, writes: ProductionWrites) -> list[Notification]:
    """The daemon's engine ticked every simulated minute, after the writes made by then."""
    engine = Engine(config, source, hold_first_start=True)
    seen, now = [], WARM
    while now <= END:
        writes.until(now)
        seen += [notification_for(t, config) for t in engine.tick(now).transitions if not t.repeat]
        now += timedelta(minutes=1)
    return seen


def _alerts(notifications: list[Notification]) -> list[tuple[str, str, str, datetime]]:
    return sorted(
        (n.event, n.rule, n.labels["gateway"], datetime.fromisoformat(n.at))
        for n in notifications
        if datetime.fromisoformat(n.at) >= BEGIN
    )


def test_live_ticks_raise_the_alerts_of_the_final_table_and_as_visible_replays_them_exactly(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    writes = _production_table(payments_db)
    config = _config(payments_db)

    live = _live(config, open_source(config), writes)
    writes.until(END + timedelta(hours=1))  # every row written and settled
    final = list(replay(config, open_source(config), WARM, END))
    visible_source = SqlSource(connect(config.source.url), config.source, as_visible=True)
    try:
        visible = list(replay_as_visible(config, visible_source, WARM, END))
    finally:
        visible_source.engine.dispose()

    # The real incidents fire live as in the backtest of the final table, within 2 ticks,
    # and the same alerts resolve. (They may resolve some minutes apart: the newest minutes
    # miss the failed rows still to land, docs/backtest.md.)
    live_alerts, final_alerts = _alerts(live), _alerts(final)
    assert [a[:3] for a in live_alerts] == [a[:3] for a in final_alerts]
    assert ("firing", "outage", "stripe") in [a[:3] for a in live_alerts]
    assert ("firing", "sla_breach", "adyen") in [a[:3] for a in live_alerts]
    for (event, *_, live_at), (*_, final_at) in zip(live_alerts, final_alerts, strict=True):
        if event == "firing":
            assert timedelta(0) <= live_at - final_at <= timedelta(minutes=2)
    # What the table showed at each tick, replayed from its insert and update times: the
    # very notifications of the live ticks, evidence and all.
    assert [n.to_json() for n in visible] == [n.to_json() for n in live]


def test_as_visible_counts_a_row_from_its_insert_and_its_status_from_its_update(
    payments_db: PaymentsDb,
) -> None:
    at = DAY + timedelta(hours=10)
    payments_db.add("stripe", at, failed=6, other={"TIMEOUT": 2}, error_code="gateway_timeout")
    _add_time_columns(payments_db)
    with payments_db.engine.begin() as connection:
        # Written half a minute in, settled 10 minutes later.
        connection.execute(
            sa.text(f"UPDATE {payments_db.table} SET inserted_at = :i, updated_at = :u"),
            {"i": datetime(2026, 11, 17, 10, 0, 30), "u": datetime(2026, 11, 17, 10, 10)},
        )
    config = _config(payments_db)
    source = SqlSource(connect(config.source.url), config.source, as_visible=True)
    minute = (at, at + timedelta(minutes=1))
    try:
        source.as_of = at
        unwritten = source.read(*minute)
        source.as_of = at + timedelta(minutes=5)
        pending = source.read(*minute)
        pending_evidence = source.evidence("stripe", *minute)
        source.as_of = at + timedelta(minutes=10)
        settled = source.read(*minute)
        settled_evidence = source.evidence("stripe", *minute)
    finally:
        source.engine.dispose()
    assert unwritten.volume.tolist() == []
    # Written, not settled: all 8 rows are pending traffic, none final, none skipped.
    assert (pending.volume.tolist(), pending.payments.tolist(), pending.invalid) == ([8], [0], 0)
    assert pending_evidence == ((), ())
    assert (settled.payments.tolist(), settled.failures.tolist()) == ([6], [6])
    assert settled.skipped == (("status 'TIMEOUT'", 2),)
    codes, ids = settled_evidence
    assert codes == (("gateway_timeout", 6),)
    assert len(ids) == 5


def test_backtest_as_visible_from_the_command_line(
    sqlite_db: PaymentsDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = DAY + timedelta(hours=10)
    sqlite_db.steady("stripe", at - timedelta(hours=1), 70, 20, failed=20)
    config = tmp_path / "alerts.yaml"
    argv = ["backtest", "--config", str(config), "--db", sqlite_db.url, "--start", at.isoformat()]
    argv += ["--end", (at + timedelta(minutes=5)).isoformat(), "--as-visible"]

    config.write_text("source: {table: payments}\n")
    assert main(argv) == 2
    assert "--as-visible: set source.columns.inserted_at" in capsys.readouterr().err

    config.write_text("source: {table: payments, columns: {inserted_at: written}}\n")
    assert main(argv) == 2
    assert "source.columns.inserted_at: column 'written' not found" in capsys.readouterr().err

    with sqlite_db.engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE payments ADD written DATETIME"))
        connection.execute(sa.text("UPDATE payments SET written = created_at"))
    assert main(argv) == 0
    visible = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # Every row written at its own time: what each tick saw is the final table.
    assert main(argv[:-1]) == 0
    final = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert ("firing", "outage", "stripe") in [
        (e["event"], e["rule"], e["labels"]["gateway"]) for e in visible
    ]
    assert visible == final
