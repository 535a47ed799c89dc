"""Each gateway's health as a payment router and the status page see it (pure, no I/O).

Computed from the count window, the alert book and the config, so it is the same whether
the answer goes out as ``/api/v1/gateways`` JSON or as a row of the status page.

Status, worst first:

- ``down``: an ``outage`` or ``no_data`` alert is firing for the gateway: fail over now.
- ``degraded``: another alert (``sla_breach``) is firing: failures above the SLA.
- ``unknown``: no verdict possible: the payments source cannot be read, or fewer final
  payments than ``detection.sla_breach.min_payments`` in the window.
- ``healthy``: otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

from detector.alerts import Alert
from detector.config import Config
from detector.rules import RuleResult
from detector.stats.binomial import wilson_interval
from detector.window import CountWindow

__all__ = ["API_VERSION", "GatewayHealth", "gateway_health", "gateways_document", "liveness"]

API_VERSION = "1"
Status = Literal["healthy", "degraded", "down", "unknown"]
# Below this many final payments in the window, "healthy" would be a guess: say unknown.
MIN_PAYMENTS_TO_JUDGE = 10
_DOWN_RULES = {"outage", "no_data"}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


@dataclass(frozen=True)
class GatewayHealth:
    gateway: str
    status: Status
    reason: str
    since: datetime | None  # start of the condition behind a non-healthy status
    payments: int  # final payments in the window
    failures: int
    failure_rate: float | None
    interval: tuple[float, float] | None  # Wilson 95%
    baseline: float
    volume: int  # every payment in the window, pending included
    expected_volume: float | None  # None until a seasonal expectation exists (a week of data)
    window_minutes: int
    backup: str | None
    alerts: list[Alert] = field(default_factory=list)

    def to_dict(self, statuses: Mapping[str, Status]) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "status": self.status,
            "reason": self.reason,
            "since": _iso(self.since),
            "failure_rate": self.failure_rate,
            "interval": list(self.interval) if self.interval else None,
            "baseline": self.baseline,
            "payments": self.payments,
            "failures": self.failures,
            "volume": {"payments": self.volume, "expected": self.expected_volume},
            "window_minutes": self.window_minutes,
            "backup": self.backup,
            "backup_status": statuses.get(self.backup) if self.backup else None,
            "alerts": [
                {
                    "rule": a.rule,
                    "state": a.state,
                    "severity": a.severity,
                    "since": _iso(a.since),
                    "fingerprint": a.fingerprint,
                    "summary": a.summary,
                }
                for a in self.alerts
            ],
        }


def gateway_health(
    window: CountWindow,
    alerts: Iterable[Alert],
    config: Config,
    source_error: str | None = None,
    results: Iterable[RuleResult] = (),
) -> list[GatewayHealth]:
    """The health of every gateway in the window (configured ones first), in window order.

    ``results`` are the tick's rule results; a volume rule's seasonal expectation, scaled to
    this window, becomes ``expected_volume``.
    """
    minutes = max(1, round(config.detection.sla_breach.window.total_seconds() / 60))
    columns = window.recent(minutes)
    payments = window.payments[:, columns].sum(axis=1)
    failures = window.failures[:, columns].sum(axis=1)
    volume = window.volume[:, columns].sum(axis=1)
    low, high = wilson_interval(failures, payments)
    expected = np.full(len(window.gateways), np.nan)
    for rule in results:
        if rule.expected_per_minute is not None:
            known = len(rule.expected_per_minute)
            expected[:known] = rule.expected_per_minute * minutes
    by_gateway: dict[str, list[Alert]] = {}
    for alert in alerts:
        gateway = alert.labels.get("gateway")
        if gateway is not None:
            by_gateway.setdefault(gateway, []).append(alert)
    result = []
    for i, gateway in enumerate(window.gateways):
        mine = sorted(by_gateway.get(gateway, []), key=lambda a: a.since)
        firing = [a for a in mine if a.state == "firing"]
        n, k = int(payments[i]), int(failures[i])
        status: Status
        since = None
        if source_error:
            status, reason = "unknown", f"payments source unreachable: {source_error}"
        elif down := [a for a in firing if a.rule in _DOWN_RULES]:
            status, reason, since = "down", down[0].summary, down[0].since
        elif firing:
            status, reason, since = "degraded", firing[0].summary, firing[0].since
        elif n < MIN_PAYMENTS_TO_JUDGE:
            status = "unknown"
            reason = f"{n} final payment(s) in the last {minutes} min: too few to judge"
        elif pending := [a for a in mine if a.state == "pending"]:
            status, reason = "healthy", f"not firing yet: {pending[0].summary}"
        else:
            status, reason = "healthy", "failure rate within the SLA"
        settings = config.gateways.get(gateway)
        result.append(
            GatewayHealth(
                gateway=gateway,
                status=status,
                reason=reason,
                since=since,
                payments=n,
                failures=k,
                failure_rate=k / n if n else None,
                interval=(float(low[i]), float(high[i])) if n else None,
                baseline=config.sla_for(gateway),
                volume=int(volume[i]),
                expected_volume=float(expected[i]) if np.isfinite(expected[i]) else None,
                window_minutes=minutes,
                backup=settings.backup if settings else None,
                alerts=mine,
            )
        )
    return result


def gateways_document(
    health: list[GatewayHealth], at: datetime | None, role: str
) -> dict[str, Any]:
    """The ``/api/v1/gateways`` JSON document (see README "HTTP API")."""
    statuses = {h.gateway: h.status for h in health}
    return {
        "version": API_VERSION,
        "at": _iso(at),
        "role": role,
        "gateways": [h.to_dict(statuses) for h in health],
    }


def liveness(
    now: datetime,
    started: datetime,
    last_success: datetime | None,
    limit: timedelta,
    source_error: str | None,
    failed_ticks: int,
    source_down_after: int,
    role: str,
    last_problem: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """``/healthz``: 200 while ticks succeed, 503 with the reason otherwise.

    ``limit`` is how old the last successful tick may be (``server.unhealthy_after``
    intervals). A follower that ticks fine is healthy: it is ready to take over.
    ``last_problem`` (what failed at the last tick) is appended to a 503's reason.

    >>> from datetime import UTC
    >>> t0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    >>> liveness(t0, t0, t0, timedelta(minutes=3), None, 0, 3, "follower")[0]
    200
    >>> code, body = liveness(t0 + timedelta(minutes=4), t0, t0, timedelta(minutes=3),
    ...                       None, 0, 3, "leader")
    >>> code, body["reason"]
    (503, 'last successful tick 240s ago (limit 180s)')
    """
    body: dict[str, Any] = {"role": role, "last_successful_tick": _iso(last_success)}
    if source_error is not None and failed_ticks >= source_down_after:
        reason = f"payments source unreachable for {failed_ticks} ticks: {source_error}"
    elif last_success is None:
        if now - started <= limit:
            return 200, {**body, "status": "starting", "reason": "no tick has finished yet"}
        reason = f"no successful tick in the {(now - started).total_seconds():.0f}s since start"
    elif now - last_success > limit:
        reason = (
            f"last successful tick {(now - last_success).total_seconds():.0f}s ago "
            f"(limit {limit.total_seconds():.0f}s)"
        )
    else:
        return 200, {**body, "status": "ok", "reason": f"ticking as the {role}"}
    if last_problem and last_problem not in reason:
        reason += f"; last tick: {last_problem}"
    return 503, {**body, "status": "unhealthy", "reason": reason}
