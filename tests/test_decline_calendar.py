"""``decline_rate`` and the calendar: the usual decline share is learnt at the same local
time of the week (``calendar.timezone``), so a change of the clocks does not shift it an
hour, and the declared days are left out of the weeks it learns from, so a sale day's
declines do not become next week's usual share. On a declared day the rule still runs."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from detector.backtest import replay
from detector.config import parse_config
from detector.model import Notification
from detector.simulate import GatewayProfile, Incident, Seasons, minute_counts
from detector.source import FrameSource

ZONE = "Europe/Berlin"
DECLINES_COUNTED: dict[str, Any] = {"source": {"statuses": {"declined": ["declined"]}}}
USUAL = re.compile(r"usual (\d+\.\d)% at this hour")


def _local(day: date, hour: int) -> datetime:
    """Naive UTC of ``hour`` o'clock on ``day`` in Berlin."""
    moment = datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(ZONE))
    return (moment + timedelta(hours=hour)).astimezone(UTC).replace(tzinfo=None)


def _firing(events: list[Notification], rule: str) -> list[datetime]:
    return [datetime.fromisoformat(e.at) for e in events if e.event == "firing" and e.rule == rule]


# --- a change of the clocks ----------------------------------------------------------------

DST_START = datetime(2026, 10, 12)  # a Monday; Berlin's summer time ends on 2026-10-25
NIGHT_FROM, NIGHT_TO = 0, 5  # local hours of the night shift's risky payments


def _night_shift_source() -> FrameSource:
    """A shop whose declines are 5% by day and 20% from 00:00 to 05:00 Berlin time every
    night (the night's riskier payments), its traffic on Berlin's clock too."""
    shop = GatewayProfile("shop", 120, 0.015, decline_rate=0.05, decline_swing=0.0)
    end = DST_START + timedelta(days=17)
    nights = [
        Incident(
            "shop",
            _local(DST_START.date() + timedelta(days=d), NIGHT_FROM),
            _local(DST_START.date() + timedelta(days=d), NIGHT_TO)
            - _local(DST_START.date() + timedelta(days=d), NIGHT_FROM),
            decline_rate=0.20,
        )
        for d in range(18)
    ]
    counts = minute_counts(DST_START, end, [shop], nights, seed=4, seasons=Seasons(ZONE))
    return FrameSource(counts.to_counts())


def test_the_end_of_summer_time_raises_no_decline_rate_at_the_night_shifts_end() -> None:
    """After the clocks go back, 04:00-05:00 Berlin is 03:00-04:00 UTC: the weeks before
    had the day's 5% at that UTC hour, the local week has the night's 20%."""
    config = parse_config({**DECLINES_COUNTED, "calendar": {"timezone": ZONE}}, env={})
    judged = DST_START + timedelta(days=14)  # the Monday after the change, two weeks known
    events = list(
        replay(
            config,
            _night_shift_source(),
            judged.replace(tzinfo=UTC),
            (judged + timedelta(days=3)).replace(tzinfo=UTC),
        )
    )
    assert [e.summary for e in events] == []


# --- a declared day ---------------------------------------------------------------------------

START = datetime(2026, 11, 2)  # a Monday
SALE = date(2026, 11, 13)  # a Friday: 3x the payments, 20% of them declined all day
WAVE = datetime(2026, 11, 20, 10)  # the Friday after: 20% declined for an hour
SALE_DAY = {"calendar": {"days": [{"name": "sale", "date": SALE.isoformat(), "volume": 3.0}]}}


@pytest.fixture(scope="module")
def sale_and_wave() -> list[Notification]:
    shop = GatewayProfile("shop", 30, 0.015, decline_rate=0.06)
    sale = datetime.combine(SALE, datetime.min.time())
    incidents = [
        Incident("shop", sale, timedelta(days=1), volume_factor=3.0, decline_rate=0.20),
        Incident("shop", WAVE, timedelta(hours=1), decline_rate=0.20),
    ]
    end = WAVE + timedelta(hours=3)
    counts = minute_counts(START, end, [shop], incidents, seed=6)
    config = parse_config({**DECLINES_COUNTED, **SALE_DAY}, env={})
    source = FrameSource(counts.to_counts())
    return list(replay(config, source, sale.replace(tzinfo=UTC), end.replace(tzinfo=UTC)))


def test_a_declared_sale_days_declines_do_not_lift_next_weeks_usual_share(
    sale_and_wave: list[Notification],
) -> None:
    """The same Friday a week later: its usual share is the ordinary Friday's, so an hour
    at the sale day's 20% is a wave again."""
    waves = [
        e
        for e in sale_and_wave
        if e.event == "firing" and e.rule == "decline_rate" and e.at >= WAVE.isoformat()
    ]
    assert len(waves) == 1
    (wave,) = waves
    assert datetime.fromisoformat(wave.at) <= WAVE.replace(tzinfo=UTC) + timedelta(minutes=30)
    match = USUAL.search(wave.summary)
    assert match is not None, wave.summary
    assert float(match.group(1)) < 8.0  # the ordinary 6% with its swing, not the sale's 20%


def test_on_a_declared_day_decline_rate_still_runs_and_nothing_else_fires(
    sale_and_wave: list[Notification],
) -> None:
    """Declines are not volume: declaring a day's volume does not hold decline_rate off."""
    on_the_sale_day = [
        at
        for at in _firing(sale_and_wave, "decline_rate")
        if at.date() == SALE  # the calendar is in UTC
    ]
    assert on_the_sale_day
    assert on_the_sale_day[0] <= datetime.combine(SALE, datetime.min.time(), UTC) + timedelta(
        minutes=30
    )
    others = [e.summary for e in sale_and_wave if e.event == "firing" and e.rule != "decline_rate"]
    assert others == []
