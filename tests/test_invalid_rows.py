"""Rows the detector skips (a null gateway, a status listed under no ``source.statuses``):
counted once in ``detector_rows_invalid_total`` however often a tick re-reads them, and named
with their status values in the log and in ``detector check``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from detector.cli import main
from detector.config import Config, parse_config
from detector.service.daemon import Daemon
from detector.source import SqlSource
from detector.timeutil import epoch_minute

from .conftest import T0, Clock, PaymentsDb, in_process_daemon


def _config(db: PaymentsDb) -> Config:
    return parse_config(
        {"source": {"url": db.url, "table": db.table}, "schedule": {"interval": "1m"}}, env={}
    )


def _invalid_total(daemon: Daemon) -> float:
    """``detector_rows_invalid_total`` as ``/metrics`` serves it."""
    for family in text_string_to_metric_families(daemon.exposition().decode()):
        for sample in family.samples:
            if sample.name == "detector_rows_invalid_total":
                return sample.value
    raise AssertionError("detector_rows_invalid_total is not exported")


def test_each_skipped_row_is_counted_once_although_ticks_re_read_its_minute(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    # 57 bad rows over 19 minutes, among steady good traffic.
    sqlite_db.steady("stripe", T0 - timedelta(minutes=30), minutes=40, per_minute=10)
    for minute in range(19):
        at = T0 - timedelta(minutes=20 - minute, seconds=-30)
        sqlite_db.add(None, at, succeeded=1)
        sqlite_db.add("stripe", at, other={"TIMEOUT": 1, None: 1})
    clock = Clock(T0 - timedelta(minutes=25, seconds=-10))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with (
        requests.Session() as session,
        in_process_daemon(_config(sqlite_db), state, clock, session) as daemon,
    ):
        re_read = 0
        for _ in range(35):  # each tick re-reads at least source.late_arrival (5m)
            result = daemon.tick()
            assert result.error is None
            re_read += sum(rows for _, rows in result.skipped)
            clock.now += timedelta(minutes=1)
        assert re_read > 57  # the ticks did read the bad rows more than once
        assert _invalid_total(daemon) == 57

        # A bad row committed late, inside the look-back: one more.
        sqlite_db.add("stripe", clock.now - timedelta(minutes=3), other={"TIMEOUT": 1})
        for _ in range(10):
            daemon.tick()
            clock.now += timedelta(minutes=1)
        assert _invalid_total(daemon) == 58


def _timeouts(db: PaymentsDb) -> None:
    db.steady("stripe", T0 - timedelta(minutes=40), minutes=40, per_minute=10)
    for minute in range(1, 31):
        db.add("stripe", T0 - timedelta(minutes=minute), other={"TIMEOUT": 2})
    db.add(None, T0 - timedelta(minutes=4), succeeded=3)


def test_the_warning_names_each_unmapped_status_with_its_rows_once_an_hour(
    sqlite_db: PaymentsDb, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _timeouts(sqlite_db)
    clock = Clock(T0)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    caplog.set_level(logging.WARNING, logger="detector.source")
    with (
        requests.Session() as session,
        in_process_daemon(_config(sqlite_db), state, clock, session) as daemon,
    ):

        def warnings() -> list[str]:
            lines = [r.getMessage() for r in caplog.records if r.name == "detector.source"]
            caplog.clear()
            return lines

        daemon.tick()  # the warm-up read: 3 h back
        [line] = warnings()
        assert "status 'TIMEOUT': 60 rows" in line
        assert "null gateway: 3 rows" in line
        for _ in range(59):  # the same reasons within the hour: not repeated
            clock.now += timedelta(minutes=1)
            sqlite_db.add("stripe", clock.now - timedelta(seconds=20), other={"TIMEOUT": 1})
            daemon.tick()
        assert warnings() == []
        clock.now += timedelta(minutes=1)
        sqlite_db.add("stripe", clock.now - timedelta(seconds=20), other={"EXPIRED": 4})
        daemon.tick()
        [line] = warnings()  # an hour on: TIMEOUT again, with the rows of the minutes read
        assert "status 'EXPIRED': 4 rows" in line
        assert "status 'TIMEOUT': " in line
        assert "null gateway" not in line  # none in the minutes read


def test_check_names_the_unmapped_status_values(
    sqlite_db: PaymentsDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alerts.yaml").write_text("gateways:\n  stripe: {}\n")
    _timeouts(sqlite_db)
    assert main(["check", "--db", sqlite_db.url, "--at", T0.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "63 row(s) skipped: status 'TIMEOUT': 60 rows, null gateway: 3 rows" in out


def test_the_read_says_why_and_in_which_minutes_rows_were_skipped(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.add("stripe", T0, succeeded=5, other={"TIMEOUT": 2, None: 1})
    payments_db.add(None, T0 + timedelta(minutes=2), succeeded=4, other={"TIMEOUT": 1})
    counts = open_source(_config(payments_db)).read(T0, T0 + timedelta(minutes=3))
    assert counts.invalid == 8
    assert counts.skipped == (("null gateway", 4), ("status 'TIMEOUT'", 3), ("status NULL", 1))
    # Per gateway, the status values alone (the null gateway's TIMEOUT row is no gateway's).
    assert counts.unlisted_values == (
        ("stripe", "status 'TIMEOUT'", 2),
        ("stripe", "status NULL", 1),
    )
    minutes = (counts.invalid_minutes - epoch_minute(T0)).tolist()
    assert (minutes, counts.invalid_per_minute.tolist()) == ([0, 2], [3, 5])


def test_a_large_share_of_unmapped_statuses_raises_one_warning_until_it_drops(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    # stripe: 3 of every 10 rows TIMEOUT, listed under no source.statuses; adyen: clean.
    sqlite_db.steady("adyen", T0 - timedelta(minutes=90), minutes=150, per_minute=10)
    sqlite_db.steady("stripe", T0 - timedelta(minutes=90), minutes=150, per_minute=7)
    for minute in range(90):
        sqlite_db.add("stripe", T0 - timedelta(minutes=minute, seconds=-10), other={"TIMEOUT": 3})
    clock = Clock(T0 - timedelta(minutes=30, seconds=-30))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with (
        requests.Session() as session,
        in_process_daemon(_config(sqlite_db), state, clock, session) as daemon,
    ):
        seen = []
        for _ in range(100):  # TIMEOUT rows stop at T0: their share is gone an hour later
            result = daemon.tick()
            seen += [t for t in result.transitions if t.alert.rule == "unmapped_statuses"]
            clock.now += timedelta(minutes=1)
    assert [(t.event, t.alert.labels.get("gateway"), t.alert.severity) for t in seen] == [
        ("firing", "stripe", "warning"),
        ("resolved", "stripe", "warning"),
    ]
    firing = seen[0].alert.summary
    assert firing.startswith("30.2% of the rows of the last hour (180 of 597) have a status")
    assert "status 'TIMEOUT': " in firing
    # The share falls below 5% about 57 minutes after the last TIMEOUT row.
    assert T0 + timedelta(minutes=50) < seen[1].at < T0 + timedelta(minutes=62)


def test_each_gateway_s_unmapped_statuses_warning_names_its_own_values(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    # stripe: 3 of every 10 rows TIMEOUT; adyen: 2 of every 10 ERR_5XX; neither listed. The
    # last hour (59 of those minutes) has 590 rows of each, the first read all of them.
    for minute in range(1, 61):
        at = T0 - timedelta(minutes=minute)
        sqlite_db.add("stripe", at, succeeded=7, other={"TIMEOUT": 3})
        sqlite_db.add("adyen", at, succeeded=8, other={"ERR_5XX": 2})
    clock = Clock(T0 + timedelta(seconds=30))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with (
        requests.Session() as session,
        in_process_daemon(_config(sqlite_db), state, clock, session) as daemon,
    ):
        result = daemon.tick()
    summaries = {
        t.alert.labels["gateway"]: t.alert.summary
        for t in result.transitions
        if t.alert.rule == "unmapped_statuses"
    }
    assert summaries["stripe"].startswith("30.0% of the rows of the last hour (177 of 590)")
    assert summaries["stripe"].endswith("last read: status 'TIMEOUT': 180 rows")
    assert summaries["adyen"].startswith("20.0% of the rows of the last hour (118 of 590)")
    assert summaries["adyen"].endswith("last read: status 'ERR_5XX': 120 rows")
