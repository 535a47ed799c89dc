"""``detector check``: one evaluation as of a moment, one verdict line per gateway and per
business volume series (``volumes:``)."""

from __future__ import annotations

from datetime import datetime
from typing import TextIO

import numpy as np

from detector.config import Config
from detector.engine import Engine
from detector.rules import series_name
from detector.source import Source, SourceError
from detector.source_details import skipped_text
from detector.stats.binomial import wilson_interval
from detector.volume_source import VolumeSource

__all__ = ["verdict_table"]


def verdict_table(
    config: Config,
    source: Source,
    at: datetime,
    out: TextIO,
    volumes: VolumeSource | None = None,
) -> bool:
    """Write each gateway's counts, failure rate with its 95% interval, SLA, decline share
    and verdict over the SLA window before ``at`` to ``out``, then each business volume
    series' events and verdict; True if any rule fires.

    Raises :class:`~detector.source.SourceError` when the payments cannot be read.
    """
    engine = Engine(config, source, volumes=volumes)
    result = engine.tick(at)
    if result.error:
        raise SourceError(result.error)
    window = engine.window
    minutes = max(1, int(config.detection.sla_breach.window.total_seconds() // 60))
    columns = window.recent(minutes)
    payments = window.payments[:, columns].sum(axis=1)
    failures = window.failures[:, columns].sum(axis=1)
    declines = window.declines[:, columns].sum(axis=1)
    low, high = wilson_interval(failures, payments)
    breached: dict[str, list[str]] = {g: [] for g in window.gateways}
    for rule in engine.last_results:
        for index in np.flatnonzero(rule.active):
            breached[rule.gateways[int(index)]].append(rule.rule)
    for alert in engine.alerts.alerts.values():  # dimension series: "sla_breach (method=card)"
        gateway = alert.labels.get("gateway")
        series = {k: v for k, v in alert.labels.items() if k not in ("rule", "gateway")}
        if series and alert.state == "firing" and gateway in breached:
            breached[gateway].append(series_name(alert.rule, series))
    out.write(f"as of {at.isoformat(timespec='seconds')}, last {minutes} min\n")
    out.write(
        f"{'gateway':<14} {'payments':>9} {'failures':>9} {'rate':>7} {'95% CI':>15} "
        f"{'SLA':>6} {'declines':>8}  verdict\n"
    )
    for i, gateway in enumerate(window.gateways):
        n, k = int(payments[i]), int(failures[i])
        rate = f"{k / n:.1%}" if n else "-"
        interval = f"{low[i]:.1%}-{high[i]:.1%}" if n else "-"
        declined = f"{declines[i] / n:.1%}" if n else "-"
        verdict = "FIRING: " + ", ".join(breached[gateway]) if breached[gateway] else "healthy"
        out.write(
            f"{gateway:<14} {n:>9} {k:>9} {rate:>7} {interval:>15} "
            f"{config.sla_for(gateway):>6.1%} {declined:>8}  {verdict}\n"
        )
    if result.invalid_rows:
        out.write(f"{result.invalid_rows} row(s) skipped: {skipped_text(result.skipped)}\n")
    volumes_firing = _volume_verdicts(config, engine, out)
    return any(breached.values()) or volumes_firing


def _volume_verdicts(config: Config, engine: Engine, out: TextIO) -> bool:
    """The volumes' lines: events over ``volume_drop.window`` and the volume rules active
    for each series, as the engine's volume path judged them this tick."""
    volumes = engine.volumes
    if volumes is None:
        return False
    window = volumes.window
    minutes = max(1, int(config.detection.volume_drop.window.total_seconds() // 60))
    events = window.volume[:, window.recent(minutes)].sum(axis=1)
    active: dict[str, list[str]] = {name: [] for name in window.gateways}
    for rule, result in engine.volume_results.items():
        for index in np.flatnonzero(result.active):
            active[window.gateways[int(index)]].append(rule)
    out.write(f"\n{'volume':<30} {'events':>9}  verdict (last {minutes} min)\n")
    for i, name in enumerate(window.gateways):
        line = "FIRING: " + ", ".join(active[name]) if active[name] else "healthy"
        out.write(f"{name:<30} {int(events[i]):>9}  {line}\n")
    return any(active.values())
