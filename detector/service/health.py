"""Each gateway's health as a payment router and the status page see it (pure, no I/O).

Computed from the count window, the alert book and the config, so it is the same whether
the answer goes out as ``/api/v1/gateways`` JSON or as a row of the status page.

Status, worst first:

- ``down``: an ``outage`` or ``no_data`` alert is firing for the gateway: fail over now.
- ``degraded``: another alert is firing (``sla_breach``: failures above the SLA;
  ``latency_breach``: too many slow payments; ``volume_drop``); or an
  ``outage`` of one of its dimension series (``segments_down`` lists them): the rest of
  the gateway still works, so it is no reason to fail all of it over.
- ``decline_rate`` (a decline wave, the issuers' or the fraud screen's doing) leaves the
  status as it is: the gateway itself works, failing it over would not help. The reason of a
  healthy gateway says it, and its alert is listed.
- ``unknown``: no verdict possible: the payments source cannot be read, fewer final
  payments than ``detection.sla_breach.min_payments`` in the window, or the last verdicts
  are older than ``server.unhealthy_after`` intervals (no tick has read the payments since:
  a hanging query, a stalled scheduler); ``stale_since`` then says since when.
- ``healthy``: otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from detector.alerts import Alert
from detector.config import Config
from detector.rules import RuleResult
from detector.stats.binomial import wilson_interval
from detector.timeutil import iso_z
from detector.window import CountWindow

__all__ = [
    "API_VERSION",
    "STATUSES",
    "GatewayHealth",
    "HealthTable",
    "SeriesHealth",
    "gateway_health",
    "gateways_document",
    "liveness",
    "series_health",
    "stale_since",
]

API_VERSION = "1"
Status = Literal["healthy", "degraded", "down", "unknown"]
STATUSES: tuple[Status, ...] = ("healthy", "degraded", "down", "unknown")
# Below this many final payments in the window, "healthy" would be a guess: say unknown.
MIN_PAYMENTS_TO_JUDGE = 10
_DOWN_RULES = {"outage", "no_data"}
# Alerts that are no reason to route around the gateway: it works, its payers' issuers decline.
_NOT_THE_GATEWAYS = {"decline_rate"}


def _iso(moment: datetime | None) -> str | None:
    return iso_z(moment) if moment else None


def _series_labels(alert: Alert) -> dict[str, str]:
    """The labels naming a dimension series' alert within its gateway ({} for the gateway)."""
    return {k: v for k, v in alert.labels.items() if k not in ("rule", "gateway")}


@dataclass(frozen=True)
class GatewayHealth:
    gateway: str
    status: Status
    reason: str
    since: datetime | None  # start of the condition behind a non-healthy status
    payments: int  # final payments in the window, declines included
    failures: int  # declines excluded
    failure_rate: float | None
    declines: int  # declined payments in the window
    interval: tuple[float, float] | None  # Wilson 95%
    baseline: float
    volume: int  # every payment in the window, pending included
    expected_volume: float | None  # None until a seasonal expectation exists (a week of data)
    window_minutes: int
    backup: str | None
    alerts: list[Alert] = field(default_factory=list)
    stale_since: datetime | None = None  # when the verdicts became too old to act on

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
            "declines": {
                "payments": self.declines,
                "rate": self.declines / self.payments if self.payments else None,
            },
            "volume": {"payments": self.volume, "expected": self.expected_volume},
            "window_minutes": self.window_minutes,
            "backup": self.backup,
            "backup_status": statuses.get(self.backup) if self.backup else None,
            "stale_since": _iso(self.stale_since),
            "segments_down": [
                _series_labels(a)
                for a in self.alerts
                if a.state == "firing" and a.rule in _DOWN_RULES and _series_labels(a)
            ],
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


@dataclass(frozen=True, eq=False)  # arrays do not compare as a bool
class HealthTable(Sequence[GatewayHealth]):
    """Every gateway's health as arrays in window order, computed once per tick for all
    gateways at once; the per-gateway :class:`GatewayHealth` rows (reasons, alert lists) are
    only built when a JSON document or the status page asks for them."""

    gateways: list[str]
    status: npt.NDArray[np.int64]  # index into STATUSES
    payments: npt.NDArray[np.int64]  # final payments in the window
    failures: npt.NDArray[np.int64]
    declines: npt.NDArray[np.int64]
    volume: npt.NDArray[np.int64]  # every payment in the window, pending included
    low: npt.NDArray[np.float64]  # Wilson 95% interval of the failure rate
    high: npt.NDArray[np.float64]
    expected: npt.NDArray[np.float64]  # NaN until a seasonal expectation exists
    window_minutes: int
    config: Config
    source_error: str | None = None
    alerts: Mapping[str, list[Alert]] = field(default_factory=dict)  # per gateway, oldest first
    stale_since: datetime | None = None
    stale_reason: str | None = None

    @classmethod
    def empty(cls, config: Config) -> HealthTable:
        none = np.zeros(0, dtype=np.int64)
        nan = np.zeros(0, dtype=np.float64)
        return cls([], none, none, none, none, none, nan, nan, nan, 1, config)

    def stale(self, since: datetime, reason: str) -> HealthTable:
        """The same table with every gateway ``unknown`` for ``reason``: its verdicts are
        too old for a router to act on since ``since``."""
        unknown = np.full(len(self.gateways), STATUSES.index("unknown"), dtype=np.int64)
        return replace(self, status=unknown, stale_since=since, stale_reason=reason)

    def __len__(self) -> int:
        return len(self.gateways)

    @overload
    def __getitem__(self, index: int) -> GatewayHealth: ...

    @overload
    def __getitem__(self, index: slice) -> list[GatewayHealth]: ...

    def __getitem__(self, index: int | slice) -> GatewayHealth | list[GatewayHealth]:
        return self.rows[index]

    @cached_property
    def rows(self) -> list[GatewayHealth]:
        return [self._row(i) for i in range(len(self.gateways))]

    def pick(self, indices: Iterable[int]) -> list[GatewayHealth]:
        """The rows at these indices, built without building the others."""
        built = self.__dict__.get("rows")  # built already for another view of this tick
        return [built[i] if built is not None else self._row(int(i)) for i in indices]

    def matching(self, statuses: Iterable[str] = (), text: str = "") -> npt.NDArray[np.intp]:
        """Indices of the gateways with one of ``statuses`` (any if none) whose name holds
        ``text`` (case-insensitive)."""
        keep = np.ones(len(self.gateways), dtype=np.bool_)
        if wanted := [STATUSES.index(s) for s in statuses]:
            keep &= np.isin(self.status, wanted)
        if text:
            needle = text.casefold()
            keep &= np.fromiter(
                (needle in g.casefold() for g in self.gateways), np.bool_, keep.size
            )
        return np.flatnonzero(keep)

    @cached_property
    def _columns(self) -> _Columns:
        return _Columns.of(self)

    def _row(self, i: int) -> GatewayHealth:
        gateway = self.gateways[i]
        columns = self._columns
        mine = self.alerts.get(gateway, [])
        firing = [a for a in mine if a.state == "firing" and a.rule not in _NOT_THE_GATEWAYS]
        n, k = columns.payments[i], columns.failures[i]
        status = columns.status[i]
        since = None
        if self.stale_reason:
            reason = self.stale_reason
        elif self.source_error:
            reason = f"payments source unreachable: {self.source_error}"
        elif status == "down":
            down = [a for a in firing if a.rule in _DOWN_RULES and not _series_labels(a)]
            reason, since = down[0].summary, down[0].since
        elif status == "degraded":
            reason, since = firing[0].summary, firing[0].since
        elif status == "unknown":
            reason = f"{n} final payment(s) in the last {self.window_minutes} min: too few to judge"
        elif pending := [a for a in mine if a.state == "pending"]:
            reason = f"not firing yet: {pending[0].summary}"
        else:
            reason = "failure rate within the SLA"
            waves = [a for a in mine if a.state == "firing" and a.rule in _NOT_THE_GATEWAYS]
            if waves:
                reason += f"; decline wave: {waves[0].summary}"
        settings = self.config.gateways.get(gateway)
        expected = columns.expected[i]
        return GatewayHealth(
            gateway=gateway,
            status=status,
            reason=reason,
            since=since,
            payments=n,
            failures=k,
            failure_rate=k / n if n else None,
            declines=columns.declines[i],
            interval=(columns.low[i], columns.high[i]) if n else None,
            baseline=self.config.sla_for(gateway),
            volume=columns.volume[i],
            expected_volume=expected if math.isfinite(expected) else None,
            window_minutes=self.window_minutes,
            backup=settings.backup if settings else None,
            alerts=mine,
            stale_since=self.stale_since,
        )


@dataclass(frozen=True)
class _Columns:
    """A :class:`HealthTable`'s arrays as Python lists, converted once for all its rows
    (indexing a numpy array element by element costs more than the rest of a row)."""

    status: list[Status]
    payments: list[int]
    failures: list[int]
    declines: list[int]
    volume: list[int]
    low: list[float]
    high: list[float]
    expected: list[float]

    @classmethod
    def of(cls, table: HealthTable) -> _Columns:
        return cls(
            [STATUSES[s] for s in table.status.tolist()],
            table.payments.tolist(),
            table.failures.tolist(),
            table.declines.tolist(),
            table.volume.tolist(),
            table.low.tolist(),
            table.high.tolist(),
            table.expected.tolist(),
        )


@dataclass(frozen=True, eq=False)
class _Recent:
    """Each row's last ``detection.sla_breach.window`` minutes."""

    minutes: int
    payments: npt.NDArray[np.int64]  # final payments
    failures: npt.NDArray[np.int64]
    declines: npt.NDArray[np.int64]
    volume: npt.NDArray[np.int64]  # every payment, pending included
    low: npt.NDArray[np.float64]  # Wilson 95% interval of the failure rate
    high: npt.NDArray[np.float64]


def _recent(window: CountWindow, config: Config) -> _Recent:
    """What a gateway's or a series' health shows: its last minutes, summed."""
    minutes = max(1, round(config.detection.sla_breach.window.total_seconds() / 60))
    columns = window.recent(minutes)
    payments = window.payments[:, columns].sum(axis=1)
    failures = window.failures[:, columns].sum(axis=1)
    low, high = wilson_interval(failures, payments)
    return _Recent(
        minutes,
        payments,
        failures,
        window.declines[:, columns].sum(axis=1),
        window.volume[:, columns].sum(axis=1),
        low,
        high,
    )


@dataclass(frozen=True, eq=False)
class SeriesHealth:
    """The dimension series with traffic in the count window, as the metrics show them."""

    gateways: list[str]  # the gateway of each series
    labels: list[dict[str, str]]  # e.g. {"method": "card"}
    payments: npt.NDArray[np.int64]  # final payments in the SLA window
    failures: npt.NDArray[np.int64]
    declines: npt.NDArray[np.int64]
    high: npt.NDArray[np.float64]  # upper end of the Wilson 95% interval
    active: npt.NDArray[np.bool_]  # the series' sla_breach condition holds
    evidence_ratio: npt.NDArray[np.float64]  # CUSUM over threshold (0 for an untested series)


def series_health(window: CountWindow, verdicts: RuleResult, config: Config) -> SeriesHealth:
    """``window``: the dimension series' count window; ``verdicts``: their sla_breach result
    of the same tick, row for row. A series that saw no payment in the whole window (the
    count window keeps every row it ever saw) is left out, which keeps the metrics to the
    series that exist now; of those, the ``server.series_metrics_limit`` worst are kept (the
    condition holding first, then by evidence ratio, then by the upper end of the failure
    rate's interval), in window order."""
    rows = len(verdicts.gateways)
    seen = np.flatnonzero(window.volume[:rows].sum(axis=1) > 0)
    recent = _recent(window, config)
    ratio = verdicts.evidence_ratio
    limit = config.server.series_metrics_limit
    if seen.size > limit:
        evidence = ratio[seen] if ratio is not None else np.zeros(seen.size)
        worst = np.lexsort((-recent.high[seen], -evidence, ~verdicts.active[seen]))
        seen = np.sort(seen[worst[:limit]])
    labels = verdicts.series or [{}] * rows
    return SeriesHealth(
        [verdicts.gateways[i] for i in seen],
        [labels[i] for i in seen],
        recent.payments[seen],
        recent.failures[seen],
        recent.declines[seen],
        recent.high[seen],
        verdicts.active[seen],
        ratio[seen] if ratio is not None else np.zeros(seen.size),
    )


def gateway_health(
    window: CountWindow,
    alerts: Iterable[Alert],
    config: Config,
    source_error: str | None = None,
    results: Iterable[RuleResult] = (),
) -> HealthTable:
    """The health of every gateway in the window (configured ones first), in window order.

    ``results`` are the tick's rule results; a volume rule's seasonal expectation, scaled to
    this window, becomes ``expected_volume``. The work is numpy across gateways plus a
    loop over the alerts, however many gateways there are.
    """
    recent = _recent(window, config)
    minutes, payments, failures = recent.minutes, recent.payments, recent.failures
    count = len(window.gateways)
    expected = np.full(count, np.nan)
    for rule in results:
        if rule.expected_per_minute is not None:
            known = len(rule.expected_per_minute)
            expected[:known] = rule.expected_per_minute * minutes
    by_gateway: dict[str, list[Alert]] = {}
    for alert in sorted(alerts, key=lambda a: a.since):
        gateway = alert.labels.get("gateway")
        if gateway is not None:
            by_gateway.setdefault(gateway, []).append(alert)
    row = dict(zip(window.gateways, range(count), strict=True))
    down = np.zeros(count, dtype=bool)
    firing = np.zeros(count, dtype=bool)
    for alert in (
        a
        for mine in by_gateway.values()
        for a in mine
        if a.state == "firing" and a.rule not in _NOT_THE_GATEWAYS
    ):
        i = row.get(alert.labels["gateway"])
        if i is not None:
            firing[i] = True
            down[i] |= alert.rule in _DOWN_RULES and not _series_labels(alert)
    status = np.select(
        [np.full(count, bool(source_error)), down, firing, payments < MIN_PAYMENTS_TO_JUDGE],
        [STATUSES.index(s) for s in ("unknown", "down", "degraded", "unknown")],
        STATUSES.index("healthy"),
    ).astype(np.int64)
    return HealthTable(
        list(window.gateways),
        status,
        payments,
        failures,
        recent.declines,
        recent.volume,
        recent.low,
        recent.high,
        expected,
        minutes,
        config,
        source_error,
        by_gateway,
    )


def gateways_document(
    health: Sequence[GatewayHealth],
    at: datetime | None,
    role: str,
    chosen: Iterable[int] | None = None,
) -> dict[str, Any]:
    """The ``/api/v1/gateways`` JSON document (see README "HTTP API"): every gateway, or
    those at the indices ``chosen`` of a :class:`HealthTable` (their backups' status is
    still looked up among all)."""
    if isinstance(health, HealthTable):
        statuses = dict(zip(health.gateways, (STATUSES[s] for s in health.status), strict=True))
        shown = health.pick(range(len(health)) if chosen is None else chosen)
    else:
        statuses = {h.gateway: h.status for h in health}
        shown = list(health)
    return {
        "version": API_VERSION,
        "at": _iso(at),
        "role": role,
        "gateways": [h.to_dict(statuses) for h in shown],
    }


def stale_since(
    now: datetime, started: datetime, last: datetime | None, limit: timedelta
) -> datetime | None:
    """When the last verdicts (made at ``last``, or none since ``started``) became older
    than ``limit``, if they are now; None while they are fresh.

    >>> from datetime import UTC
    >>> t0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    >>> stale_since(t0 + timedelta(minutes=3), t0, t0, timedelta(minutes=3)) is None
    True
    >>> stale_since(t0 + timedelta(minutes=4), t0, t0, timedelta(minutes=3)).isoformat()
    '2026-11-20T12:03:00+00:00'
    """
    since = (last or started) + limit
    return since if now > since else None


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
    gateways_stale_since: datetime | None = None,
) -> tuple[int, dict[str, Any]]:
    """``/healthz``: 200 while ticks succeed, 503 with the reason otherwise.

    ``limit`` is how old the last successful tick may be (``server.unhealthy_after``
    intervals). A follower that ticks fine is healthy: it is ready to take over.
    ``last_problem`` (what failed at the last tick) is appended to a 503's reason.
    ``gateways_stale_since``: since when ``/api/v1/gateways`` answers ``unknown`` for want
    of fresh verdicts (``stale_since`` in the body).

    >>> from datetime import UTC
    >>> t0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    >>> liveness(t0, t0, t0, timedelta(minutes=3), None, 0, 3, "follower")[0]
    200
    >>> code, body = liveness(t0 + timedelta(minutes=4), t0, t0, timedelta(minutes=3),
    ...                       None, 0, 3, "leader")
    >>> code, body["reason"]
    (503, 'last successful tick 240s ago (limit 180s)')
    """
    body: dict[str, Any] = {
        "role": role,
        "last_successful_tick": _iso(last_success),
        "stale_since": _iso(gateways_stale_since),
    }
    if source_error is not None and failed_ticks >= source_down_after:
        reason = f"payments source unreachable for {failed_ticks} ticks: {source_error}"
    elif stale_since(now, started, last_success, limit) is None:
        if last_success is None:
            return 200, {**body, "status": "starting", "reason": "no tick has finished yet"}
        return 200, {**body, "status": "ok", "reason": f"ticking as the {role}"}
    elif last_success is None:
        reason = f"no successful tick in the {(now - started).total_seconds():.0f}s since start"
    else:
        reason = (
            f"last successful tick {(now - last_success).total_seconds():.0f}s ago "
            f"(limit {limit.total_seconds():.0f}s)"
        )
    if last_problem and last_problem not in reason:
        reason += f"; last tick: {last_problem}"
    return 503, {**body, "status": "unhealthy", "reason": reason}
