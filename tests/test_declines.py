"""Declines (``source.declines``, ``statuses.declined``): final payments that are not the
gateway's fault. On SQLite, PostgreSQL and MariaDB they never count against the SLA, and
every message, table and API shows their share beside the failure rate."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from detector.backtest import replay
from detector.cli import main
from detector.config import Config, ConfigError, parse_config
from detector.model import Notification
from detector.notify.messages import text
from detector.service.web import WebServer
from detector.simulate import GatewayProfile, Incident, simulate
from detector.source import SqlSource

from .conftest import T0, Clock, PaymentsDb, in_process_daemon, live_ticks

DECLINE_CODES = ("insufficient_funds", "do_not_honor", "expired_card")
# How each common schema marks a decline, as alerts.yaml's source section maps it.
VARIANTS: dict[str, dict[str, object]] = {
    "codes": {"declines": {"error_codes": list(DECLINE_CODES)}},
    "regex": {"declines": {"error_code_match": "^(insufficient_funds|do_not_honor|expired_.*)$"}},
    "status": {"statuses": {"declined": ["declined"]}},
}
START = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday
# 8% declines on average (4% at 15:00 to 12% at 03:00 UTC), 1.5% technical failures.
ACME = GatewayProfile(
    "acme",
    per_minute=30,
    failure_rate=0.015,
    error_codes=(("timeout", 0.6), ("processing_error", 0.4)),
    decline_rate=0.08,
)
# Technical failures at 6% for an hour.
INCIDENT_START, INCIDENT_END = START + timedelta(hours=8), START + timedelta(hours=9)
INCIDENT = Incident("acme", INCIDENT_START, INCIDENT_END - INCIDENT_START, failure_rate=0.06)


def _config(db: PaymentsDb, source: dict[str, object] | None = None) -> Config:
    return parse_config(
        {"source": {"url": db.url, "table": db.table, **(source or {})}, "gateways": {"acme": {}}},
        env={},
    )


def _mark_declined_status(db: PaymentsDb) -> None:
    """The schema with a status value of its own for declines."""
    table = sa.table(db.table, sa.column("status"), sa.column("error_code"))
    with db.engine.begin() as connection:
        connection.execute(
            table.update()
            .where(table.c.error_code.in_(DECLINE_CODES))
            .values(status="declined", error_code=None)
        )


@pytest.fixture(params=list(VARIANTS))
def declines_table(request: pytest.FixtureRequest, payments_db: PaymentsDb) -> Config:
    """Twelve hours of ``acme`` with declines and the incident, mapped one way each: the
    config reading them."""
    simulate(payments_db.engine, START, 0.5, [ACME], [INCIDENT], seed=7, table=payments_db.table)
    if request.param == "status":
        _mark_declined_status(payments_db)
    return _config(payments_db, VARIANTS[request.param])


def _firing(notifications: list[Notification], rule: str) -> list[Notification]:
    return [n for n in notifications if n.event == "firing" and n.rule == rule]


# --- counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_declines_are_final_payments_but_not_failures(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource], variant: str
) -> None:
    payments_db.add("stripe", T0, succeeded=10, pending=2)
    payments_db.add("stripe", T0, failed=3, error_code="gateway_timeout")
    payments_db.add("stripe", T0, failed=1, error_code=None)  # no code: a technical failure
    if variant == "status":
        payments_db.add("stripe", T0, other={"declined": 4})
    else:
        payments_db.add("stripe", T0, failed=2, error_code="insufficient_funds")
        payments_db.add("stripe", T0, failed=2, error_code="expired_card")
    counts = open_source(_config(payments_db, VARIANTS[variant])).read(
        T0, T0 + timedelta(minutes=1)
    )
    figures = [int(a[0]) for a in (counts.payments, counts.failures, counts.declines)]
    assert (figures, int(counts.volume[0]), counts.invalid) == ([18, 4, 4], 20, 0)


def test_without_a_declines_setting_failed_rows_are_failures(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.add("stripe", T0, succeeded=10)
    payments_db.add("stripe", T0, failed=2, error_code="insufficient_funds")
    counts = open_source(_config(payments_db)).read(T0, T0 + timedelta(minutes=1))
    assert [counts.payments.tolist(), counts.failures.tolist(), counts.declines.tolist()] == [
        [12],
        [2],
        [0],
    ]


def test_error_codes_and_sample_ids_are_the_technical_failures(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.add("stripe", T0, failed=6, error_code="do_not_honor")
    payments_db.add("stripe", T0, failed=2, error_code="gateway_timeout")
    payments_db.add("stripe", T0, failed=1, error_code=None)
    source = open_source(_config(payments_db, VARIANTS["regex"]))
    codes, ids = source.evidence("stripe", T0, T0 + timedelta(minutes=1), limit=5)
    assert codes == (("gateway_timeout", 2), ("(none)", 1))
    assert len(ids) == 3


def test_a_breakdown_counts_declines_as_payments_not_failures(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.add("stripe", T0, succeeded=5, failed=2, error_code="timeout", country="BR")
    payments_db.add("stripe", T0, failed=3, error_code="expired_card", country="BR")
    config = _config(
        payments_db, {"columns": {"dimensions": {"country": "country"}}, **VARIANTS["codes"]}
    )
    breakdown = open_source(config).breakdown("stripe", T0, T0 + timedelta(minutes=1))
    assert breakdown is not None
    assert (breakdown.payments.tolist(), breakdown.failures.tolist()) == ([10], [2])


# --- alerts ----------------------------------------------------------------------------


def test_declines_alone_raise_no_sla_breach_but_a_technical_incident_does(
    declines_table: Config, open_source: Callable[[Config], SqlSource]
) -> None:
    config = declines_table
    healthy = list(replay(config, open_source(config), START + timedelta(hours=2), INCIDENT_START))
    assert healthy == []

    during = list(replay(config, open_source(config), INCIDENT_START, INCIDENT_END))
    fired = _firing(during, "sla_breach")
    assert [n.labels["gateway"] for n in fired] == ["acme"]
    evidence = fired[0].evidence
    share = evidence.declines / evidence.payments
    assert 0.03 < share < 0.12  # the declines' share around 08:00-09:00, not counted as failures
    assert evidence.failures / evidence.payments > 0.03
    assert f", declines {share:.1%}" in text(fired[0])
    # What the on-call traces are the technical failures.
    codes = {code for code, _ in evidence.top_error_codes}
    assert codes
    assert not codes & set(DECLINE_CODES)


def test_the_same_table_without_the_declines_setting_breaches_the_sla(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    simulate(payments_db.engine, START, 0.5, [ACME], [INCIDENT], seed=7, table=payments_db.table)
    config = _config(payments_db)
    healthy = list(replay(config, open_source(config), START + timedelta(hours=2), INCIDENT_START))
    assert [n.rule for n in _firing(healthy, "sla_breach")] == ["sla_breach"]


def test_replay_with_declines_makes_exactly_the_transitions_of_live_ticks(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    simulate(payments_db.engine, START, 0.5, [ACME], [INCIDENT], seed=7, table=payments_db.table)
    config = _config(payments_db, VARIANTS["regex"])
    begin, end = START + timedelta(hours=7), START + timedelta(hours=10)
    replayed = [n.to_json() for n in replay(config, open_source(config), begin, end)]
    live = live_ticks(config, open_source(config), begin, end)
    assert replayed == live
    assert any('"declines": 0' not in n and '"sla_breach"' in n for n in replayed)


# --- what people read --------------------------------------------------------------------


def test_the_api_metrics_and_status_page_show_the_decline_share(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    minutes = 40
    sqlite_db.steady("stripe", T0 - timedelta(minutes=minutes), minutes, per_minute=9)
    for minute in range(minutes):
        at = T0 - timedelta(minutes=minute + 1)
        sqlite_db.add("stripe", at, failed=1, error_code="do_not_honor")
    config = _config(sqlite_db, VARIANTS["codes"])
    with (
        requests.Session() as session,
        in_process_daemon(config, f"sqlite:///{tmp_path / 'state.db'}", Clock(T0), session) as d,
    ):
        server = WebServer(("127.0.0.1", 0), d).start()
        try:
            d.tick()
            host, port = server.address
            base = f"http://{host}:{port}"
            document = session.get(f"{base}/api/v1/gateways", timeout=10).json()
            metrics = session.get(f"{base}/metrics", timeout=10).text
            page = session.get(f"{base}/", timeout=10).text
        finally:
            server.stop()
    stripe = next(g for g in document["gateways"] if g["gateway"] == "stripe")
    # The SLA window's 30 minutes: 300 final payments, 30 of them declined, no failure.
    assert (stripe["payments"], stripe["failures"], stripe["status"]) == (300, 0, "healthy")
    assert stripe["declines"] == {"payments": 30, "rate": pytest.approx(0.1)}
    assert 'detector_gateway_declines{gateway="stripe"} 30.0' in metrics
    assert 'detector_gateway_failures{gateway="stripe"} 0.0' in metrics
    assert 'detector_gateway_decline_ratio{gateway="stripe"} 0.1' in metrics
    assert "300 payments, 10.0% declined in 30 min" in page


def test_check_shows_the_decline_share_beside_the_failure_rate(
    sqlite_db: PaymentsDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=40), minutes=40, per_minute=9)
    for minute in range(40):
        sqlite_db.add("stripe", T0 - timedelta(minutes=minute + 1), failed=1, error_code="05")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alerts.yaml").write_text(
        json.dumps({"source": {"table": sqlite_db.table, "declines": {"error_code_match": "^05$"}}})
    )
    assert main(["check", "--db", sqlite_db.url, "--at", T0.isoformat()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-2:] == ["declines", "verdict"]
    stripe = next(line.split() for line in lines if line.startswith("stripe"))
    assert stripe[1:4] == ["300", "0", "0.0%"]
    assert stripe[-2:] == ["10.0%", "healthy"]


# --- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "path", "message"),
    [
        ({"declines": {"codes": ["51"]}}, "source.declines.codes", "unknown key"),
        (
            {"declines": {"error_code_match": "^(51|05"}},
            "source.declines.error_code_match",
            "not a valid regular expression",
        ),
        (
            {"columns": {"error_code": None}, "declines": {"error_codes": ["51"]}},
            "source.declines",
            "set source.columns.error_code",
        ),
        (
            {"statuses": {"declined": ["failed"]}},
            "source.statuses",
            "status 'failed' is listed as both failed and declined",
        ),
    ],
)
def test_a_bad_declines_setting_names_its_key_path(
    source: dict[str, object], path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"source": source}, env={})
    assert [p for p, m in error.value.problems if message in m] == [path]
