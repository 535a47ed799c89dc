"""How much of the false alerts on bursty traffic at the SLA the dispersion estimate causes.

Bursty gateways failing exactly at the SLA are the hardest healthy case for the SLA CUSUM
bank. This replays the same seeded traffic (beta-binomial ``rho``, failure rate = SLA)
three times, side by side in one run: with the dispersion the hourly calibration estimates
from the count window's minutes alone (5 h), from the gateway's quarter hours of the last
weeks where it has days of them (what the detector does), and with the true ``rho`` handed
to it. Each replay follows ``--history-days`` of the same traffic, so the quarter-hour
history has days to draw on from the first tick. Then it prints false alerts per
gateway-month for each (budget: 0.33) and the spread of the hourly estimates (quantised up
to octaves, as the thresholds use them), so an estimator change can be judged on what it
buys.

    .venv/bin/python benchmarks/dispersion.py [--days 20] [--history-days 7] [--gateways 6]
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import numpy as np
import numpy.typing as npt

from detector.backtest import replay
from detector.config import parse_config
from detector.engine import Engine
from detector.rules import VolumeHistory, calibration
from detector.simulate import GatewayProfile, minute_counts
from detector.source import FrameSource

__all__ = ["calibration_cost", "main"]

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
SLA = 0.02
ARMS = ("5 h only", "with weeks", "true rho")


def _false_alerts(
    source: FrameSource, start: datetime, end: datetime, arm: str, rho: float
) -> tuple[int, list[float]]:
    """Firing alerts over the replay (all false: the traffic never leaves the SLA), and the
    dispersion each hourly calibration settled on."""
    seen: list[float] = []
    calibrate = calibration.calibrate

    def recording(*args: Any, **kwargs: Any) -> calibration.Thresholds:
        if arm == "5 h only":
            kwargs["history"] = None
        limits = calibrate(*args, **kwargs)
        seen.extend(limits.rho.tolist())
        return limits

    def true_rho(failures: npt.NDArray[np.int64], *_: Any, **__: Any) -> npt.NDArray[np.float64]:
        return np.full(failures.shape[0], rho)

    config = parse_config(
        {"detection": {"no_data": {"enabled": False}, "volume_drop": {"enabled": False}}}, env={}
    )
    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(calibration, "calibrate", recording))
        if arm == "true rho":
            patches.enter_context(mock.patch.object(calibration, "estimate_dispersion", true_rho))
        events = replay(config, source, start, end)
        firing = sum(event.event == "firing" for event in events)
    return firing, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20, help="days replayed")
    parser.add_argument("--history-days", type=int, default=7, help="days of traffic before")
    parser.add_argument("--gateways", type=int, default=6)
    parser.add_argument("--rho", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    gateway_months = args.gateways * args.days / 30
    start = START + timedelta(days=args.history_days)
    end = start + timedelta(days=args.days)
    print(
        f"{args.gateways} gateways x {args.days} days at the {SLA:.0%} SLA, rho {args.rho}, "
        f"after {args.history_days} days of the same traffic; false alerts per gateway-month "
        "(budget 0.33) and hourly estimates: median [p10, p90]"
    )
    print(f"{'vol/min':>8} " + " ".join(f"{arm:>28}" for arm in ARMS))
    for per_minute in (10.0, 50.0, 200.0):
        profiles = tuple(
            GatewayProfile(f"g{i}", per_minute, SLA, dispersion_rho=args.rho)
            for i in range(args.gateways)
        )
        counts = minute_counts(START, end, profiles, seed=args.seed)
        source = FrameSource(counts.to_counts())
        cells = []
        for arm in ARMS:
            firing, rhos = _false_alerts(source, start, end, arm, args.rho)
            p10, p50, p90 = np.percentile(rhos, [10, 50, 90])
            cells.append(f"{firing / gateway_months:.2f} {p50:.4f} [{p10:.4f}, {p90:.4f}]")
        print(f"{per_minute:>8g} " + " ".join(f"{cell:>28}" for cell in cells))
    minutes_only, with_weeks = calibration_cost(30)
    print(
        f"hourly calibration of 30 gateways (median of 21, thresholds cached): 5 h only "
        f"{minutes_only * 1000:.1f} ms, with weeks {with_weeks * 1000:.1f} ms "
        f"({with_weeks / minutes_only:.2f}x)"
    )


def calibration_cost(gateways: int, repeats: int = 21) -> tuple[float, float]:
    """Median seconds of one hourly calibration of ``gateways`` bursty gateways with four
    weeks of quarter hours, without and with them, timed alternately (thresholds cached;
    the quarter-hour matrices the volume rules build each hour anyway, built before)."""
    profiles = tuple(
        GatewayProfile(f"g{i}", 10.0 * 2 ** (i % 5), SLA, dispersion_rho=0.005)
        for i in range(gateways)
    )
    end = START + timedelta(days=28)
    config = parse_config({}, env={})
    engine = Engine(config, FrameSource(minute_counts(START, end, profiles, seed=1).to_counts()))
    engine.tick(end)
    window, hour = engine.window, (engine.window.end_minute - 1) // 60
    baselines = np.full(gateways, SLA)
    times: list[list[float]] = [[], []]
    for _ in range(repeats):
        for arm, history in enumerate((None, engine.volume_history)):
            if history is not None:
                # Nothing cached but what the volume rules compute for the hour anyway.
                history = VolumeHistory(history.end_hour, history.table)
                history.season(window.gateways)
            began = time.perf_counter()
            calibration.calibrate(window, config, baselines, hour, history=history)
            times[arm].append(time.perf_counter() - began)
    minutes_only, with_weeks = (float(np.median(arm)) for arm in times)
    return minutes_only, with_weeks


if __name__ == "__main__":
    main()
