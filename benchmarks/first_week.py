"""Which lower tail the first-week volume_drop tests against, side by side (seeded, in memory).

In a gateway's first week ``volume_drop`` expects the last 15 minutes from the traffic just
before them (``detector.rules.volume.rate_before``, the function the rule itself calls) and
asks how unlikely the count is. This compares candidate tails on the same counts: negative
binomials of several sizes and a Poisson tail at a much stricter per-tick level. For each it
prints the false alerts per gateway-month on healthy diurnal traffic (alert episodes: runs of
ticks where the rule's condition holds) -- from the simulator, and the same traffic with each
quarter hour scaled by a random factor (sd 16%) as real traffic swings -- and how many drops
to 20% of the volume for an hour it catches within the hour, and how fast.

    .venv/bin/python benchmarks/first_week.py          # about 20 s
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import stats

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scenarios import START, VOLUMES
from detector.config import parse_config
from detector.rules.base import minutes_of
from detector.rules.volume import rate_before, volume_alpha
from detector.simulate import GatewayProfile, Incident, minute_counts
from detector.stats.seasonal import negative_binomial_cdf

__all__ = ["main"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
CONFIG = parse_config({}, env={})
RULE = CONFIG.detection.volume_drop
ALPHA = volume_alpha(CONFIG)
STRICT_ALPHA = 1e-9
Tail = Callable[[FloatArray, FloatArray], FloatArray]


def negative_binomial(size: float) -> Tail:
    """The tail at the rule's level, scaled so that below 1 is significant."""
    return lambda x, m: negative_binomial_cdf(x, m, size) / ALPHA


def strict_poisson(x: FloatArray, m: FloatArray) -> FloatArray:
    return np.asarray(stats.poisson.cdf(x, m), dtype=np.float64) / STRICT_ALPHA


TAILS: dict[str, Tail] = {
    **{f"NB size {size:g}": negative_binomial(size) for size in (8.0, 16.0, 20.0, 32.0)},
    f"Poisson {STRICT_ALPHA:g}": strict_poisson,
}


def first_week_statistic(volume: IntArray) -> tuple[FloatArray, FloatArray]:
    """(observed, expected) payments in the window of every tick that has the rule's whole
    history before it: column j is the tick at minute ``j + history + window``."""
    window, history = minutes_of(RULE.window), minutes_of(RULE.history)
    span = window + history
    ticks = range(span, volume.shape[1] + 1)
    stop = np.full(volume.shape[0], history)
    expected = np.stack(
        [rate_before(volume[:, t - span : t], stop, history, window) * window for t in ticks],
        axis=1,
    )
    total = np.concatenate([np.zeros((volume.shape[0], 1)), np.cumsum(volume, axis=1)], axis=1)
    observed = total[:, span:] - total[:, span - window : -window]
    return observed, expected


def alarms(observed: FloatArray, expected: FloatArray, tail: Tail) -> npt.NDArray[np.bool_]:
    """Ticks where the rule's condition holds under ``tail`` (scaled: < 1 is significant)."""
    return (observed < RULE.below * expected) & (tail(observed, expected) < 1)


def episodes(active: npt.NDArray[np.bool_]) -> int:
    return int(active[:, 0].sum() + (active[:, 1:] & ~active[:, :-1]).sum())


def bursty(volume: IntArray, rng: np.random.Generator) -> IntArray:
    """Each quarter hour scaled by a gamma factor of mean 1 and sd 16%, redrawn Poisson."""
    quarters = -(-volume.shape[1] // 15)
    factor = rng.gamma(40.0, 1 / 40.0, (volume.shape[0], quarters)).repeat(15, axis=1)
    return rng.poisson(volume * factor[:, : volume.shape[1]]).astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--days", type=int, default=28, help="healthy days per gateway")
    parser.add_argument("--gateways", type=int, default=10, help="gateways per volume")
    parser.add_argument("--drops", type=int, default=20, help="drops per volume")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    out = sys.stdout
    names = list(TAILS)
    out.write(
        f"first-week volume_drop: the last {minutes_of(RULE.window)} min against the lower of the "
        f"{minutes_of(RULE.history)} min and 30 min rates before them, below {RULE.below:.0%}; "
        f"per-tick level {ALPHA:.2g} (Poisson: {STRICT_ALPHA:g})\n\n"
        f"FALSE ALERTS per gateway-month, {args.gateways} gateways x {args.days} days per row\n"
        f"{'traffic':<22} {'vol/min':>7} " + " ".join(f"{n:>13}" for n in names) + "\n"
    )
    profiles = [GatewayProfile(f"g{i}", 1.0, 0.01) for i in range(args.gateways)]
    end = START + timedelta(days=args.days)
    for volume in VOLUMES:
        scaled = [GatewayProfile(p.name, volume, p.failure_rate) for p in profiles]
        plain = minute_counts(START, end, scaled, seed=args.seed).payments
        for traffic, counts in (("simulator", plain), ("quarter hours +-16%", bursty(plain, rng))):
            observed, expected = first_week_statistic(counts)
            months = observed.size / 1440 / 30
            rates = [episodes(alarms(observed, expected, TAILS[n])) / months for n in names]
            out.write(
                f"{traffic:<22} {volume:>7g} " + " ".join(f"{r:>13.2f}" for r in rates) + "\n"
            )
    out.write(
        f"\nDROP to 20% for 1 h after a healthy day, at times of day spread over the 24 h: "
        f"caught within the hour / {args.drops}, median first-last minute of the drop alarming\n"
        f"{'':<22} {'vol/min':>7} " + " ".join(f"{n:>13}" for n in names) + "\n"
    )
    span = minutes_of(RULE.window) + minutes_of(RULE.history)
    for volume in VOLUMES:
        times = (np.arange(args.drops) + rng.random(args.drops)) / args.drops * 1440
        starts = [1440 + int(t) for t in times]
        gateways = [GatewayProfile(f"d{i}", volume, 0.01) for i in range(args.drops)]
        drops = [
            Incident(g.name, START + timedelta(minutes=s), timedelta(hours=1), volume_factor=0.2)
            for g, s in zip(gateways, starts, strict=True)
        ]
        with_drops = minute_counts(
            START, START + timedelta(days=2, hours=2), gateways, drops, seed=args.seed
        )
        observed, expected = first_week_statistic(with_drops.payments)
        cells = []
        for name in names:
            active = alarms(observed, expected, TAILS[name])
            first, last = [], []
            for row, start in enumerate(starts):
                # The tick at minute t is column t - span; it has seen the minutes before t.
                hit = np.flatnonzero(active[row, start + 1 - span : start + 61 - span])
                if hit.size:
                    first.append(hit[0] + 1)
                    last.append(hit[-1] + 1)
            span_text = f"{np.median(first):.0f}-{np.median(last):.0f}" if first else "-"
            cells.append(f"{len(first)}/{args.drops} {span_text:>5}")
        out.write(f"{'':<22} {volume:>7g} " + " ".join(f"{c:>13}" for c in cells) + "\n")
    out.write(f"\n{time.perf_counter() - began:.0f} s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
