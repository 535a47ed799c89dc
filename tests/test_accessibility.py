"""The status page and the backtest report as people with assistive technology or a phone
meet them: axe-core's checks in Chromium on a desktop and at 390 px."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import requests

from detector.config import parse_config
from detector.service.web import WebServer

from .accessibility import audit, serious
from .conftest import T0, Clock, PaymentsDb, in_process_daemon

PHONE = 390


def _status_page(db: PaymentsDb, tmp_path: Path, *paths: str) -> list[str]:
    """The page during an outage of stripe, adyen healthy, one silence in force."""
    db.steady("stripe", T0 - timedelta(hours=3), minutes=170, per_minute=10)
    db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10, failed=10)
    db.steady("adyen", T0 - timedelta(hours=3), minutes=180, per_minute=10, failed=1)
    config = parse_config(
        {
            "source": {"url": db.url, "table": db.table},
            "detection": {"outage": {"for": "0s"}},
            "gateways": {"stripe": {"backup": "adyen"}, "adyen": {"sla": 0.2}},
        },
        env={},
    )
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, Clock(T0), session) as d:
        d.backfill_history()
        d.tick()
        server = WebServer(("127.0.0.1", 0), d).start()
        try:
            host, port = server.address
            return [
                session.get(f"http://{host}:{port}{path}", timeout=10).text
                for path in paths or ("/",)
            ]
        finally:
            server.stop()


@pytest.mark.parametrize("width", [1200, PHONE])
def test_the_status_page_has_no_serious_accessibility_violation(
    sqlite_db: PaymentsDb, tmp_path: Path, width: int
) -> None:
    (page,) = _status_page(sqlite_db, tmp_path)
    report = audit(page, tmp_path / "axe", width)
    assert report["width"] == width
    assert serious(report) == []
    # Nor any lesser one (a main landmark, headings for the gateways, ...).
    assert [v["id"] for v in report["violations"]] == []
    assert report["cells_without_field_name"] == 0
    assert report["smallest_chart_label"] >= 11  # CSS pixels


def test_the_status_page_reloads_itself_only_when_the_reader_asks(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    still, reloading = _status_page(sqlite_db, tmp_path, "/", "/?refresh=1")
    assert 'http-equiv="refresh"' not in still
    assert '<a href="/?refresh=1">refresh every minute</a>' in still
    assert '<meta http-equiv="refresh" content="60">' in reloading
    assert 'refreshes every minute (<a href="/">stop</a>)' in reloading
