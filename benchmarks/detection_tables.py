"""The detection benchmark's tables, as people read them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from benchmarks.nyc_taxi import TAXI
from benchmarks.scenarios import HARMLESS_SHIFT
from benchmarks.scoring import BUDGET_DAYS, MONTH_DAYS, RIVER_MAX_VOLUME, Tally

__all__ = ["DETECTORS", "print_harmless", "print_incidents", "print_quiet", "print_taxi"]

DETECTORS = ("ours", "oracle", "SRE burn rate", "fixed 15m>4%", "ADWIN", "DDM")


def _line(lead: str, cells: Iterable[str], width: int = 13) -> str:
    """A table line: ``lead``, then one right-aligned column per detector."""
    return lead + " ".join(f"{cell:>{width}}" for cell in cells) + "\n"


def _minutes(value: float | None, censor: int | None = None) -> str:
    if value is None:
        return "-"
    if np.isinf(value):
        return f">{censor}" if censor else "miss"
    return f"{value:.0f}"


def _cell(summary: dict[str, Any] | None, censor: int) -> str:
    if summary is None or not summary["incidents"]:
        return "n/a"
    median = _minutes(summary["median_delay"], censor)
    p90 = _minutes(summary["p90_delay"], censor)
    return f"{median}/{p90} {summary['misses']}"


def _delay_ratio(ours: dict[str, Any] | None, oracle: dict[str, Any] | None) -> float | None:
    """Our median delay over the oracle's; None where the oracle has none (or missed)."""
    if not ours or not oracle or ours["median_delay"] is None or oracle["median_delay"] is None:
        return None
    if np.isinf(oracle["median_delay"]):
        return None
    return float(ours["median_delay"] / max(oracle["median_delay"], 1))


def _ratio(ours: dict[str, Any] | None, oracle: dict[str, Any] | None) -> str:
    ratio = _delay_ratio(ours, oracle)
    return "n/a" if ratio is None else f"{ratio:.2f}"


def _rate(summary: dict[str, Any] | None) -> str:
    if summary is None or summary["false_per_gateway_month"] is None:
        return "-"
    return f"{summary['false_per_gateway_month']:.2f}"


def print_quiet(results: list[dict[str, Any]], river_days: int, out: Any) -> None:
    out.write(
        "\nFALSE ALERTS per gateway-month on no-incident traffic (budget: "
        f"{MONTH_DAYS / BUDGET_DAYS:.2f}); base = healthy failure rate (2% = at the SLA), "
        "rho = beta-binomial dispersion, gw-days counted per row; the oracle is the one tuned "
        f"to 2x SLA; '-' = not run (river: <= {RIVER_MAX_VOLUME:g}/min, first "
        f"{river_days} days)\n"
    )
    out.write(_line(f"{'base':>5} {'rho':>6} {'vol/min':>7} {'gw-days':>7} ", DETECTORS))
    for row in results:
        d = row["detectors"]
        lead = (
            f"{row['baseline']:>5.1%} {row['dispersion']:>6g} {row['volume']:>7g} "
            f"{d['ours']['gateway_days']:>7.0f} "
        )
        out.write(_line(lead, [_rate(d.get(name)) for name in DETECTORS]))


def print_incidents(results: list[dict[str, Any]], out: Any) -> None:
    out.write(
        "\nDETECTION DELAY in minutes: median/p90 misses (of the repetitions); '>N' = not "
        "detected by the incident's end (N min); ratio = our median / the oracle's\n"
    )
    width = 14
    out.write(_line(f"{'scenario':<27} {'vol/min':>7} {'ratio':>6} ", DETECTORS, width))
    for row in results:
        d = row["detectors"]
        lead = (
            f"{row['scenario']:<27} {row['volume']:>7g} "
            f"{_ratio(d.get('ours'), d.get('oracle')):>6} "
        )
        out.write(_line(lead, [_cell(d.get(name), row["minutes"]) for name in DETECTORS], width))
    ratios = [
        ratio
        for row in results
        if row["scenario"].startswith("step")
        and (ratio := _delay_ratio(row["detectors"].get("ours"), row["detectors"].get("oracle")))
        is not None
        and np.isfinite(ratio)
    ]
    if ratios:
        out.write(
            f"median of the ratios over the step scenarios both detect: {np.median(ratios):.2f} "
            f"({len(ratios)} scenarios; target <= 1.25)\n"
        )
    pre = {name: Tally() for name in DETECTORS}
    for row in results:
        for name, summary in row["detectors"].items():
            if summary["gateway_days"]:
                pre[name].false_alerts += summary["false_alerts"]
                pre[name].gateway_days += summary["gateway_days"]
    lead = f"{'false alerts/gw-month before the incidents':<42} "
    out.write(_line(lead, [_rate(pre[name].summary()) for name in DETECTORS], width))


def print_harmless(rows: list[dict[str, Any]], out: Any) -> None:
    out.write(
        "\nHARMLESS SHIFT: the failure rate rises from 1% to 1.8% for "
        f"{HARMLESS_SHIFT.minutes // 60} h, still within the SLA; shifts alerted on (from the "
        "start to 1 h after the end) / "
        "repetitions, '-' = not run\n"
    )
    out.write(_line(f"{'vol/min':>7} ", DETECTORS))
    for row in rows:
        d = row["detectors"]
        cells = [f"{d[n]['alerted']}/{d[n]['of']}" if n in d else "-" for n in DETECTORS]
        out.write(_line(f"{row['volume']:>7g} ", cells))


def print_taxi(taxi: dict[str, Any] | None, out: Any) -> None:
    if taxi is None:
        out.write(f"\nNYC taxi trace: skipped, {TAXI} not found (it lives outside the repo)\n")
        return
    out.write(
        f"\nNYC TAXI trace (NAB) as {taxi['per_minute']:g} payments/min, {taxi['from'][:10]} to "
        f"{taxi['to'][:10]}, alerts after the first week; our volume rules:\n"
    )
    for window in taxi["windows"]:
        out.write(
            f"  labelled window {window['from'][:16]} .. {window['to'][:16]}: "
            f"{window['volume_alerts']} alert(s)\n"
        )
    out.write(
        f"  outside the windows ({taxi['outside_days']} days): {taxi['volume_alerts_outside']} "
        f"volume alert(s) = {taxi['volume_alerts_outside_per_month']:.2f} per month; "
        f"{taxi['failure_alerts_outside']} failure-rate alert(s)\n"
    )
