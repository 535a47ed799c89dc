"""Segment incidents: one alert per incident however many series it lifts, and a segment's
outage told as an outage of that segment, not of its gateway."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from detector.config import Config, parse_config
from detector.model import Counts, Notification, grouped
from detector.series import DimensionSeries
from detector.service.web import WebServer
from detector.simulate import generate, write
from detector.source import SqlSource
from detector.timeutil import epoch_minute, iso_z
from detector.window import CountWindow

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


def _brazil_down(db: PaymentsDb, rest_failing: float = 0.0) -> None:
    """An hour of healthy traffic, then every payment from Brazil (a quarter of stripe's)
    fails, and two minutes later ``rest_failing`` of the others (those from the US)."""
    hour_ago, later = T0 - timedelta(hours=1), T0 + timedelta(minutes=2)
    for method, per_minute in (("card", 12), ("wallet", 8)):
        failed = round(rest_failing * per_minute)
        db.steady("stripe", hour_ago, minutes=62, per_minute=per_minute, method=method)
        db.steady("stripe", later, minutes=8, per_minute=per_minute, failed=failed, method=method)
    for method in ("card", "wallet"):
        db.steady("stripe", hour_ago, minutes=60, per_minute=3, method=method, country="BR")
        db.steady("stripe", T0, minutes=10, per_minute=3, failed=3, method=method, country="BR")


def _six_ticks(
    db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Six minutes of a daemon watching stripe per method and country, sending to ``http``:
    the notifications it sent, and stripe in /api/v1/gateways."""
    config = parse_config(
        {
            "source": {"url": db.url, "table": db.table, "columns": {"dimensions": DIMENSIONS}},
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
    stripe = next(g for g in document["gateways"] if g["gateway"] == "stripe")
    return [r.json() for r in http.requests], stripe


BRAZIL_DOWN = (
    "firing",
    "outage",
    {"rule": "outage", "gateway": "stripe", "country": "BR", "severity": "critical"},
)


def test_an_outage_of_one_country_is_that_segment_s_outage_not_the_gateway_s(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    _brazil_down(sqlite_db)
    hooks, stripe = _six_ticks(sqlite_db, http, tmp_path)

    # One alert: Brazil's outage, on the first tick. Stripe's own failure rate
    # (23%) breaches its SLA, which the outage explains (muted by the default inhibit rule:
    # the rest of stripe is healthy), and card's breach is Brazil's too (held back).
    assert [(h["event"], h["rule"], h["labels"]) for h in hooks] == [BRAZIL_DOWN]
    assert hooks[0]["at"] <= iso_z(T0 + timedelta(minutes=2))
    assert hooks[0]["summary"].startswith("stripe (country=BR) is down: ")
    assert stripe["status"] == "degraded"
    assert stripe["segments_down"] == [{"country": "BR"}]
    assert stripe["reason"].startswith("stripe (country=BR) is down")


def test_a_breach_of_the_rest_of_the_gateway_is_told_beside_a_segment_s_outage(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    # Brazil is down, and two minutes later the US payments fail at 25%: Brazil's outage
    # does not explain that, so stripe's breach goes out too.
    _brazil_down(sqlite_db, rest_failing=0.25)
    hooks, stripe = _six_ticks(sqlite_db, http, tmp_path)

    sent = sorted((h["event"], h["rule"], h["labels"]) for h in hooks)
    assert sent == [
        BRAZIL_DOWN,
        (
            "firing",
            "sla_breach",
            {"rule": "sla_breach", "gateway": "stripe", "severity": "critical"},
        ),
    ]
    outage, breach = sorted(hooks, key=lambda h: h["rule"])
    assert outage["at"] <= iso_z(T0 + timedelta(minutes=2))
    # Told within two ticks of the US failures reaching the reads (12:02 on).
    assert breach["at"] <= iso_z(T0 + timedelta(minutes=4))
    assert breach["summary"].startswith("stripe: 32.7% of 104 payments failed since 12:00")
    assert stripe["segments_down"] == [{"country": "BR"}]


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


def _explains(card_in_us_failed: int) -> Callable[[Segment], bool]:
    """Whether Brazil's incident explains a breach of stripe's series (or of stripe: {}) over
    ten minutes in which every payment from Brazil fails and ``card_in_us_failed`` of the
    10 card payments from the US each minute."""
    config = parse_config(
        {
            "source": {"columns": {"dimensions": DIMENSIONS}},
            "detection": {"sla_breach": {"series": [["method"], ["country"]]}},
        },
        env={},
    )
    series = DimensionSeries(config, minutes=60)
    cells = {
        ("card", "US"): (10, card_in_us_failed),
        ("wallet", "US"): (10, 0),
        ("card", "BR"): (3, 3),
        ("wallet", "BR"): (3, 3),
    }
    end = epoch_minute(T0)
    minute = np.repeat(np.arange(end - 10, end), len(cells))
    payments = np.array([p for _ in range(10) for p, _f in cells.values()], dtype=np.int64)
    failures = np.array([f for _ in range(10) for _p, f in cells.values()], dtype=np.int64)
    values = np.array([list(cell) for _ in range(10) for cell in cells], dtype=object)
    detail = Counts(
        np.array(["stripe"] * len(minute), dtype=object),
        minute,
        payments,
        failures,
        payments,
        dimensions=("method", "country"),
        values=values,
    )
    gateways = CountWindow(60)
    gateways.advance(end)
    gateways.replace(end - 10, end, grouped(detail.gateway, minute, detail))
    series.update(end - 10, end, replace(Counts.empty(), detail=detail))
    since = T0 - timedelta(minutes=10)

    def explains(target: Segment) -> bool:
        return series.explains("stripe", {"country": "BR"}, target, since, 0.02, gateways)

    return explains


def test_a_segment_explains_the_breaches_of_what_it_is_the_whole_excess_of() -> None:
    healthy_elsewhere, card_fails_in_us = _explains(0), _explains(3)
    for explains in (healthy_elsewhere, card_fails_in_us):
        assert explains({"country": "BR"})  # its own series
        assert not explains({"country": "US"})  # no payment in common
    # Stripe and its card payments fail only in Brazil, then in the US too.
    assert healthy_elsewhere({})
    assert healthy_elsewhere({"method": "card"})
    assert not card_fails_in_us({})
    assert not card_fails_in_us({"method": "card"})
    # Wallet payments still fail only in Brazil.
    assert card_fails_in_us({"method": "wallet"})
