"""A timestamp column the database cannot turn into minutes stops start-up with what is
wrong and what to run, instead of reading zero payments and calling every gateway healthy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from detector.cli import main

from .conftest import _server

ROWS = 30


def _text_table(url: str, table: str, stamps: list[str]) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                f"CREATE TABLE {table} (id VARCHAR(40), created_at TEXT, gateway VARCHAR(40), "
                "status VARCHAR(20), error_code VARCHAR(40))"
            )
        )
        connection.execute(
            sa.text(f"INSERT INTO {table} VALUES (:id, :at, 'stripe', :status, NULL)"),
            [
                {"id": f"pay_{i}", "at": at, "status": "failed" if i % 2 else "succeeded"}
                for i, at in enumerate(stamps)
            ],
        )
    engine.dispose()


def _check(tmp_path: Path, url: str, table: str, at: str) -> int:
    config = tmp_path / "alerts.yaml"
    config.write_text(f"source:\n  url: {url}\n  table: {table}\ngateways:\n  stripe: {{}}\n")
    return main(["check", "--config", str(config), "--at", at])


@pytest.mark.parametrize(
    ("stamp", "says"),
    [
        ("2026-12-04T21:{m:02d}:45Z", "holds ISO text such as '2026-12-04T21:"),
        ("2026-12-04T22:{m:02d}:45+01:00", "its offset puts rows at their local minute"),
    ],
    ids=["iso-z", "local-time-with-offset"],
)
def test_iso_text_in_sqlite_is_refused_with_the_update_that_fixes_it(
    stamp: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'payments.db'}"
    _text_table(url, "payments", [stamp.format(m=m) for m in range(ROWS)])

    assert _check(tmp_path, url, "payments", "2026-12-04T21:30") == 2

    err = capsys.readouterr().err
    assert err.startswith("error: source.columns.timestamp: column 'created_at' ")
    assert says in err
    assert "UPDATE payments SET created_at = strftime('%Y-%m-%d %H:%M:%f', created_at)" in err
    assert "Traceback" not in err


def test_after_the_suggested_update_the_same_rows_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'payments.db'}"
    # Local Berlin time with its offset: 22:MM+01:00 is 21:MM UTC.
    _text_table(url, "payments", [f"2026-12-04T22:{m:02d}:45+01:00" for m in range(ROWS)])
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE payments SET created_at = strftime('%Y-%m-%d %H:%M:%f', created_at)")
        )
    engine.dispose()

    # Every other payment failed: stripe fires, on the payments of 21:00-21:29 UTC.
    assert _check(tmp_path, url, "payments", "2026-12-04T21:30") == 1
    stripe = next(line for line in capsys.readouterr().out.splitlines() if "stripe" in line)
    assert stripe.split()[1:3] == [str(ROWS), str(ROWS // 2)]


def test_epoch_numbers_in_sqlite_are_refused_naming_unixepoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'payments.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE payments (id TEXT, created_at INTEGER, gateway TEXT, "
                "status TEXT, error_code TEXT)"
            )
        )
        connection.execute(
            sa.text("INSERT INTO payments VALUES ('p1', 1796419065, 'stripe', 'failed', NULL)")
        )
    engine.dispose()

    assert _check(tmp_path, url, "payments", "2026-12-04T21:30") == 2
    err = capsys.readouterr().err
    assert "holds numbers such as 1796419065" in err
    assert "'unixepoch'" in err


def _server_table(dialect: str) -> Iterator[tuple[str, str]]:
    url = _server(dialect)
    table = f"payments_{uuid.uuid4().hex[:10]}"
    yield url, table
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


@pytest.fixture
def postgres_table() -> Iterator[tuple[str, str]]:
    yield from _server_table("postgresql")


@pytest.fixture
def mariadb_table() -> Iterator[tuple[str, str]]:
    yield from _server_table("mariadb")


@pytest.mark.database
def test_a_mariadb_text_column_is_refused_with_the_alter_that_fixes_it(
    mariadb_table: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, table = mariadb_table
    _text_table(url, table, [f"2026-12-04 21:{m:02d}:45" for m in range(ROWS)])

    assert _check(tmp_path, url, table, "2026-12-04T21:30") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: source.columns.timestamp: column 'created_at' is TEXT, ")
    assert f"ALTER TABLE {table} MODIFY created_at DATETIME(6)" in err


@pytest.mark.database
def test_a_postgresql_text_column_is_refused_with_the_alter_that_fixes_it(
    postgres_table: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, table = postgres_table
    _text_table(url, table, [f"2026-12-04T21:{m:02d}:45Z" for m in range(ROWS)])

    assert _check(tmp_path, url, table, "2026-12-04T21:30") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: source.columns.timestamp: column 'created_at' is TEXT, ")
    assert f"ALTER TABLE {table} ALTER COLUMN created_at TYPE timestamptz" in err
    assert "extract" not in err.lower()  # not the database's own error

    # The suggested ALTER makes the same rows readable.
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                f"ALTER TABLE {table} ALTER COLUMN created_at TYPE timestamptz "
                "USING created_at::timestamptz"
            )
        )
    engine.dispose()
    assert _check(tmp_path, url, table, "2026-12-04T21:30") == 1
    stripe = next(line for line in capsys.readouterr().out.splitlines() if "stripe" in line)
    assert stripe.split()[1:3] == [str(ROWS), str(ROWS // 2)]
