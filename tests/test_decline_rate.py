"""``decline_rate``: a decline wave (the share of final payments declined far above its usual
share for this time of the week) raises a warning of its own, while the ordinary diurnal
swing of the declines raises nothing and declines never count against the SLA."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from detector.backtest import replay
from detector.config import ConfigError, parse_config
from detector.model import Counts, Notification
from detector.notify.messages import text
from detector.rules import QuarterHourTable
from detector.simulate import GatewayProfile, Incident, minute_counts
from detector.source import FrameSource

from .conftest import live_ticks

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
DAYS = 15
# Judged from the second week on: the usual share needs a week of history.
JUDGED_FROM = START + timedelta(days=7)
# Declines 1.6% at 15:00 UTC to 14.4% at 03:00 UTC around 8%: a swing far larger than the
# relative margin, so a baseline flat over the day would fire every night.
SWINGING = GatewayProfile("swinging", 30, 0.015, decline_rate=0.08, decline_swing=0.8)
# 6% on average; on the last Sunday 20% for an hour from 10:00 UTC.
WAVED = GatewayProfile("waved", 30, 0.015, decline_rate=0.06)
QUIET = GatewayProfile("quiet", 8, 0.015, decline_rate=0.06)
WAVE_START = START + timedelta(days=DAYS - 1, hours=10)
WAVES = [
    Incident(name, WAVE_START, timedelta(hours=1), decline_rate=0.20) for name in ("waved", "quiet")
]
DECLINES_COUNTED = {"source": {"statuses": {"declined": ["declined"]}}}
SUMMARY = re.compile(
    r"declines (\d+\.\d)% of (\d+) payments in the last (\d+) min "
    r"\(usual (\d+\.\d)% at this hour, p = [\d.e+-]+\)"
)


@pytest.fixture(scope="module")
def source() -> FrameSource:
    counts = minute_counts(
        START, START + timedelta(days=DAYS), [SWINGING, WAVED, QUIET], WAVES, seed=11
    )
    return FrameSource(counts.to_counts())


@pytest.fixture(scope="module")
def notifications(source: FrameSource) -> list[Notification]:
    config = parse_config(DECLINES_COUNTED, env={})
    return list(replay(config, source, JUDGED_FROM, START + timedelta(days=DAYS)))


def _firing(notifications: list[Notification], rule: str) -> list[Notification]:
    return [n for n in notifications if n.event == "firing" and n.rule == rule]


def test_the_diurnal_swing_of_declines_raises_no_alert(notifications: list[Notification]) -> None:
    assert [n.summary for n in notifications if n.labels.get("gateway") == "swinging"] == []


def test_a_decline_wave_raises_a_decline_rate_warning_with_the_share_now_and_usual(
    notifications: list[Notification],
) -> None:
    fired = _firing(notifications, "decline_rate")
    assert sorted(n.labels["gateway"] for n in fired) == ["quiet", "waved"]
    for n in fired:
        at = datetime.fromisoformat(n.at)
        # At 8 payments a minute the wave needs half an hour of them to stand out.
        assert WAVE_START < at <= WAVE_START + timedelta(minutes=45)
        assert n.severity == "warning"
        match = SUMMARY.search(n.summary)
        assert match is not None, n.summary
        share, payments, minutes, usual = match.groups()
        assert float(share) >= 12.0  # the wave's 20%, diluted by the minutes before it
        assert 3.0 <= float(usual) <= 9.0  # 6% with its swing
        evidence = n.evidence
        assert (evidence.payments, evidence.window_minutes) == (int(payments), int(minutes))
        assert f"Declines: {share}% (usual {usual}% at this hour)" in text(n)
    resolved = [n for n in notifications if n.event == "resolved" and n.rule == "decline_rate"]
    assert len(resolved) == 2
    for n in resolved:
        at = datetime.fromisoformat(n.at)
        assert WAVE_START + timedelta(hours=1) < at <= WAVE_START + timedelta(hours=2)


def test_a_decline_wave_raises_no_failure_rate_alert(notifications: list[Notification]) -> None:
    assert [n.summary for n in notifications if n.rule != "decline_rate"] == []


def test_replay_makes_exactly_the_decline_rate_transitions_of_live_ticks(
    source: FrameSource,
) -> None:
    config = parse_config(DECLINES_COUNTED, env={})
    begin, end = WAVE_START - timedelta(minutes=30), WAVE_START + timedelta(hours=2)
    replayed = [n.to_json() for n in replay(config, source, begin, end)]
    assert replayed == live_ticks(config, source, begin, end)
    assert sum('"rule": "decline_rate"' in n for n in replayed) == 4  # two waves, each resolved


def test_without_declines_counted_the_rule_stays_silent(source: FrameSource) -> None:
    config = parse_config({}, env={})
    during = list(
        replay(config, source, WAVE_START - timedelta(hours=1), WAVE_START + timedelta(hours=2))
    )
    assert [n.summary for n in during] == []


def test_the_weeks_kept_for_a_restart_hold_the_declines() -> None:
    """What a restarted daemon reads back from the state store (an hour packed per row)
    still says how many payments each quarter hour declined."""
    end_slot = 4 * 24 * 7 * 4  # a whole hour, as the history ends
    counts = Counts(
        gateway=np.array(["a", "b"], dtype=object),
        minute=np.array([(end_slot - 3) * 15, (end_slot - 1) * 15]),
        volume=np.array([40, 12]),
        payments=np.array([38, 12]),
        failures=np.array([2, 0]),
        declines=np.array([5, 3]),
    )
    table = QuarterHourTable.empty(end_slot).updated(end_slot - 4, end_slot, counts)
    ids: dict[str, int] = {}
    packed = [(hour, table.pack_hour(hour, ids)) for hour in table.hours()]
    restored = QuarterHourTable.unpack(end_slot, list(ids), packed)
    matrices, _ = restored.per_slot(["a", "b"])
    assert matrices[3][:, -4:].tolist() == [[0, 5, 0, 0], [0, 0, 0, 3]]


@pytest.mark.parametrize(
    ("settings", "path", "says"),
    [
        ({"above": 0.8}, "detection.decline_rate.above", "greater than 1"),
        ({"min_increase": 1.5}, "detection.decline_rate.min_increase", "less than 1"),
        ({"window": "2m"}, "detection.decline_rate.window", "at least 4m"),
        ({"severity": "page"}, "detection.decline_rate.severity", "warning"),
        ({"abov": 2}, "detection.decline_rate.abov", "unknown key"),
    ],
)
def test_a_bad_decline_rate_setting_is_named_by_its_key_path(
    settings: dict[str, Any], path: str, says: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"detection": {"decline_rate": settings}}, env={})
    ((where, message),) = raised.value.problems
    assert where == path
    assert says in message
