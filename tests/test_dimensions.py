"""Dimension columns: the alert that arrives says which values hold the excess failures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from detector.backtest import replay
from detector.cli import main
from detector.config import Config, parse_config
from detector.db import connect
from detector.model import Counts, Notification
from detector.rules import calibrate, evaluate_series
from detector.series import DimensionSeries
from detector.service.web import WebServer
from detector.simulate import GatewayProfile, Incident, generate, write
from detector.source import SqlSource
from detector.timeutil import epoch_minute

from .conftest import T0, Clock, PaymentsDb, in_process_daemon, live_ticks
from .http_recorder import HttpRecorder

DIMENSIONS = {"method": "method", "country": "country"}


def _config(
    db: PaymentsDb, http: HttpRecorder, dimensions: dict[str, str] = DIMENSIONS, **detection: Any
) -> Config:
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table, "columns": {"dimensions": dimensions}},
            "detection": detection,
            "receivers": {
                "slack": {"type": "slack", "url": http.url_for("/slack")},
                "hook": {"type": "webhook", "url": http.url_for("/hook")},
            },
            "route": {"receivers": ["slack", "hook"]},
        },
        env={},
    )


def _card_in_brazil_fails(db: PaymentsDb) -> None:
    """An hour of healthy traffic, then half of card payments from Brazil fail for 10 min."""
    hour_ago = T0 - timedelta(hours=1)
    db.steady("stripe", hour_ago, minutes=70, per_minute=12, failed=0, country="US")
    db.steady("stripe", hour_ago, minutes=70, per_minute=4, method="wallet", country="BR")
    db.steady("stripe", hour_ago, minutes=60, per_minute=4, country="BR")
    db.steady("stripe", T0, minutes=10, per_minute=4, failed=2, country="BR")


def _run(config: Config, tmp_path: Path, minutes: int) -> None:
    clock = Clock(T0)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as daemon:
        for _ in range(minutes):
            daemon.tick()
            daemon.deliver()
            clock.now += timedelta(minutes=1)


def test_slack_and_the_webhook_say_which_values_hold_the_excess_failures(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    _card_in_brazil_fails(sqlite_db)
    _run(_config(sqlite_db, http), tmp_path, minutes=11)

    slack = [r.json() for r in http.requests if r.path == "/slack"]
    hooks = [r.json() for r in http.requests if r.path == "/hook"]
    assert [(h["event"], h["rule"]) for h in hooks] == [("firing", "sla_breach")]
    attribution = hooks[0]["evidence"]["attribution"]
    # All the failures are card payments from Brazil: a fifth of stripe's payments.
    assert attribution["segment"] == {"method": "card", "country": "BR"}
    assert attribution["excess_share"] == 1.0
    assert attribution["payments_share"] == 0.2
    line = "100% of excess failures are method=card, country=BR (20% of payments)"
    assert f"Attribution: {line}" in hooks[0]["text"]
    assert len(slack) == 1
    assert any(line in block.get("text", {}).get("text", "") for block in slack[0]["blocks"])


def test_no_attribution_line_without_dimensions(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    _card_in_brazil_fails(sqlite_db)
    _run(_config(sqlite_db, http, dimensions={}), tmp_path, minutes=11)
    hooks = [r.json() for r in http.requests if r.path == "/hook"]
    assert [h["rule"] for h in hooks] == ["sla_breach"]
    assert hooks[0]["evidence"]["attribution"] is None
    assert "Attribution" not in hooks[0]["text"]


# --- per gateway x dimension series -----------------------------------------------------------

DAY = datetime(2026, 11, 17, tzinfo=UTC)  # a Tuesday
TRAFFIC = (
    GatewayProfile("stripe", per_minute=40, failure_rate=0.01),
    GatewayProfile("adyen", per_minute=10, failure_rate=0.01),
)
CARD_SHARE = 0.15
INCIDENT = (DAY + timedelta(hours=13), DAY + timedelta(hours=14))


def _payments(
    *, card_failure_rate: float | None, incidents: tuple[Incident, ...] = ()
) -> pd.DataFrame:
    """8 h of traffic where card is 15% of payments; during INCIDENT, stripe's card payments
    fail at ``card_failure_rate`` (stripe as a whole then fails at about 3%: 1.5x its SLA)."""
    frame = generate(
        DAY + timedelta(hours=8), DAY + timedelta(hours=16), TRAFFIC, incidents, seed=11
    )
    rng = np.random.default_rng(11)
    card = rng.random(len(frame)) < CARD_SHARE
    frame["method"] = pd.Categorical(np.where(card, "card", "wallet"), ["card", "wallet"])
    if card_failure_rate is not None:
        at = frame["created_at"]
        hit = (
            card
            & (frame["gateway"] == "stripe").to_numpy()
            & (frame["status"] != "pending").to_numpy()
            & (at >= INCIDENT[0].replace(tzinfo=None)).to_numpy()
            & (at < INCIDENT[1].replace(tzinfo=None)).to_numpy()
        )
        failed = hit & (rng.random(len(frame)) < card_failure_rate)
        frame.loc[hit, ["status", "error_code"]] = ["succeeded", None]
        frame.loc[failed, ["status", "error_code"]] = ["failed", "gateway_timeout"]
    return frame


def _series_config(db: PaymentsDb, **sla_breach: Any) -> Config:
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table, "columns": {"dimensions": DIMENSIONS}},
            "detection": {"sla_breach": {"series": [["method"], ["country"]], **sla_breach}},
        },
        env={},
    )


def _replay(
    db: PaymentsDb,
    config: Config,
    start: datetime = DAY + timedelta(hours=11),
    end: datetime = DAY + timedelta(hours=16),
) -> list[Notification]:
    source = SqlSource(connect(db.url), config.source)
    try:
        return list(replay(config, source, start, end))
    finally:
        source.engine.dispose()


def test_a_breach_confined_to_card_payments_fires_on_the_card_series(
    sqlite_db: PaymentsDb,
) -> None:
    write(sqlite_db.engine, _payments(card_failure_rate=0.15), sqlite_db.table)
    events = _replay(sqlite_db, _series_config(sqlite_db))

    firing = [e for e in events if e.event == "firing"]
    assert firing, "the card incident was not detected"
    first = firing[0]
    assert first.labels == {
        "rule": "sla_breach",
        "gateway": "stripe",
        "method": "card",
        "severity": first.severity,
    }
    assert INCIDENT[0] < datetime.fromisoformat(first.at) < INCIDENT[1]
    assert first.summary.startswith("stripe (method=card): ")
    # Nothing else fires first, and no other series at all: stripe as a whole (1.5x its SLA)
    # may cross its threshold later, when enough evidence has piled up.
    others = [e for e in firing if e.labels.get("method") != "card"]
    for other in others:
        assert {k: v for k, v in other.labels.items() if k != "severity"} == {
            "rule": "sla_breach",
            "gateway": "stripe",
        }
        assert other.at > first.at
    # Its evidence is the card payments' own: the incident's error code.
    assert first.evidence.top_error_codes[0][0] == "gateway_timeout"
    resolved = [e for e in events if e.event == "resolved"]
    assert resolved
    assert datetime.fromisoformat(resolved[-1].at) > INCIDENT[1]


def test_an_incident_of_the_whole_gateway_is_one_alert_not_one_per_series(
    sqlite_db: PaymentsDb,
) -> None:
    everything = Incident("stripe", INCIDENT[0], INCIDENT[1] - INCIDENT[0], failure_rate=0.12)
    frame = _payments(card_failure_rate=None, incidents=(everything,))
    write(sqlite_db.engine, frame, sqlite_db.table)
    events = _replay(sqlite_db, _series_config(sqlite_db))
    assert {(e.event, e.labels["gateway"], len(e.labels)) for e in events} == {
        ("firing", "stripe", 3),  # rule, gateway, severity: no method, no country
        ("resolved", "stripe", 3),
    }


def test_healthy_traffic_with_series_stays_quiet(sqlite_db: PaymentsDb) -> None:
    write(sqlite_db.engine, _payments(card_failure_rate=None), sqlite_db.table)
    assert _replay(sqlite_db, _series_config(sqlite_db)) == []


def test_replay_makes_exactly_the_series_transitions_of_live_ticks(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    write(payments_db.engine, _payments(card_failure_rate=0.3), payments_db.table)
    config = _series_config(payments_db)
    begin, end = INCIDENT[0] - timedelta(minutes=10), INCIDENT[0] + timedelta(minutes=40)

    replayed = [n.to_json() for n in _replay(payments_db, config, begin, end)]

    live = live_ticks(config, open_source(config), begin, end)
    assert replayed == live
    assert any('"method": "card"' in n for n in replayed)


def test_a_series_alert_is_routed_by_its_label_and_degrades_its_gateway(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    hour_ago = T0 - timedelta(hours=1)
    sqlite_db.steady("stripe", hour_ago, minutes=80, per_minute=40, method="wallet")
    sqlite_db.steady("stripe", hour_ago, minutes=60, per_minute=4, method="card")
    # One card payment in four fails: stripe as a whole fails 2.3%, close to its SLA.
    sqlite_db.steady("stripe", T0, minutes=20, per_minute=4, failed=1, method="card")
    with HttpRecorder() as cards, HttpRecorder() as rest:
        config = parse_config(
            {
                "source": {
                    "url": sqlite_db.url,
                    "table": sqlite_db.table,
                    "columns": {"dimensions": {"method": "method"}},
                },
                "detection": {"sla_breach": {"series": [["method"]]}},
                "receivers": {
                    "cards": {"type": "webhook", "url": cards.url_for("/cards")},
                    "rest": {"type": "webhook", "url": rest.url_for("/rest")},
                },
                "route": {
                    "receivers": ["rest"],
                    "routes": [{"match": {"method": "card"}, "receivers": ["cards"]}],
                },
            },
            env={},
        )
        clock = Clock(T0)
        state = f"sqlite:///{tmp_path / 'state.db'}"
        with (
            requests.Session() as session,
            in_process_daemon(config, state, clock, session) as daemon,
        ):
            for _ in range(20):
                daemon.tick()
                daemon.deliver()
                clock.now += timedelta(minutes=1)
            health = {h.gateway: h for h in daemon.snapshot().health}
        delivered = [r.json() for r in cards.requests]
        assert rest.requests == []
    assert [(d["event"], d["labels"]) for d in delivered] == [
        (
            "firing",
            {
                "rule": "sla_breach",
                "gateway": "stripe",
                "method": "card",
                "severity": delivered[0]["severity"],
            },
        )
    ]
    assert delivered[0]["title"].endswith("sla_breach on stripe (method=card)")
    assert health["stripe"].status == "degraded"
    assert health["stripe"].reason.startswith("stripe (method=card): ")


def test_metrics_show_each_series_beside_its_gateway_with_a_label_per_dimension(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    hour_ago = T0 - timedelta(hours=1)
    sqlite_db.steady("stripe", hour_ago, minutes=80, per_minute=40, method="wallet")
    sqlite_db.steady("stripe", hour_ago, minutes=60, per_minute=4, method="card")
    sqlite_db.steady("stripe", T0, minutes=20, per_minute=4, failed=1, method="card")
    sqlite_db.steady("adyen", hour_ago, minutes=80, per_minute=5, method="card")
    sqlite_db.steady("stripe", hour_ago, minutes=10, per_minute=1, method="apple_pay")
    config = parse_config(
        {
            "source": {
                "url": sqlite_db.url,
                "table": sqlite_db.table,
                "columns": {"dimensions": {"method": "method"}},
            },
            "detection": {"sla_breach": {"series": [["method"]]}},
        },
        env={},
    )
    clock = Clock(T0)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as daemon:
        server = WebServer(("127.0.0.1", 0), daemon).start()
        url = "http://{}:{}/metrics".format(*server.address)
        try:
            for _ in range(20):
                daemon.tick()
                clock.now += timedelta(minutes=1)
            text = requests.get(url, timeout=10).text
            # Hours later apple_pay's payments have left the 6 h count window; card's have not.
            clock.now = T0 + timedelta(hours=5, minutes=30)
            daemon.tick()
            later = requests.get(url, timeout=10).text
        finally:
            server.stop()

    def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    samples = scraped(text)

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    bank = {"rule": "sla_breach"}
    card_ratio = value("detector_evidence_ratio", gateway="stripe", method="card", **bank)
    wallet_ratio = value("detector_evidence_ratio", gateway="stripe", method="wallet", **bank)
    assert card_ratio is not None
    assert card_ratio >= 1
    assert wallet_ratio is not None
    assert wallet_ratio < 1
    assert value("detector_rule_active", gateway="stripe", method="card", **bank) == 1
    assert value("detector_evidence_ratio", gateway="stripe", **bank) is not None
    # The last 30 min of card payments: 11 healthy minutes, then 19 with 1 failure in 4.
    assert value("detector_series_payments", gateway="stripe", method="card") == 120
    assert value("detector_series_failures", gateway="stripe", method="card") == 19
    rate = value("detector_series_failure_ratio", gateway="stripe", method="card")
    assert rate == pytest.approx(19 / 120)
    upper = value("detector_series_failure_upper_bound_ratio", gateway="stripe", method="card")
    assert upper is not None
    assert upper > rate
    assert value("detector_series_payments", gateway="adyen", method="card") == 150
    # Gateway metrics stay per gateway, so their sums count each payment once.
    gateway_rows = [labels for name, labels in samples if name == "detector_gateway_payments"]
    assert sorted(gateway_rows) == [(("gateway", "adyen"),), (("gateway", "stripe"),)]
    # Only the configured series, and only those with payments in the count window.
    card, wallet, apple_pay, adyen_card = (
        (("gateway", gateway), ("method", method))
        for gateway, method in (
            ("stripe", "card"),
            ("stripe", "wallet"),
            ("stripe", "apple_pay"),
            ("adyen", "card"),
        )
    )
    listed = {labels for name, labels in samples if name == "detector_series_payments"}
    assert listed == {card, wallet, apple_pay, adyen_card}
    listed = {labels for name, labels in scraped(later) if name == "detector_series_payments"}
    assert listed == {card, wallet, adyen_card}


@pytest.mark.parametrize("limit", [0, 1])
def test_metrics_show_only_the_worst_series_up_to_the_limit(
    sqlite_db: PaymentsDb, tmp_path: Path, limit: int
) -> None:
    """server.series_metrics_limit keeps a scrape bounded however many series there are:
    the series whose condition holds come first; the gateways' metrics are all there."""
    hour_ago = T0 - timedelta(hours=1)
    sqlite_db.steady("stripe", hour_ago, minutes=80, per_minute=40, method="wallet")
    sqlite_db.steady("stripe", hour_ago, minutes=60, per_minute=4, method="card")
    sqlite_db.steady("stripe", T0, minutes=20, per_minute=4, failed=1, method="card")
    sqlite_db.steady("adyen", hour_ago, minutes=80, per_minute=5, method="card")
    config = parse_config(
        {
            "source": {
                "url": sqlite_db.url,
                "table": sqlite_db.table,
                "columns": {"dimensions": {"method": "method"}},
            },
            "detection": {"sla_breach": {"series": [["method"]]}},
            "server": {"series_metrics_limit": limit},
        },
        env={},
    )
    clock = Clock(T0)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as daemon:
        server = WebServer(("127.0.0.1", 0), daemon).start()
        try:
            for _ in range(20):
                daemon.tick()
                clock.now += timedelta(minutes=1)
            text = requests.get("http://{}:{}/metrics".format(*server.address), timeout=10).text
        finally:
            server.stop()
    labelled = {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "gateway" in sample.labels
    }
    series = {labels for name, labels in labelled if name == "detector_series_payments"}
    by_dimension = {
        tuple(pair for pair in labels if pair[0] != "rule")
        for _, labels in labelled
        if any(key == "method" for key, _ in labels)
    }
    gateways = {labels for name, labels in labelled if name == "detector_gateway_payments"}
    card = (("gateway", "stripe"), ("method", "card"))
    assert series == by_dimension == ({card} if limit else set())  # in every family
    assert gateways == {(("gateway", "adyen"),), (("gateway", "stripe"),)}
    assert (("detector_rule_active", (*card, ("rule", "sla_breach"))) in labelled) == bool(limit)


def _detail(minutes: int, rows: dict[tuple[str, str], tuple[int, int]]) -> Counts:
    """Per-minute counts by (gateway, method): ``(payments, failures)`` each minute."""
    first = epoch_minute(T0) - minutes
    keys = list(rows)
    minute = np.repeat(np.arange(first, first + minutes), len(keys))
    gateway = np.array([g for _ in range(minutes) for g, _m in keys], dtype=object)
    values = np.array([[m] for _ in range(minutes) for _g, m in keys], dtype=object)
    payments = np.array([rows[k][0] for _ in range(minutes) for k in keys], dtype=np.int64)
    failures = np.array([rows[k][1] for _ in range(minutes) for k in keys], dtype=np.int64)
    return Counts(
        gateway, minute, payments, failures, payments, dimensions=("method",), values=values
    )


def _series(min_payments: int) -> DimensionSeries:
    config = parse_config(
        {
            "source": {"columns": {"dimensions": {"method": "method"}}},
            "detection": {
                "sla_breach": {"series": [["method"]], "series_min_payments": min_payments}
            },
        },
        env={},
    )
    return DimensionSeries(config, minutes=360)


def test_a_quiet_series_is_not_tested_and_takes_no_share_of_the_budget() -> None:
    series = _series(min_payments=1000)
    # Three hours: wallet has 3600 final payments, card 360 -- every one of them failed.
    detail = _detail(180, {("stripe", "wallet"): (20, 0), ("stripe", "card"): (2, 2)})
    end = epoch_minute(T0)
    series.update(end - 180, end, replace(Counts.empty(), detail=detail))
    rows = series.rows
    assert dict(zip([r["method"] for r in rows.labels], rows.watched.tolist(), strict=True)) == {
        "wallet": True,
        "card": False,
    }
    assert series.shares == {"stripe": 2}
    results = evaluate_series(series.window, series.config, series.calibration, rows, {})
    assert [r.rule for r in results] == ["outage", "sla_breach"]
    assert not results[1].active.any()


def test_sharing_the_budget_among_series_raises_thresholds_by_about_its_log() -> None:
    series = _series(min_payments=100)
    detail = _detail(180, {("stripe", "wallet"): (20, 0), ("stripe", "card"): (20, 0)})
    end = epoch_minute(T0)
    series.update(end - 180, end, replace(Counts.empty(), detail=detail))
    config, window = series.config, series.window
    baselines = np.full(2, 0.02)
    alone = calibrate(window, config, baselines, (end - 1) // 60)
    shared = calibrate(window, config, baselines, (end - 1) // 60, shares=np.full(2, 10.0))
    rise = shared.threshold - alone.threshold
    # The run length between false alerts grows tenfold: h grows by about ln 10 = 2.3 nats
    # (the 2x and 15% members; the 50% member's threshold search overshoots at this volume,
    # which only errs towards fewer alerts).
    assert np.all((rise[:, :2] > 1.5) & (rise[:, :2] < 3.0)), rise
    assert np.all(rise[:, 2] > 1.5), rise


def test_check_names_a_firing_series_and_a_missing_dimension_column(
    sqlite_db: PaymentsDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hour_ago = T0 - timedelta(hours=1)
    sqlite_db.steady("stripe", hour_ago, minutes=80, per_minute=40, method="wallet")
    sqlite_db.steady("stripe", hour_ago, minutes=60, per_minute=4, method="card")
    sqlite_db.steady("stripe", T0, minutes=20, per_minute=4, failed=1, method="card")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alerts.yaml").write_text(
        "source:\n  columns:\n    dimensions: {method: method}\n"
        "detection:\n  sla_breach:\n    series: [[method]]\n"
    )
    at = (T0 + timedelta(minutes=20)).isoformat()
    assert main(["check", "--db", sqlite_db.url, "--at", at]) == 1
    stripe = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("stripe")
    )
    assert stripe.endswith("FIRING: sla_breach (method=card)")

    (tmp_path / "alerts.yaml").write_text(
        "source:\n  columns:\n    dimensions: {method: payment_method}\n"
    )
    assert main(["check", "--db", sqlite_db.url, "--at", at]) == 2
    assert (
        "source.columns.dimensions.method: column 'payment_method' not found"
        in capsys.readouterr().err
    )
