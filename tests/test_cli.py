"""The ``detector`` command as a user runs it: check, simulate, demo."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from detector.cli import main

from .conftest import T0, PaymentsDb


@pytest.fixture(autouse=True)
def _default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alerts.yaml").write_text("gateways:\n  stripe: {}\n  adyen: {sla: 0.05}\n")


def test_check_prints_a_verdict_per_gateway_and_exits_0_when_healthy(
    sqlite_db: PaymentsDb, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=40), minutes=40, per_minute=10, failed=0)
    sqlite_db.steady("adyen", T0 - timedelta(minutes=40), minutes=40, per_minute=5, failed=0)
    assert main(["check", "--db", sqlite_db.url, "--at", T0.isoformat()]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["stripe"][1:3] == ["300", "0"]  # payments and failures in the last 30 min
    assert rows["stripe"][-1] == "healthy"
    assert rows["adyen"][5] == "5.0%"  # its own SLA


def test_check_exits_1_and_names_the_rule_when_something_fires(
    sqlite_db: PaymentsDb, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=40), minutes=39, per_minute=10)
    sqlite_db.steady("stripe", T0 - timedelta(minutes=1), minutes=1, per_minute=10, failed=10)
    assert main(["check", "--db", sqlite_db.url, "--at", T0.isoformat()]) == 1
    stripe = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("stripe")
    )
    assert "FIRING: outage" in stripe


def test_check_exits_2_when_the_table_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    engine = sa.create_engine(url)
    engine.connect().close()  # an empty database file, without the payments table
    engine.dispose()
    assert main(["check", "--db", url]) == 2
    assert "source.table: table 'payments' does not exist" in capsys.readouterr().err


def test_simulate_writes_the_default_schema_with_an_incident(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    args = [
        "simulate",
        "--db",
        url,
        "--days",
        "0.25",
        "--end",
        "2026-11-20T12:00",
        "--seed",
        "1",
        "--incident",
        "stripe:+2h:30m:outage",
    ]
    assert main(args) == 0
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        during = connection.execute(
            sa.text(
                "SELECT status, COUNT(*) FROM payments WHERE gateway = 'stripe' AND "
                "created_at >= '2026-11-20 08:00' AND created_at < '2026-11-20 08:30' "
                "GROUP BY status"
            )
        ).all()
    engine.dispose()
    counts = dict(during)
    assert counts.get("failed", 0) > 100
    assert counts.get("succeeded", 0) == 0


def test_a_bad_incident_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    assert main(["simulate", "--db", url, "--days", "1", "--incident", "stripe:soon"]) == 2
    assert "stripe:soon" in capsys.readouterr().err


def test_demo_runs_and_reports_each_injected_incident(tmp_path: Path) -> None:
    # The folder's alerts.yaml is not the demo's: one it could not even load changes nothing.
    (tmp_path / "alerts.yaml").write_text("receivers:\n  s: {type: slack, url: '${NO_SUCH_VAR}'}\n")
    temp = tmp_path / "temp"
    temp.mkdir()
    finished = subprocess.run(
        [sys.executable, "-m", "detector.cli", "demo"],
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(temp)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    report = finished.stdout.split("injected incident")[1].splitlines()[1:]
    assert len(report) == 3
    assert not any("missed" in line for line in report), finished.stdout
    # Two charts for each of the five gateways, and a pointer to them in the output; the
    # week's database is gone from the temporary folder, the report is kept.
    (folder,) = temp.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["report.html"]
    page = (folder / "report.html").read_text()
    assert page.count("<svg") == 10
    assert str(folder / "report.html") in finished.stdout


def test_backtest_runs_without_the_receivers_secrets(
    sqlite_db: PaymentsDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for variable in ("SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY"):
        monkeypatch.delenv(variable, raising=False)
    config = tmp_path / "alerts.yaml"
    config.write_text(
        "receivers:\n"
        "  chat: {type: slack, url: '${SLACK_WEBHOOK_URL}'}\n"
        "  pager: {type: pagerduty, routing_key: '${PAGERDUTY_ROUTING_KEY}'}\n"
        "route: {receivers: [chat], routes: [{match: {severity: critical}, receivers: [pager]}]}\n"
    )
    sqlite_db.steady("stripe", T0 - timedelta(hours=4), minutes=235, per_minute=10)
    sqlite_db.steady("stripe", T0 - timedelta(minutes=5), minutes=5, per_minute=10, failed=10)
    argv = ["backtest", "--db", sqlite_db.url, "--start", (T0 - timedelta(hours=1)).isoformat()]

    assert main([*argv, "--end", T0.isoformat(), "--format", "table"]) == 0
    assert "outage" in capsys.readouterr().out  # the replay ran and saw the outage
    # The daemon, which sends, still needs them.
    assert main(["validate"]) == 2
    assert "receivers.chat.url: environment variable SLACK_WEBHOOK_URL is not set" in (
        capsys.readouterr().err
    )


def test_run_refuses_to_start_on_a_misspelt_column(sqlite_db: PaymentsDb, tmp_path: Path) -> None:
    config = tmp_path / "bad-column.yaml"
    config.write_text(f"source:\n  url: {sqlite_db.url}\n  columns: {{status: state}}\n")
    finished = subprocess.run(
        [sys.executable, "-m", "detector.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert "source.columns.status: column 'state' not found in table 'payments'" in finished.stderr
