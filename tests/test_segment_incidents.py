"""Segment incidents: one alert per incident however many series it lifts, and a segment's
outage told as an outage of that segment, not of its gateway."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from detector.config import Config, parse_config
from detector.model import Notification
from detector.service.web import WebServer
from detector.simulate import generate, write
from detector.source import SqlSource

from .conftest import T0, Clock, PaymentsDb, in_process_daemon, live_ticks
from .http_recorder import HttpRecorder
from .test_dimensions import CARD_SHARE, DAY, DIMENSIONS, TRAFFIC, _replay, _series_config

Segment = dict[str, str]


def _segments_fail(*incidents: tuple[Segment, float, datetime, datetime]) -> pd.DataFrame:
    """8 h of traffic (card is 15% of payments, Brazil about 13%) in which, for each
    ``(segment, failure_rate, start, end)``, stripe's final payments of that segment fail at
    ``failure_rate`` from ``start`` to ``end``."""
    frame = generate(DAY + timedelta(hours=8), DAY + timedelta(hours=17), TRAFFIC, seed=5)
    rng = np.random.default_rng(5)
    card = rng.random(len(frame)) < CARD_SHARE
    frame["method"] = np.where(card, "card", "wallet")
    at = frame["created_at"]
    for segment, rate, start, end in incidents:
        hit = (
            (frame["gateway"] == "stripe").to_numpy()
            & (frame["status"] != "pending").to_numpy()
            & (at >= start.replace(tzinfo=None)).to_numpy()
            & (at < end.replace(tzinfo=None)).to_numpy()
        )
        for column, value in segment.items():
            hit &= (frame[column] == value).to_numpy()
        failed = hit & (rng.random(len(frame)) < rate)
        frame.loc[hit, ["status", "error_code"]] = ["succeeded", None]
        frame.loc[failed, ["status", "error_code"]] = ["failed", "gateway_timeout"]
    return frame


def _series_alerts(events: list[Notification]) -> list[tuple[str, Segment, str]]:
    """Each series alert's (event, series labels, time), escalations left out."""
    return [
        (
            e.event,
            {k: v for k, v in e.labels.items() if k not in ("rule", "gateway", "severity")},
            e.at,
        )
        for e in events
        if e.rule == "sla_breach"
        and "escalated" not in e.idempotency_key
        and set(e.labels) - {"rule", "gateway", "severity"}
    ]


CARD_IN_BRAZIL = {"method": "card", "country": "BR"}
HOUR = timedelta(hours=1)
LATER = DAY + timedelta(hours=17)


def test_an_incident_of_card_payments_in_brazil_is_one_alert(sqlite_db: PaymentsDb) -> None:
    start = DAY + timedelta(hours=13)
    frame = _segments_fail((CARD_IN_BRAZIL, 0.5, start, start + HOUR))
    write(sqlite_db.engine, frame, sqlite_db.table)
    events = _replay(sqlite_db, _series_config(sqlite_db), end=LATER)

    # Both method=card and country=BR fail more than the rest of stripe: the first to open
    # tells the incident, once, and the other is its attribution line.
    alerts = _series_alerts(events)
    assert [(event, labels) for event, labels, _ in alerts] in (
        [("firing", {"method": "card"}), ("resolved", {"method": "card"})],
        [("firing", {"country": "BR"}), ("resolved", {"country": "BR"})],
    )
    assert start < datetime.fromisoformat(alerts[0][2]) < start + HOUR
    firing = next(e for e in events if e.event == "firing")
    attribution = firing.evidence.attribution
    assert attribution is not None
    assert {**firing.labels, **dict(attribution.segment)}.items() >= CARD_IN_BRAZIL.items()
    # Stripe as a whole stays near its SLA: no other alert at all.
    assert [e.event for e in events if "escalated" not in e.idempotency_key] == [
        "firing",
        "resolved",
    ]


def test_two_independent_segment_incidents_each_alert(sqlite_db: PaymentsDb) -> None:
    card, wallet_in_brazil = {"method": "card"}, {"method": "wallet", "country": "BR"}
    first = DAY + timedelta(hours=12)
    second = first + timedelta(hours=1, minutes=10)  # while card's alert is still open
    frame = _segments_fail(
        (card, 0.3, first, first + HOUR), (wallet_in_brazil, 0.15, second, LATER)
    )
    write(sqlite_db.engine, frame, sqlite_db.table)
    events = _replay(sqlite_db, _series_config(sqlite_db), end=LATER)

    firing = [(labels, at) for event, labels, at in _series_alerts(events) if event == "firing"]
    assert [labels for labels, _ in firing] == [card, {"country": "BR"}]
    assert first < datetime.fromisoformat(firing[0][1]) < first + HOUR
    assert second < datetime.fromisoformat(firing[1][1]) < second + HOUR
    brazil = next(e for e in events if e.event == "firing" and "country" in e.labels)
    assert brazil.evidence.attribution is not None
    assert dict(brazil.evidence.attribution.segment) == {"method": "wallet"}
    card_resolved = next(at for event, labels, at in _series_alerts(events) if event == "resolved")
    assert card_resolved > firing[1][1]


def _brazil_down(db: PaymentsDb) -> None:
    """An hour of healthy traffic, then every payment from Brazil (a quarter of stripe's) fails."""
    hour_ago = T0 - timedelta(hours=1)
    db.steady("stripe", hour_ago, minutes=70, per_minute=12, country="US")
    db.steady("stripe", hour_ago, minutes=70, per_minute=8, method="wallet", country="US")
    for method in ("card", "wallet"):
        db.steady("stripe", hour_ago, minutes=60, per_minute=3, method=method, country="BR")
        db.steady("stripe", T0, minutes=10, per_minute=3, failed=3, method=method, country="BR")


def test_an_outage_of_one_country_is_that_segment_s_outage_not_the_gateway_s(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    _brazil_down(sqlite_db)
    config = parse_config(
        {
            "source": {
                "url": sqlite_db.url,
                "table": sqlite_db.table,
                "columns": {"dimensions": DIMENSIONS},
            },
            "detection": {"sla_breach": {"series": [["method"], ["country"]]}},
            "receivers": {"hook": {"type": "webhook", "url": http.url_for("/hook")}},
            "route": {"receivers": ["hook"]},
        },
        env={},
    )
    clock = Clock(T0 + timedelta(minutes=1))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as daemon:
        server = WebServer(("127.0.0.1", 0), daemon).start()
        try:
            for _ in range(6):
                daemon.tick()
                daemon.deliver()
                clock.now += timedelta(minutes=1)
            url = "http://{}:{}/api/v1/gateways".format(*server.address)
            document = requests.get(url, timeout=10).json()
        finally:
            server.stop()

    hooks = [r.json() for r in http.requests]
    # One alert: Brazil's outage, on the first tick. Stripe's own failure rate
    # (23%) breaches its SLA, which the outage explains (muted by the default inhibit rule),
    # and card's breach is Brazil's too (held back).
    assert [(h["event"], h["rule"], h["labels"]) for h in hooks] == [
        (
            "firing",
            "outage",
            {"rule": "outage", "gateway": "stripe", "country": "BR", "severity": "critical"},
        )
    ]
    assert hooks[0]["at"] <= (T0 + timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    assert hooks[0]["summary"].startswith("stripe (country=BR) is down: ")
    stripe = next(g for g in document["gateways"] if g["gateway"] == "stripe")
    assert stripe["status"] == "degraded"
    assert stripe["segments_down"] == [{"country": "BR"}]
    assert stripe["reason"].startswith("stripe (country=BR) is down")


def test_replay_makes_exactly_the_series_outage_transitions_of_live_ticks(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    start = DAY + timedelta(hours=13)
    frame = _segments_fail(({"country": "BR"}, 1.0, start, start + timedelta(minutes=20)))
    write(payments_db.engine, frame, payments_db.table)
    config = _series_config(payments_db)
    begin, end = start - timedelta(minutes=10), start + timedelta(minutes=40)

    replayed = [n.to_json() for n in _replay(payments_db, config, begin, end)]

    assert replayed == live_ticks(config, open_source(config), begin, end)
    outages = [n for n in _replay(payments_db, config, begin, end) if n.rule == "outage"]
    assert [(n.event, n.labels["country"]) for n in outages] == [
        ("firing", "BR"),
        ("resolved", "BR"),
    ]
    assert datetime.fromisoformat(outages[0].at) <= start + timedelta(minutes=2)
