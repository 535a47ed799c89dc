"""How much of the false alerts on bursty traffic at the SLA the dispersion estimate causes.

Bursty gateways failing exactly at the SLA are the hardest healthy case for the SLA CUSUM
bank. This replays the same seeded traffic (beta-binomial ``rho``, failure rate = SLA) twice,
side by side in one run: with the dispersion the calibration estimates from each hour's
history, and with the true ``rho`` handed to it. Then it prints false alerts per
gateway-month for both (budget: 0.33) and the spread of the hourly estimates against the
truth, so an estimator change can be judged on what it buys.

    .venv/bin/python benchmarks/dispersion.py [--days 21] [--gateways 6] [--rho 0.005]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from unittest import mock

import numpy as np
import numpy.typing as npt

from detector import rules
from detector.backtest import replay
from detector.config import parse_config
from detector.simulate import GatewayProfile, minute_counts
from detector.source import FrameSource

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
SLA = 0.02


def _false_alerts(
    source: FrameSource, days: int, estimate: Callable[..., npt.NDArray[np.float64]]
) -> tuple[int, list[float]]:
    """Firing alerts over the replay (all false: the traffic never leaves the SLA), and the
    dispersion each hourly calibration settled on."""
    seen: list[float] = []

    def recording(*args: object, **kwargs: object) -> npt.NDArray[np.float64]:
        rho = estimate(*args, **kwargs)
        seen.extend(rho.tolist())
        return rho

    config = parse_config(
        {"detection": {"no_data": {"enabled": False}, "volume_drop": {"enabled": False}}}, env={}
    )
    with mock.patch.object(rules, "estimate_dispersion", recording):
        events = replay(config, source, START + timedelta(days=1), START + timedelta(days=days))
        firing = sum(event.event == "firing" for event in events)
    return firing, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--gateways", type=int, default=6)
    parser.add_argument("--rho", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    gateway_months = args.gateways * (args.days - 1) / 30
    print(
        f"{args.gateways} gateways x {args.days - 1} days at the {SLA:.0%} SLA, rho {args.rho}; "
        "false alerts per gateway-month (budget 0.33)"
    )
    print(f"{'vol/min':>8} {'estimated':>10} {'true rho':>9}   hourly estimates: median [p10, p90]")
    for per_minute in (10.0, 50.0, 200.0):
        profiles = tuple(
            GatewayProfile(f"g{i}", per_minute, SLA, dispersion_rho=args.rho)
            for i in range(args.gateways)
        )
        counts = minute_counts(START, START + timedelta(days=args.days), profiles, seed=args.seed)
        source = FrameSource(counts.to_counts())
        estimated, rhos = _false_alerts(source, args.days, rules.estimate_dispersion)
        known, _ = _false_alerts(
            source, args.days, lambda failures, *_: np.full(failures.shape[0], args.rho)
        )
        p10, p50, p90 = np.percentile(rhos, [10, 50, 90])
        print(
            f"{per_minute:>8g} {estimated / gateway_months:>10.2f} {known / gateway_months:>9.2f}"
            f"   {p50:.4f} [{p10:.4f}, {p90:.4f}]"
        )


if __name__ == "__main__":
    main()
