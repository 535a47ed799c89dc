"""Payments in DuckDB: read from a file the detector opens read-only, in UTC, only for the
length of each read (its writer has the file in between), with every read bounded by the
query timeout; and a clear error for what DuckDB is not used for (the detector's state)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from detector.cli import main
from detector.config import Config, ConfigError, parse_config
from detector.db import DatabaseUrlError, connect
from detector.engine import Engine
from detector.source import SourceError, SqlSource
from detector.timeutil import epoch_minute
from detector.volume_source import open_volumes

from .conftest import T0, PaymentsDb

pytestmark = pytest.mark.parametrize("payments_db", ["duckdb"], indirect=True)


def _config(db: PaymentsDb, table: str | None = None, **source: object) -> Config:
    return parse_config(
        {
            "source": {"url": db.url, "table": table or db.table, **source},
            "schedule": {"interval": "1m", "source_down_after": 2},
        },
        env={},
    )


def _source(db: PaymentsDb, table: str | None = None, **source: object) -> SqlSource:
    config = _config(db, table, **source)
    timeout = config.source_query_timeout if "query_timeout" in source else None
    return SqlSource(connect(config.source.url, query_timeout=timeout), config.source)


@pytest.fixture
def opened() -> Iterator[list[SqlSource]]:
    sources: list[SqlSource] = []
    yield sources
    for source in sources:
        source.engine.dispose()


def _execute(db: PaymentsDb, *statements: str) -> None:
    with db.engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


@pytest.fixture
def in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process in another time zone than UTC: DuckDB's sessions start in it."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("in_new_york")
def test_a_timestamptz_column_is_counted_at_its_utc_minute(
    payments_db: PaymentsDb, opened: list[SqlSource]
) -> None:
    _execute(
        payments_db,
        "CREATE TABLE zoned (id VARCHAR, created_at TIMESTAMPTZ, gateway VARCHAR, "
        "status VARCHAR, error_code VARCHAR)",
        # Berlin's 13:05 is 12:05 UTC; Sao Paulo's 09:07 is 12:07 UTC.
        "INSERT INTO zoned VALUES ('p1', '2026-11-20 13:05:10+01:00', 'stripe', 'failed', NULL), "
        "('p2', '2026-11-20 09:07:50-03:00', 'stripe', 'succeeded', NULL), "
        "('p3', '2026-11-20 12:09:00+01:00', 'stripe', 'succeeded', NULL)",
    )
    source = _source(payments_db, "zoned")
    opened.append(source)
    source.check()

    counts = source.read(T0, T0 + timedelta(minutes=10))

    assert counts.minute.tolist() == [epoch_minute(T0) + 5, epoch_minute(T0) + 7]
    assert counts.failures.tolist() == [1, 0]  # p3 is 11:09 UTC, before the range


def test_numeric_labels_read_as_written_and_null_as_none(
    payments_db: PaymentsDb, opened: list[SqlSource]
) -> None:
    _execute(
        payments_db,
        "CREATE TABLE shops (id VARCHAR, created_at TIMESTAMP, gateway VARCHAR, "
        "status VARCHAR, error_code VARCHAR, store INTEGER, till HUGEINT, lane DECIMAL(18, 0))",
        # Every third payment has no store, till or lane.
        "INSERT INTO shops SELECT 'p' || i, TIMESTAMP '2026-11-20 12:00:00' + to_seconds(i), "
        "'stripe', 'succeeded', NULL, nullif(i % 3, 0), nullif(i % 3, 0), nullif(i % 3, 0) "
        "FROM range(30) t(i)",
    )
    dimensions = {"store": "store", "till": "till", "lane": "lane"}
    source = _source(payments_db, "shops", columns={"dimensions": dimensions})
    opened.append(source)

    detail = source.read(T0, T0 + timedelta(minutes=1), ("store", "till", "lane")).detail

    assert detail is not None
    assert sorted(map(tuple, detail.values.tolist())) == [
        ("(none)", "(none)", "(none)"),
        ("1", "1", "1"),
        ("2", "2", "2"),
    ]
    # A volume split by such a column names its series the same way.
    config = parse_config(
        {
            "source": {"url": payments_db.url, "table": payments_db.table},
            "volumes": {"visits": {"table": "shops", "by": ["till"]}},
        },
        env={},
    )
    volumes = open_volumes(config, strict=True)
    assert volumes is not None
    try:
        volumes.read(T0, T0 + timedelta(minutes=1))
    finally:
        volumes.dispose()
    assert sorted(labels["till"] for labels in volumes.labels.values()) == ["(none)", "1", "2"]


def test_a_text_timestamp_column_is_refused_with_the_alter_that_fixes_it(
    payments_db: PaymentsDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _execute(
        payments_db,
        "CREATE TABLE texts (id VARCHAR, created_at VARCHAR, gateway VARCHAR, "
        "status VARCHAR, error_code VARCHAR)",
        "INSERT INTO texts SELECT 'p' || i, '2026-11-20 11:' || lpad(i::VARCHAR, 2, '0') "
        "|| ':30', 'stripe', CASE WHEN i % 2 = 1 THEN 'failed' ELSE 'succeeded' END, NULL "
        "FROM range(30) t(i)",
    )
    config = tmp_path / "alerts.yaml"
    config.write_text(
        f"source: {{url: '{payments_db.url}', table: texts}}\ngateways: {{stripe: {{}}}}\n"
    )

    assert main(["check", "--config", str(config), "--at", "2026-11-20T11:30"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: source.columns.timestamp: column 'created_at' is VARCHAR, ")
    fix = (
        "ALTER TABLE texts ALTER created_at TYPE TIMESTAMPTZ USING CAST(created_at AS TIMESTAMPTZ)"
    )
    assert fix in err

    _execute(payments_db, fix)  # the advice works: every other payment failed, stripe fires
    assert main(["check", "--config", str(config), "--at", "2026-11-20T11:30"]) == 1
    stripe = next(line for line in capsys.readouterr().out.splitlines() if "stripe" in line)
    assert stripe.split()[1:3] == ["30", "15"]


def _hold(path: str, script: str) -> subprocess.Popen[str]:
    """Another process that opens the DuckDB file read-write, runs ``script`` and waits for
    a line on its standard input before it lets the file go."""
    code = textwrap.dedent(
        f"""
        import sys, duckdb
        connection = duckdb.connect({path!r})
        {script}
        connection.commit()
        print("holding", flush=True)
        sys.stdin.readline()
        connection.close()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "holding\n"
    return holder


def _release(holder: subprocess.Popen[str]) -> None:
    holder.communicate("\n", timeout=30)  # closes its pipes
    assert holder.returncode == 0


def test_the_file_is_left_to_its_writer_between_ticks_and_a_held_file_raises_source_down(
    payments_db: PaymentsDb, opened: list[SqlSource]
) -> None:
    payments_db.steady("stripe", T0 - timedelta(minutes=30), minutes=31, per_minute=10)
    source = _source(payments_db)
    opened.append(source)
    engine = Engine(_config(payments_db), source)
    assert engine.tick(T0).error is None

    # Right after a tick another process can write the file: the detector holds no lock.
    path = sa.make_url(payments_db.url).database
    assert path is not None
    writer = _hold(
        path,
        f'connection.execute("INSERT INTO {payments_db.table} (id, created_at, gateway, status) '
        "VALUES ('late', TIMESTAMP '2026-11-20 12:00:30', 'stripe', 'succeeded')\")",
    )
    try:
        first = engine.tick(T0 + timedelta(minutes=1))
        second = engine.tick(T0 + timedelta(minutes=2))
    finally:
        _release(writer)
    recovered = engine.tick(T0 + timedelta(minutes=3))

    assert first.error is not None
    assert first.error.startswith("cannot read payments: IO Error: Could not set lock on file")
    assert [(t.event, t.alert.rule) for t in second.transitions] == [("firing", "source_down")]
    assert [(t.event, t.alert.rule) for t in recovered.transitions] == [("resolved", "source_down")]
    # The row the other process wrote while the detector waited is read.
    counts = source.read(T0, T0 + timedelta(minutes=1))
    assert counts.volume.tolist() == [11]


def test_a_read_past_the_query_timeout_is_interrupted(
    payments_db: PaymentsDb, opened: list[SqlSource]
) -> None:
    payments_db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10)
    # A view as slow as a table of billions of rows.
    _execute(
        payments_db,
        f"CREATE VIEW huge AS SELECT p.* FROM {payments_db.table} p, range(100000000) r",
    )
    source = _source(payments_db, "huge", query_timeout="1s")
    opened.append(source)

    with pytest.raises(SourceError, match=r"cannot read payments: no answer within the 1s query"):
        source.read(T0 - timedelta(minutes=10), T0)
    source.check()  # the database answers the next statement at once


def test_duckdb_cannot_hold_the_state_and_says_so(
    payments_db: PaymentsDb,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match=r"state\.url: .*duckdb:// can hold the payments"):
        parse_config({"state": {"url": payments_db.url}}, env={})

    config = tmp_path / "alerts.yaml"
    config.write_text(f"source: {{url: '{payments_db.url}', table: {payments_db.table}}}\n")
    # Refused before the daemon starts.
    assert main(["run", "--config", str(config), "--state", payments_db.url]) == 2
    said = "duckdb:// can hold the payments (source.url) but not the detector's state"
    assert capsys.readouterr().err.startswith(f"error: --state: {said}")
    monkeypatch.setenv("DETECTOR_STATE_URL", payments_db.url)
    assert main(["run", "--config", str(config)]) == 2
    assert capsys.readouterr().err.startswith(f"error: DETECTOR_STATE_URL: {said}")
    with pytest.raises(DatabaseUrlError, match=r"state\.url: duckdb:// can hold the payments"):
        connect(payments_db.url, read_only=False)


def test_a_missing_duckdb_file_is_named_and_not_created(
    payments_db: PaymentsDb, tmp_path: Path
) -> None:
    missing = tmp_path / "paymnets.duckdb"
    with pytest.raises(DatabaseUrlError, match=r"source\.url: the DuckDB file .* does not exist"):
        connect(f"duckdb:///{missing}")
    assert not missing.exists()
