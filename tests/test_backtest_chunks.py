"""A backtest read a chunk at a time, with dimension series and business volumes computed an
hour of ticks at once: the same alerts as ticking every minute, in memory that does not grow
with the range."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from detector import chunked_source
from detector.alerts import notification_for
from detector.backtest import replay
from detector.config import Config, parse_config
from detector.db import connect
from detector.engine import Engine
from detector.simulate import GatewayProfile, Incident, minute_counts, write
from detector.source import FrameSource, SqlSource
from detector.volume_source import open_volumes

from .conftest import T0, PaymentsDb, live_ticks
from .test_dimensions import DAY, _series_config
from .test_segment_incidents import _segments_fail
from .test_volumes import EventsTable

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def _replay_log(caplog: pytest.LogCaptureFixture) -> tuple[int, ...]:
    """The counts the replay's closing line gives: ticks, ticks left out as quiet, reads of
    payments, the most rows of counts held at once."""
    [record] = [r for r in caplog.records if r.getMessage().startswith("replayed")]
    assert isinstance(record.args, tuple)
    return tuple(int(a) for a in record.args)


def test_series_replayed_an_hour_at_once_in_chunks_alert_as_ticking_every_minute(
    sqlite_db: PaymentsDb, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    card_in_brazil = {"method": "card", "country": "BR"}
    frame = _segments_fail(
        (card_in_brazil, 0.5, DAY + timedelta(hours=13), DAY + timedelta(hours=14)),
        ({"country": "DE"}, 1.0, DAY + timedelta(hours=15), DAY + timedelta(hours=15, minutes=15)),
    )
    write(sqlite_db.engine, frame, sqlite_db.table)
    config = _series_config(sqlite_db)
    begin, end = DAY + timedelta(hours=12, minutes=30), DAY + timedelta(hours=16)
    # Chunks of two hours, so that the ticks' reads and hours cross their boundaries.
    monkeypatch.setattr(chunked_source, "CHUNK_MINUTES", 120)
    source = SqlSource(connect(sqlite_db.url), config.source)
    try:
        with caplog.at_level(logging.INFO, logger="detector.backtest"):
            replayed = [n.to_json() for n in replay(config, source, begin, end)]
        live = live_ticks(config, source, begin, end)
    finally:
        source.engine.dispose()

    assert replayed == live
    assert any('"country": "BR"' in n or '"method": "card"' in n for n in replayed)
    assert any('"country": "DE"' in n and '"outage"' in n for n in replayed)
    ticks, quiet, reads, _ = _replay_log(caplog)
    # The healthy hours with series are left out as quiet, not evaluated tick by tick.
    assert ticks == 211
    assert quiet > 60
    assert reads >= 3


def _healthy(days: int) -> FrameSource:
    gateways = (
        GatewayProfile("stripe", per_minute=20, failure_rate=0.01),
        GatewayProfile("adyen", per_minute=5, failure_rate=0.01),
    )
    start = datetime(2026, 11, 2, tzinfo=UTC)
    incident = Incident("adyen", start + timedelta(days=1, hours=10), HOUR, failure_rate=0.3)
    counts = minute_counts(start, start + timedelta(days=days), gateways, (incident,), seed=3)
    return FrameSource(counts.to_counts())


def _backtest(days: int, caplog: pytest.LogCaptureFixture) -> tuple[list[str], tuple[int, ...]]:
    source = _healthy(days)
    start = datetime(2026, 11, 2, 6, tzinfo=UTC)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="detector.backtest"):
        events = [
            n.to_json()
            for n in replay(Config(), source, start, start + timedelta(days=days, hours=-6))
        ]
    return events, _replay_log(caplog)


def test_a_longer_backtest_holds_no_more_counts_and_chunks_change_no_alert(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(chunked_source, "CHUNK_MINUTES", 10 * 24 * 60)
    whole, (*_, one_read, _) = _backtest(2, caplog)
    assert one_read == 1

    monkeypatch.setattr(chunked_source, "CHUNK_MINUTES", 180)
    two_days, (*_, reads, held_two) = _backtest(2, caplog)
    _, (*_, _, held_four) = _backtest(4, caplog)

    assert two_days == whole
    assert any('"firing"' in n and "adyen" in n for n in two_days)
    assert reads > 10
    # Three-hour chunks and the 8 h look-back: at most four chunks of 2 gateways at once.
    assert held_four == held_two <= 4 * 180 * 2


def _volume_config(db: PaymentsDb, table: str) -> Config:
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table},
            "detection": {
                "volume_drop": {"for": "0s", "keep_firing_for": "0s"},
                "no_data": {"for": "0s"},
            },
            "volumes": {"visits": {"table": table, "by": ["country"]}},
        },
        env={},
    )


def _volume_replay(
    config: Config, begin: datetime, end: datetime, caplog: pytest.LogCaptureFixture
) -> tuple[list[str], tuple[int, ...], tuple[int, ...]]:
    """The replay's notifications, its closing line's counts and the volumes' (reads,
    the most rows held at once)."""
    source = SqlSource(connect(config.source.url), config.source)
    volumes = open_volumes(config, strict=True)
    assert volumes is not None
    caplog.clear()
    try:
        with caplog.at_level(logging.INFO, logger="detector.backtest"):
            events = [n.to_json() for n in replay(config, source, begin, end, volumes)]
    finally:
        source.engine.dispose()
        volumes.dispose()
    [line] = [r for r in caplog.records if r.getMessage().startswith("read the volumes")]
    assert isinstance(line.args, tuple)
    return events, _replay_log(caplog), tuple(int(a) for a in line.args)


def test_a_backtest_with_a_volume_streamed_a_day_at_a_time_alerts_as_read_whole(
    sqlite_db: PaymentsDb, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = T0 - timedelta(days=3)
    sqlite_db.steady("stripe", first, 3 * 24 * 60, 1)
    visits = EventsTable(sqlite_db, "visits")
    drop, silence = first + timedelta(days=1, hours=14), first + timedelta(days=2, hours=9)
    # Brazil's visits fall from 8 to 1 a minute for 40 minutes; the US's stop for 30.
    visits.add(first, int((drop - first) / MINUTE), 8, country="BR")
    visits.add(drop, 40, 1, country="BR")
    visits.add(drop + 40 * MINUTE, int((T0 - drop) / MINUTE) - 40, 8, country="BR")
    visits.add(first, int((silence - first) / MINUTE), 3, country="US")
    visits.add(silence + 30 * MINUTE, int((T0 - silence) / MINUTE) - 30, 3, country="US")
    config = _volume_config(sqlite_db, visits.name)
    begin = first + timedelta(hours=12)

    monkeypatch.setattr(chunked_source, "CHUNK_MINUTES", 10 * 24 * 60)
    whole, _, (one_read, held_whole) = _volume_replay(config, begin, T0, caplog)
    # Chunks of three hours, so that the ticks' reads and hours cross their boundaries.
    monkeypatch.setattr(chunked_source, "CHUNK_MINUTES", 180)
    streamed, (ticks, quiet, _, _), (reads, held) = _volume_replay(config, begin, T0, caplog)

    assert streamed == whole
    fired = sorted(
        (json.loads(n)["labels"]["rule"], json.loads(n)["labels"]["country"])
        for n in streamed
        if '"firing"' in n
    )
    assert fired == [("no_data", "US"), ("volume_drop", "BR"), ("volume_drop", "US")]
    assert one_read == 1 < reads
    assert held < held_whole / 3  # three hours and the look-back, not the range
    # The healthy hours are left out as quiet, the volumes' too.
    assert quiet > ticks / 2


def test_a_backtest_with_a_volume_alerts_as_the_daemon_ticking_every_minute(
    sqlite_db: PaymentsDb, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = T0 - timedelta(hours=10)
    sqlite_db.steady("stripe", first, 10 * 60, 1)
    visits = EventsTable(sqlite_db, "visits")
    drop = T0 - timedelta(hours=2)
    visits.add(first, 8 * 60, 8, country="BR")
    visits.add(drop, 40, 1, country="BR")  # from 8 to 1 a minute for 40 minutes
    visits.add(drop + 40 * MINUTE, 80, 8, country="BR")
    config = _volume_config(sqlite_db, visits.name)
    begin = T0 - timedelta(hours=4)
    monkeypatch.setattr(chunked_source, "CHUNK_MINUTES", 90)
    replayed, (_, quiet, _, _), _ = _volume_replay(config, begin, T0, caplog)

    source = SqlSource(connect(config.source.url), config.source)
    volumes = open_volumes(config, strict=True)
    try:
        engine = Engine(config, source, volumes=volumes)
        live, now = [], begin
        while now <= T0:
            live += [
                notification_for(t, config).to_json()
                for t in engine.tick(now).transitions
                if not t.repeat
            ]
            now += MINUTE
    finally:
        source.engine.dispose()
        if volumes is not None:
            volumes.dispose()

    assert replayed == live
    assert [json.loads(n)["event"] for n in live] == ["firing", "resolved"]
    assert quiet > 60
