"""Business volumes (``volumes:``): sales, sign-ups and visits counted per minute in the
database and watched by the volume rules, their alerts delivered like the gateways'."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import yaml

from detector.cli import main
from detector.config import Config, ConfigError, parse_config
from detector.service.volumes_page import render_volumes
from detector.service.web import WebServer
from detector.source import SchemaError
from detector.volume_source import open_volumes

from .accessibility import ARTIFACTS, audit, render, serious
from .conftest import T0, Clock, PaymentsDb, in_process_daemon
from .daemon_process import LISTEN, DaemonProcess, wait_until
from .http_recorder import HttpRecorder


class EventsTable:
    """A table of the user's events (orders, sign-ups, visits): one row per event."""

    def __init__(self, db: PaymentsDb, prefix: str):
        self.engine = db.engine
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.table = sa.Table(
            self.name,
            sa.MetaData(),
            # No generated id: DuckDB has no SERIAL, and the detector reads none.
            sa.Column("created_at", sa.DateTime, nullable=False, index=True),
            sa.Column("status", sa.String(20)),
            sa.Column("country", sa.String(2)),
        )
        self.table.create(self.engine)

    def add(
        self,
        start: datetime,
        minutes: int,
        per_minute: int,
        *,
        status: str = "paid",
        country: str = "US",
    ) -> None:
        """``per_minute`` events a minute for ``minutes`` from ``start``."""
        rows = [
            {
                "created_at": (start + timedelta(minutes=m, seconds=j * 59 / per_minute))
                .astimezone(UTC)
                .replace(tzinfo=None),
                "status": status,
                "country": country,
            }
            for m in range(minutes)
            for j in range(per_minute)
        ]
        if rows:
            with self.engine.begin() as connection:
                connection.execute(self.table.insert(), rows)

    def drop(self) -> None:
        self.table.drop(self.engine)


@pytest.fixture
def tables(payments_db: PaymentsDb) -> Iterator[list[EventsTable]]:
    """The event tables a test makes on a database server, dropped after it."""
    made: list[EventsTable] = []
    yield made
    for table in made:
        table.drop()


def _config(db: PaymentsDb, hook: str, volumes: dict[str, Any]) -> Config:
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table},
            "detection": {"volume_drop": {"for": "0s"}, "no_data": {"for": "0s"}},
            "volumes": volumes,
            "receivers": {"hook": {"type": "webhook", "url": hook}},
            "route": {"receivers": ["hook"]},
        },
        env={},
    )


def test_a_sales_drop_fires_volume_drop_for_sales_and_steady_signups_do_not(
    payments_db: PaymentsDb, tables: list[EventsTable], http: HttpRecorder, tmp_path: Any
) -> None:
    orders, users = EventsTable(payments_db, "orders"), EventsTable(payments_db, "users")
    tables += [orders, users]
    start = T0 - timedelta(hours=3)
    # Paid sales fall from 12 to 1 a minute in the last 20 minutes; refunds carry on, and
    # would hide the drop were ``where`` not applied.
    orders.add(start, 160, 12)
    orders.add(T0 - timedelta(minutes=20), 20, 1)
    orders.add(start, 180, 12, status="refunded")
    users.add(start, 180, 6)
    config = _config(
        payments_db,
        http.url,
        {
            "sales": {"table": orders.name, "where": {"status": ["paid"]}},
            "signups": {"table": users.name},
        },
    )
    clock = Clock(T0 - timedelta(minutes=30))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as daemon:
        while clock.now <= T0:
            daemon.tick()
            daemon.deliver()
            clock.now += timedelta(minutes=1)
    bodies = [r.json() for r in http.requests]
    assert [(b["event"], b["labels"]) for b in bodies] == [
        ("firing", {"rule": "volume_drop", "volume": "sales", "severity": "warning"})
    ]
    summary = bodies[0]["summary"]
    assert summary.startswith("sales: ")
    assert "events in the last 15 min" in summary


def test_a_volume_split_by_country_alerts_per_country(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Any
) -> None:
    sessions = EventsTable(sqlite_db, "sessions")
    start = T0 - timedelta(hours=3)
    # Brazil goes silent for the last half hour; the US falls from 20 to 2 visits a minute.
    sessions.add(start, 160, 20, country="US")
    sessions.add(T0 - timedelta(minutes=20), 21, 2, country="US")
    sessions.add(start, 150, 10, country="BR")
    config = _config(
        sqlite_db,
        http.url,
        {"visits": {"table": sessions.name, "timestamp": "created_at", "by": ["country"]}},
    )
    clock = Clock(T0 - timedelta(minutes=5))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as daemon:
        while clock.now <= T0:
            daemon.tick()
            daemon.deliver()
            clock.now += timedelta(minutes=1)
        page = render_volumes(daemon.snapshot())
    # The page marks each series while it has a firing alert.
    assert '<h3 class="name">visits (country=BR)</h3><span class="badge degraded">no_data' in page
    assert '<h3 class="name">visits (country=US)</h3><span class="badge degraded">volume_d' in page
    labels = sorted(
        (r.json()["labels"]["rule"], r.json()["labels"].get("country")) for r in http.requests
    )
    # Brazil's silence says its drop (the drop is inhibited), not the drop of the US.
    assert labels == [("no_data", "BR"), ("volume_drop", "US")]
    assert all(r.json()["labels"]["volume"] == "visits" for r in http.requests)
    titles = sorted(r.json()["title"] for r in http.requests)
    assert titles == [
        "[FIRING critical] no_data on visits (country=BR)",
        "[FIRING warning] volume_drop on visits (country=US)",
    ]
    assert all("gateway" not in r.json()["labels"] for r in http.requests)


@pytest.mark.parametrize(
    ("volume", "path", "problem"),
    [
        ({"table": "orders; DROP TABLE x"}, "volumes.sales.table", "not a plain SQL identifier"),
        ({"table": "orders", "timestamp": "a-b"}, "volumes.sales.timestamp", "plain SQL"),
        ({"table": "orders", "where": {"st'atus": ["paid"]}}, "volumes.sales.where", "plain SQL"),
        ({"table": "orders", "by": ["country)"]}, "volumes.sales.by", "plain SQL identifier"),
        ({"table": "orders", "by": ["gateway"]}, "volumes.sales.by", "sets itself"),
        ({"table": "orders", "where": {"status": []}}, "volumes.sales.where", "at least one"),
        ({"table": "orders", "wher": {"status": ["x"]}}, "volumes.sales.wher", "unknown key"),
    ],
)
def test_bad_identifiers_in_volumes_are_refused_with_the_key_path(
    volume: dict[str, Any], path: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"volumes": {"sales": volume}}, env={})
    text = str(raised.value)
    assert path in text
    assert problem in text


def test_a_volume_name_that_is_no_plain_word_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"volumes\.sa les.*not a plain name"):
        parse_config({"volumes": {"sa les": {"table": "orders"}}}, env={})


def test_a_where_value_is_bound_not_written_into_the_sql(
    sqlite_db: PaymentsDb, http: HttpRecorder
) -> None:
    orders = EventsTable(sqlite_db, "orders")
    orders.add(T0 - timedelta(minutes=2), 2, 4)
    orders.add(T0 - timedelta(minutes=2), 2, 1, status="x' OR '1'='1")
    config = _config(
        sqlite_db,
        http.url,
        {"sales": {"table": orders.name, "where": {"status": ["x' OR '1'='1"]}}},
    )
    volumes = open_volumes(config, strict=True)
    assert volumes is not None
    try:
        counts = volumes.read(T0 - timedelta(minutes=2), T0)
    finally:
        volumes.dispose()
    assert counts.gateway.tolist() == ["sales", "sales"]
    assert counts.volume.tolist() == [1, 1]


def test_a_missing_column_stops_start_up_with_the_key_path(
    sqlite_db: PaymentsDb, http: HttpRecorder
) -> None:
    orders = EventsTable(sqlite_db, "orders")
    config = _config(sqlite_db, http.url, {"sales": {"table": orders.name, "by": ["region"]}})
    with pytest.raises(SchemaError, match=r"volumes\.sales\.by\[0\]: column 'region' not found"):
        open_volumes(config, strict=True)


def test_the_yaml_example_of_the_docs_parses() -> None:
    text = """
volumes:
  sales:    {table: orders, timestamp: created_at, where: {status: [paid]}}
  signups:  {table: users, timestamp: created_at}
  visits:   {table: sessions, timestamp: started_at, by: [country]}
"""
    config = parse_config(yaml.safe_load(text), env={})
    assert sorted(config.volumes) == ["sales", "signups", "visits"]
    assert config.volumes["visits"].by == ("country",)


def _nine_weeks_of_sales(db: PaymentsDb) -> EventsTable:
    """Nine weeks of paid sales up to T0, one every 5 minutes by day and one every 20 minutes
    at night."""
    orders = EventsTable(db, "orders")
    start = T0 - timedelta(weeks=9)
    rows = []
    for hour in range(9 * 7 * 24):
        at = start + timedelta(hours=hour)
        every = 5 if 8 <= at.hour < 20 else 20
        rows += [
            {"created_at": (at + timedelta(minutes=m)).replace(tzinfo=None), "status": "paid"}
            for m in range(0, 60, every)
        ]
    with orders.engine.begin() as connection:
        connection.execute(orders.table.insert(), rows)
    return orders


def test_the_volumes_page_charts_each_volume_per_day_and_per_hour_against_its_band(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Any
) -> None:
    orders = _nine_weeks_of_sales(sqlite_db)
    config = _config(
        sqlite_db, http.url, {"sales": {"table": orders.name, "where": {"status": ["paid"]}}}
    )
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with (
        requests.Session() as session,
        in_process_daemon(config, state, Clock(T0), session) as daemon,
    ):
        daemon.tick()
        server = WebServer(("127.0.0.1", 0), daemon, config.server).start()
        try:
            base = "http://{}:{}".format(*server.address)
            status = session.get(base + "/", timeout=10)
            page = session.get(base + "/volumes", timeout=10)
        finally:
            server.stop()
    assert '<a href="/volumes">business volumes</a>' in status.text
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert '<h3 class="name">sales</h3>' in html
    # Two charts (per day, per hour), each with a line and the expected band.
    assert html.count("<svg") == 2
    assert html.count('class="expected-band"') == 2
    # Yesterday had 12 h x 12 + 12 h x 3 = 180 sales, within its usual band.
    assert "180 on Thu 19 Nov (usual " in html
    charts = daemon.volume_charts
    assert charts is not None
    assert charts.daily.shape == (1, 55)  # the whole days of the last 8 weeks
    assert charts.daily[0].tolist() == [180.0] * 55
    assert charts.hourly.shape == (1, 8 * 7 * 24)
    assert bool(((charts.low <= charts.hourly) & (charts.hourly <= charts.high)).all())


def test_the_volumes_page_says_when_no_volume_is_configured(
    sqlite_db: PaymentsDb, tmp_path: Any
) -> None:
    config = parse_config({"source": {"url": sqlite_db.url, "table": sqlite_db.table}}, env={})
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with (
        requests.Session() as session,
        in_process_daemon(config, state, Clock(T0), session) as daemon,
    ):
        daemon.tick()
        server = WebServer(("127.0.0.1", 0), daemon, config.server).start()
        try:
            base = "http://{}:{}".format(*server.address)
            status = session.get(base + "/", timeout=10)
            page = session.get(base + "/volumes", timeout=10)
        finally:
            server.stop()
    assert "/volumes" not in status.text
    assert page.status_code == 200
    assert "No volumes configured" in page.text


def test_a_volume_database_that_cannot_be_read_keeps_the_volume_alerts_as_they_are(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    orders = EventsTable(sqlite_db, "orders")
    orders.add(T0 - timedelta(hours=3), 160, 12)
    orders.add(T0 - timedelta(minutes=20), 20, 1)
    config = _config(sqlite_db, http.url, {"sales": {"table": orders.name}})
    clock = Clock(T0 - timedelta(minutes=5))  # the last 15 minutes all in the drop
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as daemon:
        daemon.tick()
        daemon.deliver()
        orders.drop()
        for _ in range(10):  # past keep_firing_for: a read failure is no recovery
            clock.now += timedelta(minutes=1)
            daemon.tick()
            daemon.deliver()
        firing = [a.labels for a in daemon.engine.alerts.alerts.values()]
    assert [(r.json()["event"], r.json()["rule"]) for r in http.requests] == [
        ("firing", "volume_drop")
    ]
    assert firing == [{"rule": "volume_drop", "volume": "sales"}]
    assert "volumes.sales: cannot read" in caplog.text


def test_detector_run_serves_the_volumes_page_and_refuses_a_volume_column_that_is_missing(
    sqlite_db: PaymentsDb, start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    orders = EventsTable(sqlite_db, "orders")
    orders.add(datetime.now(UTC) - timedelta(hours=3), 180, 2)
    state = f"sqlite:///{tmp_path / 'state.db'}"

    def config(volume: str) -> Path:
        path = tmp_path / "alerts.yaml"
        path.write_text(
            f"source: {{url: '{sqlite_db.url}', table: {sqlite_db.table}}}\n"
            f"state: {{url: '{state}'}}\nserver: {{listen: '{LISTEN}'}}\n"
            f"volumes:\n  sales: {volume}\n"
        )
        return path

    service = start_daemon(config(f"{{table: {orders.name}}}"), tmp_path / "run.log")
    service.wait_ticks(1)
    page = wait_until(
        lambda: (p := service.get("/volumes")).status_code == 200 and "<svg" in p.text and p,
        "the volumes page",
    )
    assert '<h3 class="name">sales</h3>' in page.text
    assert '<a href="/volumes">' in service.get("/").text

    broken = start_daemon(
        config(f"{{table: {orders.name}, by: [region]}}"), tmp_path / "broken.log", ready=False
    )
    assert broken.process.wait(timeout=60) != 0
    assert "volumes.sales.by[0]: column 'region' not found" in (tmp_path / "broken.log").read_text()


def test_the_volumes_page_in_chromium_shows_both_charts_and_passes_axe_on_desktop_and_phone(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    orders = _nine_weeks_of_sales(sqlite_db)
    signups = EventsTable(sqlite_db, "users")
    signups.add(T0 - timedelta(hours=3), 180, 2)  # under a week: no band yet
    config = _config(
        sqlite_db, http.url, {"sales": {"table": orders.name}, "signups": {"table": signups.name}}
    )
    state = f"sqlite:///{tmp_path / 'state.db'}"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "volumes-page.png"
    screenshot.unlink(missing_ok=True)
    with (
        requests.Session() as session,
        in_process_daemon(config, state, Clock(T0), session) as daemon,
    ):
        daemon.tick()
        server = WebServer(("127.0.0.1", 0), daemon, config.server).start()
        try:
            url = "http://{}:{}/volumes".format(*server.address)
            page = session.get(url, timeout=10).text
            dom, browser_log = render(url, screenshot, tmp_path / "chromium")
        finally:
            server.stop()
    sections = {
        name: dom.split(f'<h3 class="name">{name}</h3>')[1].split("</section>")[0]
        for name in ("sales", "signups")
    }
    # Each volume: a chart per day and one per hour; sales drawn against its band.
    assert all(section.count("<svg") == 2 for section in sections.values())
    assert sections["sales"].count('class="expected-band"') == 2
    assert "no expectation yet (needs a week of history)" in sections["signups"]
    assert "CONSOLE" not in browser_log, browser_log
    assert screenshot.stat().st_size > 10_000
    for width in (1200, 390):
        report = audit(page, tmp_path / "axe", width)
        assert report["violations"] == [], serious(report)
        assert report["cells_without_field_name"] == 0
        assert report["smallest_chart_label"] >= 11


def test_detector_check_prints_each_volume_series_and_exits_1_on_a_sales_drop(
    sqlite_db: PaymentsDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders, users = EventsTable(sqlite_db, "orders"), EventsTable(sqlite_db, "users")
    start = T0 - timedelta(hours=3)
    orders.add(start, 160, 12)
    orders.add(T0 - timedelta(minutes=20), 20, 1)  # sales fall from 12 to 1 a minute
    users.add(start, 180, 6)
    config = tmp_path / "alerts.yaml"
    config.write_text(
        f"source: {{url: '{sqlite_db.url}', table: {sqlite_db.table}}}\n"
        f"volumes:\n  sales: {{table: {orders.name}}}\n  signups: {{table: {users.name}}}\n"
    )
    args = ["check", "--config", str(config), "--at", T0.isoformat()]
    assert main(args) == 1
    out = capsys.readouterr().out
    volumes = out.split("\nvolume ")[1].splitlines()
    assert volumes[0].split() == ["events", "verdict", "(last", "15", "min)"]
    assert volumes[1].split() == ["sales", "15", "FIRING:", "volume_drop"]
    assert volumes[2].split() == ["signups", "90", "healthy"]

    # Steady sign-ups alone: nothing fires.
    config.write_text(
        f"source: {{url: '{sqlite_db.url}', table: {sqlite_db.table}}}\n"
        f"volumes:\n  signups: {{table: {users.name}}}\n"
    )
    assert main(args) == 0
    assert capsys.readouterr().out.split("\nvolume ")[1].splitlines()[1].split() == [
        "signups",
        "90",
        "healthy",
    ]


def test_backtest_replays_the_volumes_and_names_the_sales_drop(
    sqlite_db: PaymentsDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders, users = EventsTable(sqlite_db, "orders"), EventsTable(sqlite_db, "users")
    start = T0 - timedelta(hours=3)
    # Sales fall from 12 to 1 a minute for 20 minutes, then recover; sign-ups are steady.
    orders.add(start, 150, 12)
    orders.add(T0 - timedelta(minutes=30), 20, 1)
    orders.add(T0 - timedelta(minutes=10), 60, 12)
    users.add(start, 240, 6)
    config = tmp_path / "alerts.yaml"
    config.write_text(
        f"source: {{url: '{sqlite_db.url}', table: {sqlite_db.table}}}\n"
        "detection: {volume_drop: {for: 0s, keep_firing_for: 0s}}\n"
        f"volumes:\n  sales: {{table: {orders.name}}}\n  signups: {{table: {users.name}}}\n"
    )
    window = ["--start", (T0 - timedelta(hours=1)).isoformat(), "--end", T0.isoformat()]
    assert main(["backtest", "--config", str(config), *window]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    volume = [(r["event"], r["labels"]) for r in records if "volume" in r["labels"]]
    assert volume == [
        ("firing", {"rule": "volume_drop", "severity": "warning", "volume": "sales"}),
        ("resolved", {"rule": "volume_drop", "severity": "warning", "volume": "sales"}),
    ]
    firing = next(r for r in records if r["labels"].get("volume") == "sales")
    drop = T0 - timedelta(minutes=30)
    assert drop < datetime.fromisoformat(firing["at"]) < drop + timedelta(minutes=20)

    assert main(["backtest", "--config", str(config), *window, "--format", "table"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[1:5] for line in table if " sales " in line] == [
        ["firing", "warning", "volume_drop", "sales"],
        ["resolved", "warning", "volume_drop", "sales"],
    ]

    assert main(["backtest", "--config", str(config), *window, "--format", "html"]) == 0
    rows = [row for row in capsys.readouterr().out.split("<tr") if "volume_drop" in row]
    assert len(rows) == 2
    assert all('>volume_drop</td><td data-label="gateway">sales</td>' in row for row in rows)
