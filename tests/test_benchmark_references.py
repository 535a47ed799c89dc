"""The detection benchmark's reference detectors and scenarios do what the benchmark says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest

from benchmarks.references import (
    SRE_WINDOWS,
    alert_starts,
    burn_rate_alerts,
    calibrate_cusum,
    cusum_alerts,
    cusum_increments,
    first_passage_maxima,
    fixed_rule_alerts,
    payment_outcomes,
    river_alerts,
)
from benchmarks.scenarios import (
    HEALTHY_RATE,
    INCIDENT_KINDS,
    SLA,
    START,
    VOLUME_HISTORY_DAYS,
    VOLUMES,
    Scenario,
    ScenarioSet,
    incident_scenarios,
    incident_sets,
    quiet_scenarios,
)
from benchmarks.scoring import score_incidents
from detector.simulate import GatewayProfile, MinuteCounts, minute_counts


def _series(minutes: int, per_minute: int, failing_from: int, failures: int) -> tuple:
    payments = np.full((1, minutes), per_minute)
    failed = np.zeros((1, minutes), dtype=np.int64)
    failed[0, failing_from:] = failures
    return payments, failed


# --- SRE burn rate -----------------------------------------------------------------------------


def test_burn_rate_fires_when_the_long_and_the_short_window_both_burn_fast() -> None:
    # 10 payments a minute, none failing, then 5 (50% = 25x a 2% budget) from minute 800.
    payments, failures = _series(1000, 10, 800, 5)
    fast = burn_rate_alerts(payments, failures, 0.02, SRE_WINDOWS[:1])
    # The 1 h window passes 28.8% after 35 failing minutes (175 of 600 payments).
    assert np.flatnonzero(fast[0]).tolist() == [834]
    # The 3 d / 6 h pair at 1x sees the 2% budget burnt a minute earlier: any pair alerts.
    assert np.flatnonzero(burn_rate_alerts(payments, failures, 0.02)[0])[0] == 833


def test_burn_rate_needs_the_short_window_too_so_it_resets_quickly() -> None:
    payments, failures = _series(400, 10, 100, 10)
    failures[0, 160:] = 0  # an hour of 100% failures, then healthy again
    alerts = burn_rate_alerts(payments, failures, 0.02, SRE_WINDOWS[:1])
    # Fires once, while the 1 h window is still over 28.8% and the 5 min window too; the
    # 5 min window clears 5 minutes after the failures stop and the alert ends there.
    assert alerts.sum() == 1
    assert 117 <= np.argmax(alerts[0]) < 160


def test_burn_rate_is_quiet_on_traffic_inside_the_budget() -> None:
    payments, failures = _series(5000, 50, 0, 0)
    failures[0, ::2] = 1  # 1% failing
    assert not burn_rate_alerts(payments, failures, 0.02).any()


# --- fixed rule --------------------------------------------------------------------------------


def test_fixed_rule_fires_when_15_minutes_fail_above_4_percent() -> None:
    payments, failures = _series(60, 50, 20, 20)
    # Minute 20: 20 of 750 (2.7%); minute 21: 40 of 750 (5.3%).
    assert np.flatnonzero(fixed_rule_alerts(payments, failures)[0]).tolist() == [21]


def test_fixed_rule_ignores_windows_of_fewer_than_20_payments() -> None:
    payments, failures = _series(60, 1, 10, 1)  # every payment fails, 15 per window
    assert not fixed_rule_alerts(payments, failures).any()
    assert fixed_rule_alerts(payments * 2, failures * 2).any()


def test_alert_starts_count_episodes_not_minutes() -> None:
    firing = np.array([[True, True, False, True], [False, False, False, False]])
    assert alert_starts(firing).sum(axis=1).tolist() == [2, 0]


# --- the oracle CUSUM --------------------------------------------------------------------------


def test_cusum_increment_is_the_binomial_log_likelihood_ratio() -> None:
    increments = cusum_increments(np.array([10, 0, 5]), np.array([1, 0, 5]), 0.02, 0.04)
    expected = [np.log(2) + 9 * np.log(0.96 / 0.98), 0.0, 5 * np.log(2)]
    assert increments == pytest.approx(expected)
    # An outage's rate (1.0) stays finite: a success makes it very unlikely, not impossible.
    outage = cusum_increments(np.array([3, 3]), np.array([3, 2]), 0.02, 1.0)
    assert outage[0] == pytest.approx(3 * np.log(50), rel=1e-5)
    # 2 failures (+3.9 each) cannot outweigh 1 success (about -13.8).
    assert np.isfinite(outage[1])
    assert outage[1] < -5


def test_cusum_fires_on_a_step_and_starts_again_after_each_alert() -> None:
    payments, failures = _series(120, 20, 60, 4)  # 20% from minute 60
    increments = cusum_increments(payments, failures, 0.02, 0.2)
    alerts = cusum_alerts(increments, 10.0)
    # Each failing minute adds 4 ln 10 + 16 ln(0.8/0.98) = 5.96: the 2nd minute crosses 10.
    assert np.flatnonzero(alerts[0])[:3].tolist() == [61, 63, 65]
    assert not alerts[0, :60].any()
    # Without restarts, the first passage is the same minute.
    assert np.argmax(first_passage_maxima(increments)[0] >= 10.0) == 61


def test_calibrated_cusum_gives_about_the_target_false_alert_rate() -> None:
    day = 1440
    profile = [GatewayProfile(f"g{i}", 10.0, SLA) for i in range(40)]
    training = minute_counts(START, START + timedelta(days=5), profile, seed=1)
    maxima = first_passage_maxima(
        cusum_increments(training.payments, training.failures, SLA, 2 * SLA)
    )
    threshold = calibrate_cusum(maxima, minutes_per_alert=day)
    # On 100 fresh gateway-days at exactly the SLA, about one alert a day.
    fresh = minute_counts(START, START + timedelta(days=5), profile[:20], seed=2)
    alerts = cusum_alerts(cusum_increments(fresh.payments, fresh.failures, SLA, 2 * SLA), threshold)
    assert 65 <= alerts.sum() <= 140
    # A tighter budget needs a higher threshold.
    assert calibrate_cusum(maxima, minutes_per_alert=10 * day) > threshold + 1


# --- river's detectors, fed per payment ----------------------------------------------------------


@dataclass
class ThreeFailuresInARow:
    """A drift detector with a rule simple enough to check by hand."""

    run: int = 0
    drift_detected: bool = False

    def update(self, x: int) -> None:
        self.run = self.run + 1 if x else 0
        self.drift_detected = self.run == 3
        if self.drift_detected:
            self.run = 0


def test_payments_are_fed_in_time_order_with_failures_placed_within_their_minute() -> None:
    payments, failures = np.array([3, 0, 4, 2]), np.array([1, 0, 4, 0])
    outcome, minute = payment_outcomes(payments, failures, np.random.default_rng(5))
    assert minute.tolist() == [0, 0, 0, 2, 2, 2, 2, 3, 3]
    assert outcome.tolist()[3:] == [1, 1, 1, 1, 0, 0]
    assert outcome[:3].sum() == 1


def test_river_alerts_are_the_minutes_the_detector_reports_a_drift() -> None:
    payments = np.array([[4, 4, 4, 4, 4], [1, 1, 1, 1, 1]])
    failures = np.array([[0, 0, 4, 4, 0], [0, 1, 1, 1, 0]])
    alerts = river_alerts(payments, failures, ThreeFailuresInARow, np.random.default_rng(0))
    # Row 0: drifts in minutes 2 and 3 (consecutive: one alert); row 1: the third failure.
    assert alerts.tolist() == [
        [False, False, True, False, False],
        [False, False, False, True, False],
    ]


# --- the scenarios ---------------------------------------------------------------------------


def test_incident_scenarios_have_every_kind_and_volume_after_a_healthy_day() -> None:
    scenarios = incident_scenarios(seeds=2, seed=1)
    counts = scenarios.counts
    assert len(scenarios.scenarios) == len(INCIDENT_KINDS) * len(VOLUMES) * 2
    assert {(s.kind, s.volume) for s in scenarios.scenarios} == {
        (k.name, v) for k in INCIDENT_KINDS for v in VOLUMES
    }
    starts = np.array([s.incident_minute for s in scenarios.scenarios])
    assert (starts >= 1440).all()
    times_of_day = starts % 1440
    assert times_of_day.min() < 6 * 60  # quiet hours are among them
    for row, s in enumerate(scenarios.scenarios):
        assert s.incident_minute is not None
        assert s.end_minute is not None
        healthy = slice(s.incident_minute - 1440, s.incident_minute)
        during = slice(s.incident_minute, s.end_minute)
        volume = counts.payments[row] + counts.pending[row]
        # The simulated day carries the asked volume (a weekend day 80% of it).
        assert 0.7 * s.volume <= volume[healthy].mean() <= 1.3 * s.volume
        kind = next(k for k in INCIDENT_KINDS if k.name == s.kind)
        if s.kind == "silence for 45 min":
            assert volume[during].sum() == 0
        elif kind.family == "failure" and not kind.ramp and s.volume >= 50:
            assert kind.failure_rate is not None
            rate = counts.failures[row, during].sum() / counts.payments[row, during].sum()
            assert rate == pytest.approx(kind.failure_rate, rel=0.2)
            assert s.true_rate == kind.failure_rate
        elif kind.ramp:
            assert s.delay_from is not None
            crossing = s.delay_from - s.incident_minute
            assert 0 < crossing < 30  # the 1% -> 10% ramp passes 2% in its first half hour


def test_incidents_can_follow_weeks_of_history() -> None:
    scenarios = incident_scenarios(seeds=1, seed=2, volumes=(10.0,), history_days=14)
    starts = [s.incident_minute or 0 for s in scenarios.scenarios]
    assert min(starts) >= 14 * 1440
    assert scenarios.counts.payments.shape[1] < 21 * 1440
    with pytest.raises(ValueError, match="at least one day"):
        incident_scenarios(seeds=1, seed=2, history_days=0)


def test_volume_incidents_follow_a_week_and_a_day_of_history_on_their_own_axis() -> None:
    failure, volume = incident_sets(seeds=1, seed=2)
    assert {s.family for s in failure.scenarios} == {"failure"}
    assert {s.family for s in volume.scenarios} == {"volume"}
    assert min(s.incident_minute or 0 for s in volume.scenarios) >= VOLUME_HISTORY_DAYS * 1440
    # The failure-rate incidents keep one day, and are not replayed over the volume ones' weeks.
    assert min(s.incident_minute or 0 for s in failure.scenarios) < 7 * 1440
    assert failure.counts.payments.shape[1] <= 8 * 1440


def test_quiet_scenarios_cover_volumes_baselines_and_dispersion() -> None:
    scenarios = quiet_scenarios(days=2, seed=1)
    assert scenarios.counts.payments.shape[1] == 2 * 1440
    grid = {(s.volume, s.baseline, s.dispersion) for s in scenarios.scenarios}
    assert grid == {
        (v, b, r) for v in VOLUMES for b in (HEALTHY_RATE, SLA) for r in (0, 0.002, 0.005)
    }
    assert all(s.family == "none" for s in scenarios.scenarios)


# --- scoring ---------------------------------------------------------------------------------


def test_delays_count_the_first_relevant_alert_from_the_incident_start() -> None:
    zeros = np.zeros((2, 2000), dtype=np.int64)
    step = Scenario("a", "step 5x SLA", "failure", 10.0, 0.01, 0.0, 0, 1500, 1500, 1740, 0.1)
    drop = Scenario("b", "silence for 45 min", "volume", 10.0, 0.01, 0.0, 0, 1600, 1600, 1645)
    scenarios = ScenarioSet(
        (step, drop),
        MinuteCounts(("a", "b"), START, zeros, zeros, zeros, zeros, zeros.astype(float)),
        1440,
    )
    ours = [
        # A false alert the day before, a volume alert that says nothing of the failure rate,
        # then the detection.
        [(1490, "sla_breach"), (1510, "no_data"), (1520, "sla_breach")],
        # Only a volume rule detects a silence.
        [(1605, "sla_breach"), (1615, "no_data")],
    ]
    oracle = np.zeros((2, 2000), dtype=bool)
    oracle[0, [1450, 1504]] = True  # raised by the ticks at 1451 and 1505
    references = {"oracle": oracle}
    tallies: dict = {}
    score_incidents(scenarios, ours, references, tallies)

    ours_step = tallies["step 5x SLA", 10.0]["ours"].summary()
    assert ours_step["median_delay"] == 20
    assert ours_step["false_alerts"] == 1
    assert tallies["step 5x SLA", 10.0]["oracle"].summary()["median_delay"] == 5
    silence = tallies["silence for 45 min", 10.0]
    assert silence["ours"].summary()["median_delay"] == 15
    assert "oracle" not in silence  # the failure-rate references do not apply to volume
