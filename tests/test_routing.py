"""Routing, grouping, reminders, silences, maintenance windows and inhibition, in simulated time.

The daemon runs in-process against a real SQLite payments table with an injected clock;
receivers are real HTTP servers on 127.0.0.1, so each assertion is about the messages a
person or a system on the other end would get.
"""

from __future__ import annotations

import io
import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from detector.alerting import Router, receivers_for, routes_for
from detector.alerts import AlertBook
from detector.cli import main
from detector.config import Config, ConfigError, parse_config
from detector.model import Evidence
from detector.notify import build_receivers
from detector.rules import Finding, source_down_finding
from detector.service.daemon import Daemon

from .conftest import T0, Clock, PaymentsDb, in_process_daemon
from .http_recorder import HttpRecorder

MINUTE = timedelta(minutes=1)
OUTAGE_ONLY = {
    "outage": {"for": "0s", "keep_firing_for": "0s"},
    "sla_breach": {"enabled": False},
    "no_data": {"enabled": False},
    "volume_drop": {"enabled": False},
}


def _config(db: PaymentsDb, **sections: Any) -> Config:
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table},
            "detection": OUTAGE_ONLY,
            **sections,
        },
        env={},
    )


def _am_hook(server: HttpRecorder) -> dict[str, str]:
    """A webhook in Alertmanager's format: one request per group, so messages are countable."""
    return {"type": "webhook", "url": server.url_for("/hook"), "format": "alertmanager"}


def _alerts(server: HttpRecorder) -> list[list[tuple[str, str, str]]]:
    """(status, alertname, gateway) of each alert of each message received."""
    return [
        [
            (a["status"], a["labels"]["alertname"], a["labels"].get("gateway", ""))
            for a in request.json()["alerts"]
        ]
        for request in server.requests
    ]


def _fail(db: PaymentsDb, gateway: str, start_minute: int, minutes: int = 40) -> None:
    """Every payment of ``gateway`` fails from ``T0 + start_minute`` on, for ``minutes``."""
    db.steady(gateway, T0 + start_minute * MINUTE, minutes, per_minute=10, failed=10)


def _arrivals(daemon: Daemon, clock: Clock, server: HttpRecorder, minutes: int) -> list[int]:
    """Run ``minutes`` minutes; the minute (from the start) each message arrived in."""
    arrivals = []
    for minute in range(minutes):
        before = len(server.requests)
        _run(daemon, clock, 1)
        arrivals += [minute] * (len(server.requests) - before)
    return arrivals


def _run(daemon: Daemon, clock: Clock, minutes: int) -> None:
    """Tick and deliver once a minute from the clock's current time, ``minutes`` times."""
    for _ in range(minutes):
        daemon.tick()
        daemon.deliver()
        clock.now += MINUTE


# --- the route tree ---------------------------------------------------------------------------


def _tree() -> Config:
    hook = {"type": "webhook", "url": "http://127.0.0.1:9/hook"}
    return parse_config(
        {
            "receivers": {
                "console": {"type": "console"},
                "pager": hook,
                "team-eu": hook,
                "audit": hook,
            },
            "route": {
                "receivers": ["console"],
                "routes": [
                    {
                        "match": {"severity": "critical"},
                        "receivers": ["pager"],
                        "continue": True,
                        "routes": [
                            {"match_re": {"gateway": "stripe|adyen"}, "receivers": ["team-eu"]}
                        ],
                    },
                    {"match_re": {"rule": "sla_.*"}, "receivers": ["audit"]},
                ],
            },
        },
        env={},
    )


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ({"rule": "outage", "severity": "critical", "gateway": "stripe"}, ["team-eu"]),
        ({"rule": "outage", "severity": "critical", "gateway": "paypal"}, ["pager"]),
        # Regexes are anchored: stripe-eu is not stripe.
        ({"rule": "outage", "severity": "critical", "gateway": "stripe-eu"}, ["pager"]),
        ({"rule": "sla_breach", "severity": "critical", "gateway": "paypal"}, ["pager", "audit"]),
        ({"rule": "sla_breach", "severity": "warning", "gateway": "stripe"}, ["audit"]),
        ({"rule": "no_data", "severity": "warning", "gateway": "paypal"}, ["console"]),
    ],
)
def test_the_deepest_matching_route_wins_and_continue_goes_on(
    labels: dict[str, str], receivers: list[str]
) -> None:
    assert receivers_for(_tree(), labels) == receivers


def test_child_routes_inherit_timing_from_their_parents() -> None:
    config = parse_config(
        {
            "alerting": {"repeat_interval": "3h"},
            "route": {
                "receivers": ["console"],
                "group_wait": "30s",
                "routes": [{"match": {"rule": "outage"}, "group_by": ["gateway"]}],
            },
        },
        env={},
    )
    (route,) = routes_for(config, {"rule": "outage", "gateway": "stripe"})
    assert route.id == "route.routes[0]"
    assert route.receivers == ("console",)
    assert route.group_by == ("gateway",)
    assert (route.group_wait, route.repeat_interval) == (timedelta(seconds=30), timedelta(hours=3))


def test_negative_matchers_route_everything_but_the_sandbox_gateway() -> None:
    config = parse_config(
        {
            "receivers": {
                "console": {"type": "console"},
                "pager": {"type": "webhook", "url": "http://127.0.0.1:9/"},
            },
            "route": {
                "receivers": ["console"],
                "routes": [
                    {
                        # Alertmanager syntax, quotes optional.
                        "matchers": ['gateway!="sandbox"', "rule !~ no_data|volume_.*"],
                        "receivers": ["pager"],
                    }
                ],
            },
        },
        env={},
    )
    assert receivers_for(config, {"rule": "outage", "gateway": "stripe"}) == ["pager"]
    assert receivers_for(config, {"rule": "outage", "gateway": "sandbox"}) == ["console"]
    assert receivers_for(config, {"rule": "volume_drop", "gateway": "stripe"}) == ["console"]
    # A missing label is the empty string: it is "not sandbox".
    assert receivers_for(config, {"rule": "source_down"}) == ["pager"]


def test_an_inhibit_rule_with_a_negative_target_spares_what_it_excludes() -> None:
    config = parse_config(
        {
            "detection": OUTAGE_ONLY,
            "inhibit_rules": [
                {
                    "source_matchers": ["rule=source_down"],
                    "target_matchers": ['gateway!="paypal"'],
                }
            ],
        },
        env={},
    )
    book = AlertBook(config)
    down = source_down_finding(3, T0, "down")
    findings = [
        Finding("outage", g, "critical", f"{g} fails", T0, Evidence(payments=10, failures=10))
        for g in ("stripe", "paypal")
    ]
    transitions = book.observe_findings("source_down", [down], T0)
    transitions += book.observe_findings("outage", findings, T0)
    router = Router(config, build_receivers(config, requests.Session(), io.StringIO()))
    sent = [
        (d.notification.rule, d.notification.labels.get("gateway"))
        for d in router.deliveries(transitions, book.alerts, T0)
    ]
    assert sorted(sent, key=str) == [("outage", "paypal"), ("source_down", None)]


def test_bad_matchers_and_windows_are_named_with_their_key_path() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(
            {
                "route": {"routes": [{"match_re": {"gateway": "stripe("}}]},
                "maintenance_windows": [
                    {"weekdays": ["someday"], "start": "02:00", "end": "03:00"},
                    {"start": "25:00", "end": "03:00", "timezone": "Mars/Olympus"},
                ],
                "inhibit_rules": [
                    {"source_match_re": {"rule": "*"}},
                    {"target_matchers": ["gateway~stripe", 'rule=~"("']},
                ],
            },
            env={},
        )
    problems = dict(raised.value.problems)
    assert "not a valid regular expression" in problems["route.routes[0].match_re.gateway"]
    assert "weekdays are mon, tue" in problems["maintenance_windows[0].weekdays"]
    assert "not a time of day" in problems["maintenance_windows[1].start"]
    assert "not an IANA time zone" in problems["maintenance_windows[1].timezone"]
    assert "not a valid regular expression" in problems["inhibit_rules[0].source_match_re.rule"]
    assert "is not a matcher" in problems["inhibit_rules[1].target_matchers[0]"]
    assert "not a valid regular expression" in problems["inhibit_rules[1].target_matchers[1]"]


# --- grouping ---------------------------------------------------------------------------------


def test_three_gateways_failing_in_the_same_minute_make_one_message(
    sqlite_db: PaymentsDb, http: HttpRecorder, session: requests.Session, tmp_path: Path
) -> None:
    with HttpRecorder() as slack:
        config = _config(
            sqlite_db,
            receivers={
                "am": _am_hook(http),
                "slack": {"type": "slack", "url": slack.url_for("/services/T/B/x")},
            },
            route={"receivers": ["am", "slack"]},
        )
        for gateway in ("stripe", "adyen", "paypal"):
            _fail(sqlite_db, gateway, -5)
        clock = Clock(T0)
        with in_process_daemon(config, f"sqlite:///{tmp_path}/s.db", clock, session) as daemon:
            _run(daemon, clock, 1)
    assert _alerts(http) == [
        [("firing", "outage", g) for g in ("adyen", "paypal", "stripe")],
    ]
    document = http.requests[0].json()
    assert (document["version"], document["status"]) == ("4", "firing")
    assert document["groupLabels"] == {"alertname": "outage"}
    (message,) = [r.json() for r in slack.requests]
    assert message["text"] == "[FIRING critical] outage on adyen, paypal, stripe"
    assert len(message["blocks"]) == 4  # the header and one section per gateway


def test_group_by_every_label_sends_one_message_per_alert(
    sqlite_db: PaymentsDb, http: HttpRecorder, session: requests.Session, tmp_path: Path
) -> None:
    config = _config(
        sqlite_db,
        receivers={"am": _am_hook(http)},
        route={"receivers": ["am"], "group_by": ["..."]},
    )
    for gateway in ("stripe", "adyen"):
        _fail(sqlite_db, gateway, -5)
    clock = Clock(T0)
    with in_process_daemon(config, f"sqlite:///{tmp_path}/s.db", clock, session) as daemon:
        _run(daemon, clock, 1)
    assert sorted(_alerts(http)) == [
        [("firing", "outage", "adyen")],
        [("firing", "outage", "stripe")],
    ]
    # Grouped by every label, each message's group labels are all of its alert's labels.
    for document in (r.json() for r in http.requests):
        (alert,) = document["alerts"]
        assert document["groupLabels"] == alert["labels"]
        assert document["groupLabels"]["gateway"] in ("adyen", "stripe")


def test_the_webhook_group_labels_are_the_routes_group_by(
    sqlite_db: PaymentsDb, http: HttpRecorder, session: requests.Session, tmp_path: Path
) -> None:
    config = _config(
        sqlite_db,
        receivers={"am": _am_hook(http)},
        route={"receivers": ["am"], "group_by": ["gateway", "severity"]},
    )
    _fail(sqlite_db, "stripe", -5)
    clock = Clock(T0)
    with in_process_daemon(config, f"sqlite:///{tmp_path}/s.db", clock, session) as daemon:
        _run(daemon, clock, 1)
    (document,) = [r.json() for r in http.requests]
    assert document["groupLabels"] == {"gateway": "stripe", "severity": "critical"}
    assert document["groupKey"] == '{}:{gateway="stripe", severity="critical"}'


def test_group_wait_collects_alerts_and_group_interval_spaces_messages(
    sqlite_db: PaymentsDb, http: HttpRecorder, session: requests.Session, tmp_path: Path
) -> None:
    config = _config(
        sqlite_db,
        receivers={"am": _am_hook(http)},
        route={"receivers": ["am"], "group_wait": "2m", "group_interval": "5m"},
    )
    _fail(sqlite_db, "stripe", -5)  # fires at the tick of T0
    _fail(sqlite_db, "adyen", 0)  # fires at T0+1m, while the group waits
    _fail(sqlite_db, "paypal", 2)  # fires at T0+3m, after the group's first message
    clock = Clock(T0)
    state = f"sqlite:///{tmp_path}/s.db"
    with in_process_daemon(config, state, clock, session) as daemon:
        arrivals = _arrivals(daemon, clock, http, 2)
    # A restart while the group waits neither splits it nor sends it early.
    with in_process_daemon(config, state, clock, session) as daemon:
        arrivals += [2 + minute for minute in _arrivals(daemon, clock, http, 7)]
    assert arrivals == [2, 7]  # group_wait after the first alert; group_interval after that
    assert _alerts(http) == [
        [("firing", "outage", "stripe"), ("firing", "outage", "adyen")],
        [("firing", "outage", "paypal")],
    ]


def test_a_rate_limited_receiver_is_left_alone_for_as_long_as_it_asks(
    sqlite_db: PaymentsDb, http: HttpRecorder, session: requests.Session, tmp_path: Path
) -> None:
    http.respond_with([(429, "slow down", {"Retry-After": "120"})])
    config = _config(sqlite_db, receivers={"hook": _am_hook(http)}, route={"receivers": ["hook"]})
    _fail(sqlite_db, "stripe", -5)
    clock = Clock(T0)
    with in_process_daemon(config, f"sqlite:///{tmp_path}/s.db", clock, session) as daemon:
        daemon.tick()
        daemon.deliver()
        for _ in range(20):  # five minutes of delivery passes
            clock.now += timedelta(seconds=15)
            daemon.deliver()
        history = daemon.store.deliveries()[0]["history"]
    assert len(http.requests) == 2  # the 429, then the retry it asked for; nothing between
    (limited, _, _), (delivered, outcome, _) = history
    assert outcome == "delivered"
    assert delivered - limited >= timedelta(seconds=120)


def test_a_receiver_down_for_minutes_gets_the_group_once_and_others_are_not_delayed(
    sqlite_db: PaymentsDb, http: HttpRecorder, session: requests.Session, tmp_path: Path
) -> None:
    with HttpRecorder() as healthy:
        http.respond_with([500] * 6)
        config = _config(
            sqlite_db,
            receivers={"flaky": _am_hook(http), "healthy": _am_hook(healthy)},
            route={"receivers": ["flaky", "healthy"]},
        )
        for gateway in ("stripe", "adyen"):
            _fail(sqlite_db, gateway, -5)
        clock = Clock(T0)
        state = f"sqlite:///{tmp_path}/s.db"
        with in_process_daemon(config, state, clock, session) as daemon:
            daemon.tick()
            daemon.deliver()
            assert len(healthy.requests) == 1
            for _ in range(40):  # 10 minutes of delivery passes
                clock.now += timedelta(seconds=15)
                daemon.deliver()
            outcomes = daemon.store.deliveries()
    assert len(http.requests) == 7  # six 500s, then delivered; never again after that
    assert sorted(_alerts(http)[-1]) == [
        ("firing", "outage", "adyen"),
        ("firing", "outage", "stripe"),
    ]
    assert {r.header("Idempotency-Key") for r in http.requests} == {
        healthy.requests[0].header("Idempotency-Key")
    }
    # Each attempt is on record, with the receiver's answer and backoff between them.
    history = outcomes[0]["history"]
    assert [outcome for _, outcome, _ in history] == ["retried"] * 6 + ["delivered"]
    assert "HTTP 500" in history[0][2]
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(history)]
    assert gaps[0] <= timedelta(seconds=15) < timedelta(seconds=30) <= gaps[-1]  # backing off
    assert sorted((d["receiver"], d["attempts"]) for d in outcomes if d["delivered_at"]) == [
        ("flaky", 7),
        ("flaky", 7),
        ("healthy", 1),
        ("healthy", 1),
    ]


def test_a_crash_after_the_tick_delivers_after_restart_and_not_again(
    sqlite_db: PaymentsDb, http: HttpRecorder, session: requests.Session, tmp_path: Path
) -> None:
    config = _config(sqlite_db, receivers={"am": _am_hook(http)}, route={"receivers": ["am"]})
    _fail(sqlite_db, "stripe", -5)
    clock = Clock(T0)
    state = f"sqlite:///{tmp_path}/s.db"
    with in_process_daemon(config, state, clock, session) as daemon:
        daemon.tick()  # the transition and its notification are committed ... then the crash
    assert http.requests == []
    with in_process_daemon(config, state, clock, session) as daemon:
        daemon.deliver()  # the restarted process delivers what the outbox holds
        _run(daemon, clock, 3)
    with in_process_daemon(config, state, clock, session) as daemon:
        _run(daemon, clock, 3)  # and a crash after delivery does not deliver it again
    assert _alerts(http) == [[("firing", "outage", "stripe")]]


# --- repeat_interval per route ----------------------------------------------------------------


def test_each_route_reminds_at_its_own_repeat_interval(
    sqlite_db: PaymentsDb, session: requests.Session, tmp_path: Path
) -> None:
    with HttpRecorder() as often, HttpRecorder() as seldom:
        config = _config(
            sqlite_db,
            receivers={"often": _am_hook(often), "seldom": _am_hook(seldom)},
            alerting={"repeat_interval": "1h"},
            route={
                "receivers": ["seldom"],
                "routes": [
                    {
                        "match": {"gateway": "stripe"},
                        "receivers": ["often"],
                        "repeat_interval": "20m",
                        "continue": True,
                    },
                    {"receivers": ["seldom"]},
                ],
            },
        )
        _fail(sqlite_db, "stripe", -5, minutes=80)
        clock = Clock(T0)
        with in_process_daemon(config, f"sqlite:///{tmp_path}/s.db", clock, session) as daemon:
            _run(daemon, clock, 65)
    assert len(often.requests) == 4  # fired at 0, reminded at 20, 40 and 60 minutes
    assert len(seldom.requests) == 2  # fired at 0, reminded at 60 minutes
    assert [r.json()["alerts"][0]["startsAt"] for r in often.requests] == [
        "2026-11-20T11:55:00Z"
    ] * 4


def test_alertmanager_gets_firing_alerts_again_every_resend_interval(
    sqlite_db: PaymentsDb, http: HttpRecorder, session: requests.Session, tmp_path: Path
) -> None:
    config = _config(
        sqlite_db,
        receivers={"am": {"type": "alertmanager", "url": http.url, "resend_interval": "2m"}},
        route={"receivers": ["am"], "group_wait": "5m"},  # Alertmanager groups by itself
    )
    _fail(sqlite_db, "stripe", -5, minutes=30)
    clock = Clock(T0)
    with in_process_daemon(config, f"sqlite:///{tmp_path}/s.db", clock, session) as daemon:
        arrivals = _arrivals(daemon, clock, http, 7)
    assert arrivals == [0, 2, 4, 6]
    ends = [request.json()[0]["endsAt"] for request in http.requests]
    assert ends == [f"2026-11-20T12:{minute:02d}:00Z" for minute in (8, 10, 12, 14)]


# --- silences ---------------------------------------------------------------------------------


def test_a_silenced_alert_is_notified_when_the_silence_ends_and_then_resolves(
    sqlite_db: PaymentsDb,
    http: HttpRecorder,
    session: requests.Session,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(sqlite_db, receivers={"am": _am_hook(http)}, route={"receivers": ["am"]})
    state = f"sqlite:///{tmp_path}/s.db"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alerts.yaml").write_text("{}\n")
    args = ["silence", "add", "--state", state, "--match", "gateway=stripe", "--for", "30m"]
    args += ["--start", T0.isoformat(), "--comment", "vendor maintenance"]
    assert main(args) == 0
    assert "vendor maintenance" in capsys.readouterr().out

    _fail(sqlite_db, "stripe", -5, minutes=45)  # fails until T0+40m
    _fail(sqlite_db, "adyen", -5, minutes=10)  # not silenced; fails until T0+5m
    clock = Clock(T0)
    with in_process_daemon(config, state, clock, session) as daemon:
        arrivals = _arrivals(daemon, clock, http, 50)
    assert _alerts(http) == [
        [("firing", "outage", "adyen")],
        [("resolved", "outage", "adyen")],
        [("firing", "outage", "stripe")],  # the silence ended while it still failed
        [("resolved", "outage", "stripe")],
    ]
    assert arrivals[2] == 30


def test_an_alert_silenced_from_start_to_end_notifies_nobody(
    sqlite_db: PaymentsDb,
    http: HttpRecorder,
    session: requests.Session,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(sqlite_db, receivers={"am": _am_hook(http)}, route={"receivers": ["am"]})
    state = f"sqlite:///{tmp_path}/s.db"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alerts.yaml").write_text("{}\n")
    args = ["silence", "add", "--state", state, "--match-re", "gateway=str.*", "--for", "2h"]
    assert main([*args, "--start", T0.isoformat(), "--comment", "planned"]) == 0
    _fail(sqlite_db, "stripe", -5, minutes=15)
    clock = Clock(T0)
    with in_process_daemon(config, state, clock, session) as daemon:
        _run(daemon, clock, 30)
        assert daemon.engine.alerts.alerts == {}  # it fired and resolved meanwhile
    assert http.requests == []


# --- maintenance windows ----------------------------------------------------------------------


def test_a_maintenance_window_holds_notifications_until_it_closes(
    sqlite_db: PaymentsDb, http: HttpRecorder, session: requests.Session, tmp_path: Path
) -> None:
    # T0 is Friday 12:00 UTC, 13:00 in Berlin: inside the window until 12:30 UTC.
    window = {"weekdays": "mon-fri", "start": "12:30", "end": "13:30", "timezone": "Europe/Berlin"}
    config = _config(
        sqlite_db,
        receivers={"am": _am_hook(http)},
        route={"receivers": ["am"]},
        maintenance_windows=[{"name": "stripe deploys", "match": {"gateway": "stripe"}, **window}],
    )
    _fail(sqlite_db, "stripe", -5, minutes=50)
    clock = Clock(T0)
    with in_process_daemon(config, f"sqlite:///{tmp_path}/s.db", clock, session) as daemon:
        arrivals = _arrivals(daemon, clock, http, 35)
    assert arrivals == [30]
    assert _alerts(http) == [[("firing", "outage", "stripe")]]


def test_a_window_past_midnight_is_open_on_the_morning_after() -> None:
    config = parse_config(
        {
            "maintenance_windows": [
                {"weekdays": ["sat"], "start": "23:00", "end": "02:00", "timezone": "Asia/Tokyo"}
            ]
        },
        env={},
    )
    (window,) = config.maintenance_windows
    # Friday 14:00 UTC is Friday 23:00 in Tokyo: not Saturday yet.
    assert not window.is_open(T0 + timedelta(hours=2))
    assert window.is_open(T0 + timedelta(days=1, hours=2))  # Saturday 23:00 in Tokyo
    assert window.is_open(T0 + timedelta(days=1, hours=4, minutes=59))  # Sunday 01:59
    assert not window.is_open(T0 + timedelta(days=1, hours=5))  # Sunday 02:00


def test_a_window_follows_daylight_saving_time() -> None:
    config = parse_config(
        {
            "maintenance_windows": [
                {"weekdays": "sun", "start": "02:00", "end": "04:00", "timezone": "Europe/Berlin"}
            ]
        },
        env={},
    )
    (window,) = config.maintenance_windows
    utc = T0.tzinfo
    # 29 March 2026: clocks go from 02:00 CET to 03:00 CEST.
    assert not window.is_open(datetime(2026, 3, 29, 0, 30, tzinfo=utc))  # 01:30 CET
    assert window.is_open(datetime(2026, 3, 29, 1, 0, tzinfo=utc))  # 03:00 CEST
    assert not window.is_open(datetime(2026, 3, 29, 2, 0, tzinfo=utc))  # 04:00 CEST
    assert window.is_open(datetime(2026, 7, 5, 0, 0, tzinfo=utc))  # 02:00 CEST in summer
    assert window.is_open(datetime(2026, 11, 22, 1, 0, tzinfo=utc))  # 02:00 CET in winter


# --- inhibition -------------------------------------------------------------------------------


def test_an_outage_mutes_the_same_gateways_sla_breach_but_not_others(
    sqlite_db: PaymentsDb, session: requests.Session, tmp_path: Path
) -> None:
    with HttpRecorder() as hook:
        config = parse_config(
            {
                "source": {"url": sqlite_db.url, "table": sqlite_db.table},
                "detection": {
                    "outage": {"for": "0s"},
                    "sla_breach": {"for": "0s"},
                    "no_data": {"enabled": False},
                },
                "receivers": {"hook": {"type": "webhook", "url": hook.url_for("/hook")}},
                "route": {"receivers": ["hook"]},
            },
            env={},
        )
        sqlite_db.steady("stripe", T0 - 30 * MINUTE, 30, per_minute=10, failed=10)
        sqlite_db.steady("adyen", T0 - 30 * MINUTE, 30, per_minute=10, failed=2)
        clock = Clock(T0)
        with in_process_daemon(config, f"sqlite:///{tmp_path}/s.db", clock, session) as daemon:
            result = daemon.tick()
            daemon.deliver()
        fired = {(t.alert.rule, t.alert.labels["gateway"]) for t in result.transitions}
        sent = {(r.json()["rule"], r.json()["labels"]["gateway"]) for r in hook.requests}
    assert fired == {("outage", "stripe"), ("sla_breach", "stripe"), ("sla_breach", "adyen")}
    assert sent == {("outage", "stripe"), ("sla_breach", "adyen")}


def test_a_source_down_alert_mutes_every_gateway(session: requests.Session) -> None:
    config = parse_config({"detection": OUTAGE_ONLY}, env={})
    book = AlertBook(config)
    outage = Finding(
        "outage", "stripe", "critical", "stripe fails", T0, Evidence(payments=10, failures=10)
    )
    transitions = book.observe_findings("source_down", [source_down_finding(3, T0, "down")], T0)
    transitions += book.observe_findings("outage", [outage], T0)
    router = Router(config, build_receivers(config, session, io.StringIO()))
    deliveries = router.deliveries(transitions, book.alerts, T0)
    assert [d.notification.rule for d in deliveries] == ["source_down"]


def test_a_silent_gateway_is_told_once_as_no_data_not_also_as_a_volume_drop(
    session: requests.Session,
) -> None:
    config = parse_config({}, env={})
    book = AlertBook(config)

    def finding(rule: str, gateway: str) -> Finding:
        return Finding(rule, gateway, "critical", f"{gateway} {rule}", T0, Evidence(payments=0))

    transitions = book.observe_findings("no_data", [finding("no_data", "stripe")], T0)
    transitions += book.observe_findings(
        "volume_drop", [finding("volume_drop", "stripe"), finding("volume_drop", "adyen")], T0
    )
    router = Router(config, build_receivers(config, session, io.StringIO()))
    deliveries = router.deliveries(transitions, book.alerts, T0)
    told = sorted((d.notification.rule, d.notification.labels["gateway"]) for d in deliveries)
    assert told == [("no_data", "stripe"), ("volume_drop", "adyen")]


def test_detector_outbox_shows_what_is_stuck_and_why(
    sqlite_db: PaymentsDb,
    http: HttpRecorder,
    session: requests.Session,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    http.respond_with([503, (400, "unknown field 'alerts'")])
    config = _config(sqlite_db, receivers={"am": _am_hook(http)}, route={"receivers": ["am"]})
    _fail(sqlite_db, "stripe", -5)
    state = f"sqlite:///{tmp_path}/s.db"
    clock = Clock(T0)
    with in_process_daemon(config, state, clock, session) as daemon:
        _run(daemon, clock, 2)
    (tmp_path / "alerts.yaml").write_text("{}\n")
    assert main(["outbox", "--config", str(tmp_path / "alerts.yaml"), "--state", state]) == 0
    entry, first, second = capsys.readouterr().out.splitlines()[1:]
    assert entry.split()[1:5] == ["am", "failed", "2", "firing"]
    assert "gateway=stripe" in entry
    assert first.split()[2:4] == ["retried:", "POST"]
    assert "HTTP 503" in first
    assert "failed: POST" in second
    assert "unknown field 'alerts'" in second
