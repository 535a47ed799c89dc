"""Declared days (``calendar:``) and unusual days nobody declared: what the volume rules
raise on and after them, live and in replay, and what a wrong calendar says."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from detector.backtest import replay
from detector.config import ConfigError, load_config, parse_config
from detector.model import Counts, Notification
from detector.rules import VolumeHistory
from detector.simulate import GatewayProfile, Incident, Seasons, minute_counts
from detector.source import FrameSource
from detector.timeutil import epoch_minute

from .conftest import live_ticks

START = datetime(2026, 10, 12)  # a Monday, naive UTC
ZONE = "Europe/Berlin"
SHOP = GatewayProfile("shop", per_minute=40, failure_rate=0.01)
WEEK_SHAPE = (1.0, 1.0, 1.0, 1.05, 1.15, 0.7, 0.5)


def _counts(
    days: int,
    special: tuple[tuple[date, float], ...],
    incidents: tuple[Incident, ...] = (),
    seed: int = 3,
) -> FrameSource:
    seasons = Seasons(ZONE, WEEK_SHAPE, 0.02, START, special)
    counts = minute_counts(
        START, START + timedelta(days=days), (SHOP,), incidents, seed=seed, seasons=seasons
    )
    return FrameSource(counts.to_counts())


def _calendar(*days: dict[str, Any]) -> dict[str, Any]:
    """alerts.yaml with the shop's time zone (whose clock its traffic follows), and ``days``."""
    return {"calendar": {"timezone": ZONE, "days": list(days)}}


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(ZONE)).astimezone(UTC)


def _usual_at(source: FrameSource, at: datetime) -> float:
    """The payments of the same 15 minutes a week earlier."""
    counts = source.counts
    minute = epoch_minute(at.replace(tzinfo=UTC)) - 7 * 1440
    inside = (counts.minute >= minute - 15) & (counts.minute < minute)
    return float(counts.volume[inside].sum())


def _volume_alerts(
    source: FrameSource, config: dict[str, Any], first: date, last: date
) -> list[Notification]:
    """The volume rules' firing alerts from local midnight of ``first`` to that of ``last``."""
    events = replay(
        parse_config(config, env={}),
        source,
        _local_midnight(first),
        _local_midnight(last + timedelta(days=1)),
    )
    return [e for e in events if e.event == "firing" and e.rule in ("volume_drop", "no_data")]


# --- declared days ----------------------------------------------------------------------------

HOLIDAY = START.date() + timedelta(days=30)  # a Wednesday, after four weeks of history


def test_a_declared_holiday_raises_no_volume_drop_where_an_undeclared_one_does() -> None:
    source = _counts(31, ((HOLIDAY, 0.3),))
    declared = _calendar({"name": "Christmas", "date": HOLIDAY.isoformat(), "volume": 0.3})

    assert _volume_alerts(source, declared, HOLIDAY, HOLIDAY) == []
    undeclared = _volume_alerts(source, _calendar(), HOLIDAY, HOLIDAY)
    assert {e.rule for e in undeclared} == {"volume_drop"}


def test_a_drop_to_a_fifth_on_a_declared_holiday_still_fires() -> None:
    at = datetime.combine(HOLIDAY, datetime.min.time()) + timedelta(hours=13)
    drop = Incident("shop", at, timedelta(hours=2), volume_factor=0.2)
    source = _counts(31, ((HOLIDAY, 0.3),), (drop,))
    declared = _calendar({"name": "Christmas", "date": HOLIDAY.isoformat(), "volume": 0.3})

    (alert,) = _volume_alerts(source, declared, HOLIDAY, HOLIDAY)
    assert alert.rule == "volume_drop"
    fired = datetime.fromisoformat(alert.at).replace(tzinfo=None)
    assert at < fired < at + timedelta(minutes=30)
    # Against the holiday's expectation, not the usual day's: a fifth of the usual would
    # have alerted from the holiday's first hours on.
    assert alert.evidence.expected_payments is not None
    assert alert.evidence.expected_payments < 0.5 * _usual_at(source, fired)


SALE = START.date() + timedelta(days=9)  # the Wednesday of the second week


def test_a_declared_sale_day_does_not_lift_the_days_after_it() -> None:
    # With two weeks of history a median is the mean of two: an undeclared sale day at 4x
    # raises the next week's expectation of its weekday by 150%.
    source = _counts(17, ((SALE, 4.0),))
    declared = _calendar({"name": "Black Friday", "date": SALE.isoformat(), "volume": 4.0})
    next_week = SALE + timedelta(days=7)

    assert _volume_alerts(source, declared, SALE, next_week) == []
    assert _volume_alerts(source, _calendar(), next_week, next_week) != []


def test_a_campaign_holds_the_volume_drop_off_but_a_silence_is_still_an_outage() -> None:
    first, last = HOLIDAY - timedelta(days=1), HOLIDAY + timedelta(days=1)
    noon = datetime.combine(HOLIDAY, datetime.min.time()) + timedelta(hours=11)
    drop = Incident("shop", noon, timedelta(hours=2), volume_factor=0.1)
    silence = Incident("shop", noon + timedelta(hours=4), timedelta(minutes=40), volume_factor=0)
    source = _counts(33, (), (drop, silence))
    campaign = _calendar({"name": "campaign", "from": first.isoformat(), "to": last.isoformat()})

    held = _volume_alerts(source, campaign, first, last)
    assert [e.rule for e in held] == ["no_data"]
    assert datetime.fromisoformat(held[0].at).replace(tzinfo=None) > silence.start
    assert "volume_drop" in {e.rule for e in _volume_alerts(source, _calendar(), first, last)}


def test_replay_equals_live_ticks_across_a_declared_day() -> None:
    at = datetime.combine(HOLIDAY, datetime.min.time()) + timedelta(hours=1)
    drop = Incident("shop", at, timedelta(hours=1), volume_factor=0.05)
    source = _counts(31, ((HOLIDAY, 0.3),), (drop,))
    config = parse_config(
        _calendar({"name": "holiday", "date": HOLIDAY.isoformat(), "volume": 0.3}), env={}
    )
    begin = _local_midnight(HOLIDAY) - timedelta(hours=1)
    end = begin + timedelta(hours=4)

    replayed = [n.to_json() for n in replay(config, source, begin, end)]
    assert replayed == live_ticks(config, source, begin, end)
    assert any('"volume_drop"' in n for n in replayed)


def test_the_status_pages_expected_band_follows_the_declared_volume() -> None:
    # 100 payments every quarter hour, 30 on the holiday: the band shows 0.3x of the usual
    # 400 an hour on it once declared.
    holiday = _local_midnight(HOLIDAY)
    end_hour = epoch_minute(holiday) // 60 + 12
    slots = np.arange((end_hour - VolumeHistory.hours_needed()) * 60, end_hour * 60, 15)
    volume = np.where(slots >= epoch_minute(holiday), 30, 100).astype(np.int64)
    counts = Counts(np.full(slots.size, "shop", dtype=object), slots, volume, volume * 0, volume)
    calendar = parse_config(
        _calendar({"name": "holiday", "date": HOLIDAY.isoformat(), "volume": 0.3}), env={}
    ).calendar

    band, _ = VolumeHistory(end_hour, counts, calendar).expected_hours(["shop"], end_hour - 2)
    np.testing.assert_allclose(band, [[120.0, 120.0, 120.0]])
    undeclared, _ = VolumeHistory(end_hour, counts).expected_hours(["shop"], end_hour - 2)
    assert (undeclared > 150).all()


# --- unusual days nobody declared -------------------------------------------------------------


def test_an_undeclared_sale_day_and_holiday_cause_no_alert_on_the_days_after_them() -> None:
    sale, holiday = START.date() + timedelta(days=25), START.date() + timedelta(days=29)
    source = _counts(37, ((sale, 3.0), (holiday, 0.3)))

    assert (
        _volume_alerts(source, _calendar(), sale + timedelta(days=1), holiday - timedelta(days=1))
        == []
    )
    assert (
        _volume_alerts(
            source, _calendar(), holiday + timedelta(days=1), holiday + timedelta(days=7)
        )
        == []
    )


# --- a wrong calendar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "path", "says"),
    [
        ({"date": "2026-13-45"}, "calendar.days[0].date", "month"),
        ({"date": "Christmas"}, "calendar.days[0].date", "valid date"),
        ({"from": "2026-12-03", "to": "2026-12-01"}, "calendar.days[0].to", "before from"),
        (
            {"date": "2026-12-01", "from": "2026-12-01", "to": "2026-12-03"},
            "calendar.days[0].from",
            "not both",
        ),
        ({"from": "2026-12-01"}, "calendar.days[0]", "needs to:"),
        ({"name": "nothing"}, "calendar.days[0]", "give date:"),
        ({"date": "2026-12-01", "volume": 0}, "calendar.days[0].volume", "greater than 0"),
        ({"date": "2026-12-01", "volume": -2}, "calendar.days[0].volume", "greater than 0"),
        ({"date": "2026-12-01", "volumen": 2}, "calendar.days[0].volumen", "unknown key"),
    ],
)
def test_a_wrong_declared_day_is_named_by_its_key_path(
    tmp_path: Path, day: dict[str, Any], path: str, says: str
) -> None:
    # Through the file: YAML's own date reading must not hide the key path.
    lines = "".join(f"      {key}: {value}\n" for key, value in day.items())
    file = tmp_path / "alerts.yaml"
    file.write_text(f"calendar:\n  days:\n    - {lines.strip()}\n".replace("\n      ", "\n      "))
    with pytest.raises(ConfigError) as raised:
        load_config(file, env={})
    ((where, message),) = raised.value.problems
    assert where == path
    assert says in message


def test_a_time_zone_that_does_not_exist_is_named() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"calendar": {"timezone": "Europe/Atlantis"}}, env={})
    ((where, message),) = raised.value.problems
    assert where == "calendar.timezone"
    assert "IANA time zone" in message


def test_a_declared_day_is_its_local_midnight_to_midnight() -> None:
    config = parse_config(
        _calendar({"name": "Black Friday", "date": "2026-11-27", "volume": 3.0}), env={}
    )
    (span,) = config.calendar.spans()
    assert span.start == datetime(2026, 11, 26, 23, tzinfo=UTC)
    assert span.end == datetime(2026, 11, 27, 23, tzinfo=UTC)
    assert span.volume == 3.0
