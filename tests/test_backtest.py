"""The backtest: what a user replaying history sees, and that it is the daemon's own engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from detector.alerts import notification_for
from detector.backtest import replay
from detector.cli import main
from detector.config import Config, parse_config
from detector.engine import Engine
from detector.simulate import GatewayProfile, Incident, simulate
from detector.source import SqlSource

from .accessibility import audit, serious
from .conftest import PaymentsDb, live_ticks

START = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday
GATEWAYS = (
    GatewayProfile("stripe", per_minute=30, failure_rate=0.01),
    GatewayProfile("adyen", per_minute=12, failure_rate=0.012),
    GatewayProfile("paypal", per_minute=4, failure_rate=0.008),
)
INCIDENT = Incident("adyen", START + timedelta(hours=30), timedelta(minutes=40), failure_rate=0.15)
RECORD_KEYS = {
    "event",
    "at",
    "rule",
    "severity",
    "labels",
    "value",
    "baseline",
    "payments",
    "failures",
}


def _config(db: PaymentsDb) -> Config:
    return parse_config({"source": {"url": db.url, "table": db.table}}, env={})


@pytest.fixture
def two_days(sqlite_db: PaymentsDb) -> PaymentsDb:
    simulate(sqlite_db.engine, START, 2, GATEWAYS, [INCIDENT], seed=3, table=sqlite_db.table)
    return sqlite_db


@pytest.fixture
def default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a folder whose alerts.yaml is empty: the defaults apply."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alerts.yaml").write_text("{}\n")


def _backtest(
    db: PaymentsDb, capsys: pytest.CaptureFixture[str], start: str, end: str, *extra: str
) -> str:
    assert main(["backtest", "--db", db.url, "--start", start, "--end", end, *extra]) == 0
    return capsys.readouterr().out


@pytest.mark.usefixtures("default_config")
def test_jsonl_shows_the_incident_firing_and_resolving_and_nothing_else(
    two_days: PaymentsDb, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _backtest(two_days, capsys, "2026-11-16T03:00", "2026-11-18T00:00")
    records = [json.loads(line) for line in out.splitlines()]
    assert records, "the incident was not detected"
    assert all(set(r) >= RECORD_KEYS for r in records)
    assert {r["labels"]["gateway"] for r in records} == {"adyen"}
    firing = [r for r in records if r["event"] == "firing"]
    first = datetime.fromisoformat(firing[0]["at"])
    incident_start = INCIDENT.start.replace(tzinfo=UTC)
    assert incident_start < first <= incident_start + INCIDENT.duration
    assert firing[0]["value"] > firing[0]["baseline"] == 0.02
    assert firing[0]["failures"] <= firing[0]["payments"]
    assert firing[0]["statistic"] >= firing[0]["threshold"] > 0
    assert records[-1]["event"] == "resolved"
    assert datetime.fromisoformat(records[-1]["at"]) > incident_start + INCIDENT.duration


@pytest.mark.usefixtures("default_config")
def test_table_format_is_for_people(
    two_days: PaymentsDb, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _backtest(two_days, capsys, "2026-11-17T05:00", "2026-11-17T09:00", "--format", "table")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["at", "event", "severity"]
    assert any("adyen" in line and "firing" in line for line in lines)
    assert lines[-1].endswith("alert transition(s)")


@pytest.mark.usefixtures("default_config")
def test_html_report_charts_every_gateway_and_shades_the_incident(
    two_days: PaymentsDb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    page = _backtest(two_days, capsys, "2026-11-16T03:00", "2026-11-18T00:00", "--format", "html")
    sections = _ReportParser.parse(page)
    assert set(sections.charts) == {"stripe", "adyen", "paypal"}
    # Every gateway gets a failure-rate chart with its SLA line and a volume chart.
    assert all(count == 2 for count in sections.charts.values())
    assert sections.sla_lines == 3
    # Only adyen's incident is shaded, once on each of its two charts.
    assert sections.shaded == {"adyen": sections.shaded["adyen"]}
    assert sections.shaded["adyen"] >= 2
    assert any("adyen" in row and "firing" in row for row in sections.rows)
    assert sections.external == [], "the report must not load anything from the network"
    # Readable with assistive technology, and on a phone (axe-core in Chromium).
    for width in (1200, 390):
        report = audit(page, tmp_path / "axe", width)
        assert [v["id"] for v in report["violations"]] == [], serious(report)
        assert report["cells_without_field_name"] == 0
        assert report["smallest_chart_label"] >= 11


class _ReportParser(HTMLParser):
    """What a reader of the report sees: charts per gateway, shaded spans, table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.gateway = ""
        self.charts: dict[str, int] = {}
        self.shaded: dict[str, int] = {}
        self.sla_lines = 0
        self.rows: list[str] = []
        self.external: list[str] = []
        self._row: list[str] | None = None

    @classmethod
    def parse(cls, page: str) -> _ReportParser:
        parser = cls()
        parser.feed(page)
        return parser

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section":
            self.gateway = (attributes.get("id") or "").removeprefix("gw-")
        elif tag == "svg":
            self.charts[self.gateway] = self.charts.get(self.gateway, 0) + 1
        elif tag == "rect" and attributes.get("class") == "alert-span":
            self.shaded[self.gateway] = self.shaded.get(self.gateway, 0) + 1
        elif tag == "line" and attributes.get("class") == "sla-line":
            self.sla_lines += 1
        elif tag == "tr":
            self._row = []
        for name in ("src", "href"):
            if (attributes.get(name) or "").startswith(("http:", "https:", "//")):
                self.external.append(attributes[name] or "")

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.rows.append(" ".join(self._row))
            self._row = None


def test_replay_makes_exactly_the_transitions_of_live_ticks(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    simulate(
        payments_db.engine,
        START,
        0.5,
        GATEWAYS,
        [Incident("stripe", START + timedelta(hours=6), timedelta(minutes=20), failure_rate=1.0)],
        seed=5,
        table=payments_db.table,
    )
    config = _config(payments_db)
    begin, end = START + timedelta(hours=4), START + timedelta(hours=8)

    replayed = [n.to_json() for n in replay(config, open_source(config), begin, end)]

    # The same engine, ticked one minute at a time against the database, as the daemon does.
    live = live_ticks(config, open_source(config), begin, end)
    assert replayed == live
    assert any('"outage"' in n for n in replayed)


def _live_ticks_with_a_restart(
    config: Config,
    open_source: Callable[[Config], SqlSource],
    begin: datetime,
    end: datetime,
    restart_at: datetime,
    before_restart: Callable[[Engine], None] = lambda engine: None,
) -> list[str]:
    """Notifications (as JSON) of the daemon's engine ticked one minute at a time from ``begin``
    to ``end`` and restarted at ``restart_at`` with its alerts restored and no statistic saved;
    ``before_restart`` sees the engine about to stop."""
    engine, live, now = Engine(config, open_source(config)), [], begin
    while now <= end:
        if now == restart_at:
            before_restart(engine)
            restarted = Engine(config, open_source(config))
            restarted.alerts.restore(engine.alerts.snapshot())
            engine = restarted
        live += [notification_for(t, config).to_json() for t in engine.tick(now).transitions]
        now += timedelta(minutes=1)
    return live


def test_replay_equals_live_ticks_where_the_dispersion_comes_from_days_of_quarter_hours(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    # A week of bursty history: each hour's rho comes from the quarter hours the database
    # aggregates (live) or the replay derives from its one read, across hour boundaries and
    # a restart mid-hour.
    bursty = GatewayProfile("bursty", per_minute=6, failure_rate=0.02, dispersion_rho=0.03)
    onset = START + timedelta(days=7, hours=5)
    step = Incident("bursty", onset, timedelta(hours=1), 0.25)
    simulate(payments_db.engine, START, 7.3, (bursty,), [step], seed=7, table=payments_db.table)
    config = _config(payments_db)
    begin, end = onset - timedelta(minutes=50), onset + timedelta(minutes=100)
    replayed = [n.to_json() for n in replay(config, open_source(config), begin, end)]

    live = _live_ticks_with_a_restart(
        config, open_source, begin, end, restart_at=onset + timedelta(minutes=37)
    )
    assert replayed == live
    firing = [json.loads(n) for n in live if json.loads(n)["event"] == "firing"]
    assert [f["rule"] for f in firing] == ["sla_breach"]
    # At 6 payments a minute 5 h of minutes show this burstiness one time in ten, a week of
    # quarter hours three times in four (seeded simulations of both).
    assert firing[0]["evidence"]["dispersion"] > 0


def test_a_restart_mid_incident_changes_no_alert(
    two_days: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    # The daemon restarts with its alerts restored but no statistic saved: what it then
    # computes from the counts alone must carry on exactly where the replay does.
    config = _config(two_days)
    incident_start = INCIDENT.start.replace(tzinfo=UTC)
    begin, end = incident_start - timedelta(hours=2), incident_start + timedelta(hours=3)
    replayed = [n.to_json() for n in replay(config, open_source(config), begin, end)]

    def firing_mid_hour(engine: Engine) -> None:
        assert [a.state for a in engine.alerts.alerts.values()] == ["firing"]

    live = _live_ticks_with_a_restart(
        config,
        open_source,
        begin,
        end,
        restart_at=incident_start + timedelta(minutes=27),
        before_restart=firing_mid_hour,
    )
    assert replayed == live
    assert [json.loads(n)["event"] for n in live] == ["firing", "resolved"]
