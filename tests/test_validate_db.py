"""``detector validate --db`` checks alerts.yaml against the payments table, and ``detector
run`` logs the same warnings at start-up: names that the data never shows (``Adyen`` for
``adyen``, a status in no list) and labels no alert carries (``gatway=``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from detector.cli import main

from .conftest import PaymentsDb
from .daemon_process import LISTEN, DaemonProcess

CONFIG = """\
source:
  url: {url}
  table: {table}
  statuses: {{failed: [failed, FAILED], succeeded: [succeeded]}}
gateways:
  Adyen: {{}}
  stripe: {{}}
route:
  receivers: [console]
  routes:
    - matchers: ['gatway="stripe"']
      receivers: [console]
"""

WARNINGS = [
    "warning: route.routes[0].matchers: label 'gatway' is carried by no alert",
    "warning: source.statuses: status 'TIMEOUT' (3 rows in the last 7 days) is listed under "
    "none of failed, succeeded, pending, declined: its rows are skipped",
    "warning: source.statuses.failed: no payment of the last 7 days has status 'FAILED'",
    "warning: gateways.Adyen: no payment of the last 7 days has gateway 'Adyen'; "
    "did you mean 'adyen'?",
]


def _table(payments_db: PaymentsDb) -> None:
    recent = datetime.now(UTC) - timedelta(hours=1)
    payments_db.add("adyen", recent, succeeded=5, failed=1, other={"TIMEOUT": 3})
    payments_db.add("stripe", recent, succeeded=5)


def test_validate_db_warns_about_names_the_data_never_shows(
    payments_db: PaymentsDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _table(payments_db)
    config = tmp_path / "alerts.yaml"
    config.write_text(CONFIG.format(url=payments_db.url, table=payments_db.table))

    assert main(["validate", "--config", str(config), "--db"]) == 0

    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    for expected in WARNINGS:
        assert any(line.startswith(expected) for line in lines), expected
    assert len(lines) == len(WARNINGS)  # stripe, succeeded and failed are found: no word
    assert "and the payments table; 4 warning(s)" in captured.out


def test_validate_without_db_leaves_the_database_alone(
    sqlite_db: PaymentsDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "alerts.yaml"
    config.write_text(
        f"source: {{url: '{sqlite_db.url}', table: {sqlite_db.table}, "
        "columns: {status: state}}\n"
    )
    assert main(["validate", "--config", str(config)]) == 0
    assert capsys.readouterr().err == ""

    # Asked to, it finds the misspelt column.
    assert main(["validate", "--config", str(config), "--db"]) == 2
    assert "source.columns.status: column 'state' not found" in capsys.readouterr().err

    assert main(["validate", "--config", str(config), "--db", sqlite_db.url]) == 2


@pytest.mark.slow
def test_the_daemon_logs_the_same_warnings_at_start_up(
    sqlite_db: PaymentsDb,
    tmp_path: Path,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    _table(sqlite_db)
    config = tmp_path / "alerts.yaml"
    config.write_text(
        CONFIG.format(url=sqlite_db.url, table=sqlite_db.table)
        + f"server: {{listen: '{LISTEN}'}}\nstate: {{url: 'sqlite:///{tmp_path / 's.db'}'}}\n"
    )
    log = tmp_path / "daemon.log"
    start_daemon(config, log).close()

    text = log.read_text()
    for expected in WARNINGS:
        assert f"WARNING detector: {expected.removeprefix('warning: ')}" in text, expected


_TIME_TYPES = {
    "sqlite": "DATETIME",
    "postgresql": "TIMESTAMP",
    "mariadb": "DATETIME(6)",
    "duckdb": "TIMESTAMP",
}


def test_validate_db_checks_the_insert_and_update_time_columns(
    payments_db: PaymentsDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``backtest --as-visible`` reads them; ``validate --db`` finds their mistakes first."""
    _table(payments_db)
    config = tmp_path / "alerts.yaml"
    table, time_type = payments_db.table, _TIME_TYPES[payments_db.dialect]
    config.write_text(
        CONFIG.format(url=payments_db.url, table=table).replace(
            f"  table: {table}\n",
            f"  table: {table}\n  columns: {{inserted_at: written, updated_at: settled}}\n",
        )
    )
    argv = ["validate", "--config", str(config), "--db"]

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: source.columns.inserted_at: column 'written' not found" in err
    assert "only `detector backtest --as-visible` reads source.columns.inserted_at" in err

    with payments_db.engine.begin() as connection:
        # The insert time as ISO text, the update time as a timestamp.
        connection.execute(sa.text(f"ALTER TABLE {table} ADD written VARCHAR(40)"))
        connection.execute(sa.text(f"ALTER TABLE {table} ADD settled {time_type}"))
        connection.execute(sa.text(f"UPDATE {table} SET written = '2026-12-04T21:17:45Z'"))
        connection.execute(sa.text(f"UPDATE {table} SET settled = created_at"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: source.columns.inserted_at: column 'written' ")
    if payments_db.dialect == "sqlite":
        assert "holds ISO text such as '2026-12-04T21:17:45Z'" in err
        assert f"UPDATE {table} SET written = strftime(" in err
    else:
        assert "not a timestamp" in err
        assert f"ALTER TABLE {table} " in err

    # Named a column of the insert times, it passes.
    with payments_db.engine.begin() as connection:
        connection.execute(sa.text(f"ALTER TABLE {table} ADD written_at {time_type}"))
        connection.execute(sa.text(f"UPDATE {table} SET written_at = created_at"))
    config.write_text(
        config.read_text().replace("inserted_at: written,", "inserted_at: written_at,")
    )
    assert main(argv) == 0
    assert "and the payments table" in capsys.readouterr().out
