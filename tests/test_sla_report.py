"""``detector report sla``: per gateway and month, the payments, technical failures, failure
rate against the SLA, minutes and incidents in breach from the stored alert history, and the
worst day, in every format, on SQLite, PostgreSQL and MariaDB; and the alert history the
report reads is kept for 400 days."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from detector.alerts import Alert, Transition, fingerprint
from detector.cli import main
from detector.config import parse_config
from detector.model import Evidence
from detector.sla_report import sla_report
from detector.stats.binomial import wilson_interval
from detector.store import StateStore

from .accessibility import ARTIFACTS, audit, render, serious
from .conftest import T0, Clock, PaymentsDb, _state_url, in_process_daemon

OCT = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def state(payments_db: PaymentsDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh state database on the payments database's server (SQLite beside DuckDB,
    which holds no state)."""
    dialect = "sqlite" if payments_db.dialect == "duckdb" else payments_db.dialect
    yield from _state_url(dialect, tmp_path_factory)


def _resolved(
    rule: str, gateway: str, since: datetime, resolved_at: datetime, **labels: str
) -> Transition:
    identity = {"rule": rule, "gateway": gateway, **labels}
    alert = Alert(
        fingerprint(identity),
        identity,
        "firing",
        "critical",
        f"{rule} on {gateway}",
        since=since,
        active_since=since,
        last_active=resolved_at,
        evidence=Evidence(),
        fired_at=since + timedelta(minutes=2),
    )
    return Transition("resolved", alert, resolved_at)


def _store_episodes(url: str, *transitions: Transition) -> None:
    store = StateStore.open(url)
    try:
        for transition in transitions:
            store.save_tick(None, {}, [], transition.at, transitions=[transition])
    finally:
        store.engine.dispose()


@pytest.fixture
def october(payments_db: PaymentsDb, state: str, tmp_path: Path) -> Path:
    """October's payments of acme (SLA 3%) and zeta (SLA 2%), zeta's stored incidents, and
    the alerts.yaml reading them."""
    db = payments_db
    # Outside the month: the last second of September and the first of November.
    db.add("acme", OCT - timedelta(seconds=1), failed=50, error_code="timeout")
    db.add("acme", datetime(2026, 11, 1, tzinfo=UTC), failed=50, error_code="timeout")
    # 3 technical failures and 5 declines of 208 final payments, 4 pending.
    db.add("acme", datetime(2026, 10, 3, 12, tzinfo=UTC), succeeded=200, pending=4)
    db.add("acme", datetime(2026, 10, 3, 12, 5, tzinfo=UTC), failed=3, error_code="timeout")
    db.add("acme", datetime(2026, 10, 3, 23, 59, 59, tzinfo=UTC), failed=5)  # card_declined
    # The worst day: 6 of 106 (5.66%).
    db.add("acme", datetime(2026, 10, 15, 0, 0, tzinfo=UTC), succeeded=100)
    db.add("acme", datetime(2026, 10, 15, 9, 0, tzinfo=UTC), failed=6, error_code="http_503")
    # zeta: 5 of 55 (9.09%) on the 20th, above its 2%.
    db.add("zeta", datetime(2026, 10, 20, 10, 0, tzinfo=UTC), succeeded=50)
    db.add("zeta", datetime(2026, 10, 20, 10, 5, tzinfo=UTC), failed=5, error_code="timeout")
    _store_episodes(
        state,
        # Crossing into October: its 20 minutes in October count, one incident.
        _resolved("sla_breach", "zeta", OCT - timedelta(minutes=30), OCT + timedelta(minutes=20)),
        # An outage 10:00-10:45 and a card breach 10:30-11:30 overlapping it: one incident.
        _resolved(
            "outage",
            "zeta",
            datetime(2026, 10, 20, 10, tzinfo=UTC),
            datetime(2026, 10, 20, 10, 45, tzinfo=UTC),
        ),
        _resolved(
            "sla_breach",
            "zeta",
            datetime(2026, 10, 20, 10, 30, tzinfo=UTC),
            datetime(2026, 10, 20, 11, 30, tzinfo=UTC),
            method="card",
        ),
        # Not a breach of the SLA, and in November: neither counts.
        _resolved(
            "volume_drop",
            "zeta",
            datetime(2026, 10, 21, tzinfo=UTC),
            datetime(2026, 10, 21, 5, tzinfo=UTC),
        ),
        _resolved(
            "outage",
            "zeta",
            datetime(2026, 11, 2, tzinfo=UTC),
            datetime(2026, 11, 2, 1, tzinfo=UTC),
        ),
    )
    config = tmp_path / "alerts.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "source": {
                    "url": db.url,
                    "table": db.table,
                    "declines": {"error_codes": ["card_declined"]},
                },
                "state": {"url": state},
                "gateways": {"acme": {"sla": 0.03}, "zeta": {}},
            }
        )
    )
    return config


def _report(config: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    args = ["report", "sla", "--config", str(config), "--month", "2026-10", "--format", fmt]
    assert main(args) == 0
    return capsys.readouterr().out


def test_json_gives_the_exact_figures(october: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads(_report(october, "json", capsys))
    assert (document["month"], document["from"], document["until"]) == (
        "2026-10",
        "2026-10-01T00:00:00Z",
        "2026-11-01T00:00:00Z",
    )
    acme, zeta = document["gateways"]
    low, high = wilson_interval(9, 314)
    assert acme == {
        "gateway": "acme",
        "payments": 314,
        "failures": 9,
        "failure_rate": pytest.approx(9 / 314),
        "rate_low": pytest.approx(float(low)),
        "rate_high": pytest.approx(float(high)),
        "sla": 0.03,
        "met": True,
        "breach_minutes": 0,
        "incidents": 0,
        "worst_day": {
            "day": "2026-10-15",
            "payments": 106,
            "failures": 6,
            "rate": pytest.approx(6 / 106),
        },
    }
    assert zeta["payments"] == 55
    assert zeta["failures"] == 5
    assert (zeta["sla"], zeta["met"]) == (0.02, False)
    assert (zeta["breach_minutes"], zeta["incidents"]) == (20 + 90, 2)
    assert zeta["worst_day"]["day"] == "2026-10-20"


def test_csv_parses_with_one_row_per_gateway(
    october: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = list(csv.DictReader(io.StringIO(_report(october, "csv", capsys))))
    assert [row["gateway"] for row in rows] == ["acme", "zeta"]
    zeta = rows[1]
    assert (zeta["payments"], zeta["failures"], zeta["met"]) == ("55", "5", "False")
    assert float(zeta["failure_rate"]) == pytest.approx(5 / 55)
    assert (zeta["breach_minutes"], zeta["incidents"]) == ("110", "2")
    assert (zeta["worst_day"], zeta["worst_day_payments"], zeta["worst_day_failures"]) == (
        "2026-10-20",
        "55",
        "5",
    )


def test_table_and_html_show_the_figures(october: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = _report(october, "table", capsys)
    title = re.compile(r"SLA compliance 2026-10, generated \d{4}-\d\d-\d\d \d\d:\d\d UTC")
    assert title.match(table)
    assert "(payments from 2026-10-01T00:00:00Z to 2026-11-01T00:00:00Z)" in table.splitlines()[0]
    zeta = next(line for line in table.splitlines() if line.startswith("zeta"))
    assert zeta.split()[:9] == ["zeta", "55", "5", "9.09%", "3.95%", "-", "19.58%", "2.00%", "NO"]
    assert zeta.split()[9:] == ["110", "2", "2026-10-20:", "9.09%", "(5/55)"]

    page = _report(october, "html", capsys)
    assert page.count("<table>") == 1
    assert re.search(f"<title>{title.pattern}</title>", page)
    assert re.search(f"<h1>{title.pattern}</h1>", page)
    assert "@media print" in page
    assert "<script" not in page
    assert "http" not in page
    assert (
        '<tr class="missed"><td>zeta</td><td>55</td><td>5</td><td>9.09%</td>'
        "<td>3.95% - 19.58%</td><td>2.00%</td><td>NO</td><td>110</td><td>2</td>"
        "<td>2026-10-20: 9.09% (5/55)</td></tr>"
    ) in page
    assert "<tr><td>acme</td><td>314</td><td>9</td><td>2.87%</td>" in page


# Once, on SQLite: the browser sees the same page whatever database the figures came from.
@pytest.mark.parametrize("payments_db", ["sqlite"], indirect=True)
def test_the_html_report_in_chromium_shows_the_table_and_passes_axe_on_desktop_and_phone(
    october: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    page = _report(october, "html", capsys)
    report = tmp_path / "sla-2026-10.html"
    report.write_text(page, encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "sla-report.png"
    screenshot.unlink(missing_ok=True)
    dom, browser_log = render(report.as_uri(), screenshot, tmp_path / "chromium")
    rows = re.findall(r"<tr( class=\"missed\")?><td>(\w+)</td>", dom)
    assert rows == [("", "acme"), (' class="missed"', "zeta")]
    assert dom.count("<th>") == 10
    assert "CONSOLE" not in browser_log, browser_log
    assert screenshot.stat().st_size > 10_000
    for width in (1200, 390):
        found = audit(page, tmp_path / "axe", width)
        assert found["violations"] == [], serious(found)
        assert found["cells_without_field_name"] == 0


def test_a_bad_month_is_an_error(october: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["report", "sla", "--config", str(october), "--month", "October"]
    assert main(args) == 2
    assert "--month 'October': write the month as YYYY-MM" in capsys.readouterr().err


def test_resolved_episodes_are_kept_400_days(state_url: str) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    _store_episodes(
        state_url,
        _resolved("outage", "old", now - timedelta(days=402), now - timedelta(days=401)),
        _resolved("outage", "kept", now - timedelta(days=399), now - timedelta(days=398)),
        # A later tick that resolves an alert prunes what is older than 400 days then.
        _resolved("outage", "new", now - timedelta(hours=1), now),
    )
    store = StateStore.open(state_url)
    try:
        episodes = store.episodes(("outage",), now - timedelta(days=500), now)
    finally:
        store.engine.dispose()
    assert [(e.labels["gateway"], e.severity) for e in episodes] == [
        ("kept", "critical"),
        ("new", "critical"),
    ]
    kept = episodes[0]
    assert (kept.rule, kept.started_at, kept.ended_at) == (
        "outage",
        now - timedelta(days=399),
        now - timedelta(days=398),
    )


def test_an_outage_the_daemon_resolved_is_time_in_breach(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10, failed=10)
    sqlite_db.steady("stripe", T0, minutes=20, per_minute=10)
    config = parse_config(
        {
            "source": {"url": sqlite_db.url, "table": sqlite_db.table},
            "detection": {
                "outage": {"for": "0s", "keep_firing_for": "0s"},
                "sla_breach": {"enabled": False},
            },
        },
        env={},
    )
    clock = Clock(T0)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as daemon:
        fired = daemon.tick().transitions
        clock.now = T0 + timedelta(minutes=15)
        resolved = daemon.tick().transitions
        report = sla_report(
            config, daemon.engine.source, daemon.store, "2026-11", T0 + timedelta(minutes=20)
        )
    assert [(t.event, t.alert.rule) for t in fired + resolved] == [
        ("firing", "outage"),
        ("resolved", "outage"),
    ]
    (stripe,) = report.gateways
    # From the condition's estimated start, the first all-failed minute of the tick's
    # outage window, to the tick that saw it clear.
    assert fired[0].alert.since == T0 - timedelta(minutes=5)
    assert (stripe.breach_minutes, stripe.incidents) == (20, 1)
    assert (stripe.payments, stripe.failures) == (300, 100)
    assert report.until == T0 + timedelta(minutes=20)
