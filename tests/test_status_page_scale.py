"""The status page and /api/v1/gateways with more gateways than a page shows: a summary,
the failing gateways first, pages of healthy ones, a search, and filters for routers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests

from detector.config import parse_config
from detector.service.status_page import PAGE_SIZE
from detector.service.web import WebServer

from .conftest import T0, Clock, _database, in_process_daemon

HEALTHY = [f"gw{i:03d}" for i in range(PAGE_SIZE + 50)]
BROKEN = ["zz-broken-1", "zz-broken-2"]  # named to sort last, yet shown first


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[requests.Session, str]]:
    (db,) = _database("sqlite", tmp_path_factory)
    tmp_path = tmp_path_factory.mktemp("scale")
    for gateway in HEALTHY:
        db.steady(gateway, T0 - timedelta(minutes=20), minutes=20, per_minute=2)
    for gateway in BROKEN:
        db.steady(gateway, T0 - timedelta(minutes=20), minutes=20, per_minute=10, failed=10)
    config = parse_config(
        {"source": {"url": db.url, "table": db.table}, "detection": {"outage": {"for": "0s"}}},
        env={},
    )
    with (
        requests.Session() as session,
        in_process_daemon(config, f"sqlite:///{tmp_path / 'state.db'}", Clock(T0), session) as d,
    ):
        d.tick()
        server = WebServer(("127.0.0.1", 0), d).start()
        try:
            host, port = server.address
            yield session, f"http://{host}:{port}"
        finally:
            server.stop()


def _shown(page: str) -> list[str]:
    return re.findall(r'<section class="gw" id="gw-([^"]+)"', page)


def test_the_page_sums_up_then_shows_the_failing_gateways_first_a_page_at_a_time(
    site: tuple[requests.Session, str],
) -> None:
    session, url = site
    document = session.get(f"{url}/api/v1/gateways", timeout=10).json()
    statuses = {g["gateway"]: g["status"] for g in document["gateways"]}
    assert len(statuses) == len(HEALTHY) + len(BROKEN)  # everything, by default
    assert {statuses[g] for g in BROKEN} == {"down"}
    first = session.get(f"{url}/", timeout=10).text
    counts = {s: list(statuses.values()).count(s) for s in ("down", "degraded", "unknown")}
    healthy = list(statuses.values()).count("healthy")
    assert (
        f'<p class="summary">{len(statuses)} gateways: {counts["down"]} down &middot; '
        f"{counts['degraded']} degraded &middot; {counts['unknown']} unknown &middot; "
        f"{healthy} healthy</p>"
    ) in first
    shown = _shown(first)
    assert shown[:2] == BROKEN
    assert len(shown) == PAGE_SIZE
    assert first.count("<svg") == 2 * PAGE_SIZE  # charts for the gateways shown only
    assert f"gateways 1-{PAGE_SIZE} of {len(statuses)} (page 1 of 2)" in first
    assert '<a href="/?page=2" rel="next">next</a>' in first
    second = session.get(f"{url}/?page=2", timeout=10).text
    rest = _shown(second)
    assert sorted(shown + rest) == sorted(statuses)  # each gateway on one page
    assert second.count("<svg") == 2 * len(rest)
    assert '<a href="/" rel="prev">previous</a>' in second
    beyond = session.get(f"{url}/?page=99", timeout=10).text
    assert _shown(beyond) == rest  # a page past the end shows the last one


def test_the_search_form_filters_by_name_without_script(
    site: tuple[requests.Session, str],
) -> None:
    session, url = site
    page = session.get(f"{url}/", timeout=10).text
    assert '<form class="search" method="get" action="/" role="search">' in page
    assert '<label for="q">' in page
    assert '<input id="q" name="q" type="search" value="">' in page
    found = session.get(f"{url}/", params={"q": "GW01"}, timeout=10).text
    assert _shown(found) == [g for g in HEALTHY if "gw01" in g]
    assert 'value="GW01"' in found
    nothing = session.get(f"{url}/", params={"q": '<b>"'}, timeout=10).text
    assert _shown(nothing) == []
    assert 'No gateway name contains "&lt;b&gt;&quot;".' in nothing
    assert 'value="&lt;b&gt;&quot;"' in nothing
    refreshing = session.get(f"{url}/?refresh=1&q=broken", timeout=10).text
    assert _shown(refreshing) == BROKEN
    assert '<meta http-equiv="refresh" content="60">' in refreshing
    assert '<input type="hidden" name="refresh" value="1">' in refreshing


def test_routers_can_ask_for_some_statuses_or_one_gateway(
    site: tuple[requests.Session, str],
) -> None:
    session, url = site
    every = session.get(f"{url}/api/v1/gateways", timeout=10).json()["gateways"]
    failing = session.get(f"{url}/api/v1/gateways?status=down,degraded", timeout=10).json()
    assert [g["gateway"] for g in failing["gateways"]] == [
        g["gateway"] for g in every if g["status"] in ("down", "degraded")
    ]
    assert {g["gateway"] for g in failing["gateways"]} >= set(BROKEN)
    one = session.get(f"{url}/api/v1/gateways?gateway=gw007", timeout=10).json()
    assert one["gateways"] == [g for g in every if g["gateway"] == "gw007"]
    both = session.get(f"{url}/api/v1/gateways?gateway=gw007&status=down", timeout=10)
    assert both.json()["gateways"] == []
    wrong = session.get(f"{url}/api/v1/gateways?status=down,sideways", timeout=10)
    assert wrong.status_code == 400
    assert "unknown status sideways" in wrong.json()["error"]


def test_routers_can_page_through_the_gateways_in_name_order(
    site: tuple[requests.Session, str],
) -> None:
    session, url = site
    every = session.get(f"{url}/api/v1/gateways", timeout=10).json()["gateways"]
    pages, after = [], None
    while True:
        params = {"limit": 40, **({"after": after} if after is not None else {})}
        page = session.get(f"{url}/api/v1/gateways", params=params, timeout=10).json()
        pages.append([g["gateway"] for g in page["gateways"]])
        after = page["next"]
        if after is None:
            break
        assert after == pages[-1][-1]
    assert [len(p) for p in pages] == [40] * 3 + [len(every) - 120]
    assert [name for page in pages for name in page] == sorted(g["gateway"] for g in every)
    by_name = {g["gateway"]: g for g in every}
    page = session.get(f"{url}/api/v1/gateways?limit=2&after=gw148", timeout=10).json()
    assert page["gateways"] == [by_name["gw149"], by_name["zz-broken-1"]]
    assert page["next"] == "zz-broken-1"
    # A filter first, then the page; a cursor that is no gateway's name still places the page.
    down = session.get(f"{url}/api/v1/gateways?status=down&limit=1&after=zz", timeout=10).json()
    assert ([g["gateway"] for g in down["gateways"]], down["next"]) == (
        ["zz-broken-1"],
        "zz-broken-1",
    )
    last = session.get(f"{url}/api/v1/gateways?status=down&after=zz-broken-1", timeout=10).json()
    assert ([g["gateway"] for g in last["gateways"]], last["next"]) == (["zz-broken-2"], None)
    for wrong in ("0", "-3", "ten"):
        answer = session.get(f"{url}/api/v1/gateways?limit={wrong}", timeout=10)
        assert answer.status_code == 400
        assert "a whole number from 1" in answer.json()["error"]
