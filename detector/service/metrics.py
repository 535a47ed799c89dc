"""Prometheus metrics of the service, registered on a registry the caller passes in.

The per-gateway gauges are not registry children: :class:`LastTickGauges`, a custom
collector on the same registry, builds them from the tick's arrays on the first scrape
after the tick, which keeps publishing a tick independent of the number of gateways.

Dimension series (``detection.sla_breach.series``) carry one label per dimension, as their
alerts do: ``detector_evidence_ratio{gateway="stripe",rule="sla_breach",method="card"}``.
Their payments and failure rates are ``detector_series_*`` gauges rather than more samples
of ``detector_gateway_*``, so that summing a gateway metric over its labels still counts
each payment once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from detector.alerts import Alert
from detector.engine import TickResult
from detector.rules import RuleResult
from detector.service.health import STATUSES, HealthTable, SeriesHealth

__all__ = ["LastTickGauges", "Metrics"]


class Metrics:
    """Everything ``/metrics`` exposes; the daemon updates it after each tick and send."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.ticks = Counter(
            "detector_ticks",
            "Evaluation ticks by outcome (ok, source_error, store_error, follower, skipped).",
            ["outcome"],
            registry=registry,
        )
        self.tick_seconds = Histogram(
            "detector_tick_duration_seconds",
            "Time one tick took: read, evaluate, alert lifecycle.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.rows = Counter(
            "detector_rows_read", "Payment rows covered by the buckets read.", registry=registry
        )
        self.invalid_rows = Counter(
            "detector_rows_invalid",
            "Rows skipped for a null gateway or an unlisted status, each counted once.",
            registry=registry,
        )
        self.last_success = Gauge(
            "detector_last_successful_tick_timestamp_seconds",
            "When the last tick that read the source finished (Unix time).",
            registry=registry,
        )
        self.alerts = Gauge(
            "detector_alerts",
            "Pending and firing alerts by rule, state and severity.",
            ["rule", "state", "severity"],
            registry=registry,
        )
        self.notifications = Counter(
            "detector_notifications",
            "Delivery attempts per receiver by outcome (delivered, retried, failed).",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "detector_outbox_depth", "Notifications waiting to be delivered.", registry=registry
        )
        self.leader = Gauge(
            "detector_leader",
            "1 while this replica holds the leader lease and notifies.",
            registry=registry,
        )
        self.reloads = Counter(
            "detector_config_reloads",
            "alerts.yaml reloads on SIGHUP by outcome (applied, rejected).",
            ["outcome"],
            registry=registry,
        )
        self.heartbeats = Counter(
            "detector_heartbeat_pings",
            "Pings of the dead-man's switch (heartbeat.url) by outcome (ok, failed).",
            ["outcome"],
            registry=registry,
        )
        self.last_tick = LastTickGauges()
        registry.register(self.last_tick)

    def observe_tick(self, result: TickResult, outcome: str) -> None:
        self.ticks.labels(outcome).inc()
        self.tick_seconds.observe(result.seconds)
        if result.error is None:
            self.rows.inc(result.rows)
            self.invalid_rows.inc(result.invalid_rows)
            self.last_success.set(result.at.timestamp())

    def observe_health(
        self,
        health: HealthTable,
        alerts: Iterable[Alert],
        results: Iterable[RuleResult],
        series: SeriesHealth | None = None,
    ) -> None:
        """Keep the tick's per-gateway and per-series figures (for :class:`LastTickGauges`)
        and count the alerts."""
        self.last_tick.update(health, results, series)
        counts: dict[tuple[str, str, str], int] = {}
        for alert in alerts:
            key = (alert.rule, alert.state, alert.severity)
            counts[key] = counts.get(key, 0) + 1
        # Series of alerts that went away drop to zero rather than vanishing, so rates work.
        for labels in list(self._alert_series()):
            counts.setdefault(labels, 0)
        for (rule, state, severity), count in counts.items():
            self.alerts.labels(rule, state, severity).set(count)

    def exposition(self) -> bytes:
        """``/metrics``: what ``generate_latest(registry)`` gives, except that the last
        tick's gauges come last and are formatted once a tick rather than on every scrape
        (they are most of the text: thousands of samples at a few hundred gateways)."""
        return generate_latest(_WithoutLastTick(self.registry)) + self.last_tick.exposition()

    def _alert_series(self) -> Iterable[tuple[str, str, str]]:
        for metric in self.alerts.collect():
            for sample in metric.samples:
                yield sample.labels["rule"], sample.labels["state"], sample.labels["severity"]

    def notification_result(self, receiver: str, outcome: str) -> None:
        self.notifications.labels(receiver, outcome).inc()

    def heartbeat_result(self, outcome: str) -> None:
        self.heartbeats.labels(outcome).inc()


class LastTickGauges(Collector):
    """The per-gateway and per-series gauges of the last tick.

    Built from the tick's arrays on the first collection after :meth:`update` and reused
    until the next one, rather than kept as thousands of labelled gauge children.
    """

    def __init__(self) -> None:
        # Reentrant: exposition() formats the families through collect().
        self._lock = threading.RLock()
        self._health: HealthTable | None = None
        self._results: list[RuleResult] = []
        self._series: SeriesHealth | None = None
        self._families: list[GaugeMetricFamily] | None = None
        self._text: bytes | None = None

    def update(
        self, health: HealthTable, results: Iterable[RuleResult], series: SeriesHealth | None
    ) -> None:
        with self._lock:
            self._health, self._results, self._series = health, list(results), series
            self._families = self._text = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if self._families is None:
                self._families = _gateway_families(self._health, self._results, self._series)
            families = self._families
        return iter(families)

    def exposition(self) -> bytes:
        """The families in the text format, formatted on the first call after a tick."""
        with self._lock:
            if self._text is None:
                self._text = generate_latest(self)
            return self._text

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families' names, so a registry can refuse a collector that clashes with them."""
        return iter(GaugeMetricFamily(name, help_) for name, help_ in _HELP.items())


class _WithoutLastTick:
    """A registry's metrics but those of :class:`LastTickGauges` (whose names ``describe``
    reserves in the registry, so no other collector has them)."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        return (metric for metric in self.registry.collect() if metric.name not in _HELP)


def _window_help(kind: str, whose: str) -> dict[str, str]:
    return {
        f"detector_{kind}_payments": f"Final payments in {whose} SLA window.",
        f"detector_{kind}_failures": f"Failed payments in {whose} SLA window, declines excluded.",
        f"detector_{kind}_declines": (
            f"Declined payments in {whose} SLA window (final payments, not failures)."
        ),
        f"detector_{kind}_failure_rate": (
            f"Failures / final payments in {whose} SLA window (NaN without payments)."
        ),
        f"detector_{kind}_failure_rate_upper": (
            f"Upper end of the Wilson 95% interval of {whose} failure rate."
        ),
    }


_HELP = {
    **_window_help("gateway", "the gateway's"),
    "detector_gateway_status": (
        "1 for the gateway's current status (healthy, degraded, down, unknown)."
    ),
    "detector_rule_active": (
        "1 where the rule's condition holds for the gateway (or series) at the last tick."
    ),
    "detector_evidence_ratio": (
        "The rule's detector statistic over its calibrated threshold (1 fires)."
    ),
    **_window_help("series", "the series'"),
}


def _add_samples(
    family: GaugeMetricFamily,
    labels: Sequence[dict[str, str]],
    values: npt.NDArray[np.float64],
) -> None:
    """One sample per label set. The label names vary within a family (a dimension series
    adds its own), which ``add_metric``'s fixed label names cannot express."""
    name = family.name
    family.samples.extend(
        Sample(name, label_set, value)
        for label_set, value in zip(labels, values.tolist(), strict=True)
    )


def _gauge(
    name: str, labels: Sequence[dict[str, str]], values: npt.NDArray[np.float64]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, _HELP[name])
    _add_samples(family, labels, values)
    return family


def _window_families(
    kind: str,
    labels: Sequence[dict[str, str]],
    payments: npt.NDArray[np.int64],
    failures: npt.NDArray[np.int64],
    declines: npt.NDArray[np.int64],
    high: npt.NDArray[np.float64],
) -> list[GaugeMetricFamily]:
    """detector_{kind}_payments, _failures, _declines, _failure_rate and _failure_rate_upper:
    the counts of a gateway's or a series' SLA window."""
    return [
        _gauge(f"detector_{kind}_payments", labels, payments.astype(np.float64)),
        _gauge(f"detector_{kind}_failures", labels, failures.astype(np.float64)),
        _gauge(f"detector_{kind}_declines", labels, declines.astype(np.float64)),
        _gauge(
            f"detector_{kind}_failure_rate",
            labels,
            _failure_rate(payments.astype(np.float64), failures),
        ),
        _gauge(f"detector_{kind}_failure_rate_upper", labels, high),
    ]


def _failure_rate(
    payments: npt.NDArray[np.float64], failures: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    rate: npt.NDArray[np.float64] = np.divide(
        failures, payments, out=np.full(payments.shape, np.nan), where=payments > 0
    )
    return rate


def _gateway_families(
    health: HealthTable | None, results: list[RuleResult], series: SeriesHealth | None = None
) -> list[GaugeMetricFamily]:
    if health is None or not len(health):
        return []
    gateway = [{"gateway": g} for g in health.gateways]
    status = [{"gateway": g, "status": s} for g in health.gateways for s in STATUSES]
    current = (health.status[:, None] == np.arange(len(STATUSES))).astype(np.float64)
    active = GaugeMetricFamily("detector_rule_active", _HELP["detector_rule_active"])
    ratio = GaugeMetricFamily("detector_evidence_ratio", _HELP["detector_evidence_ratio"])
    for r in results:
        by_rule = [{"gateway": g, "rule": r.rule} for g in r.gateways]
        _add_samples(active, by_rule, r.active.astype(np.float64))
        if r.evidence_ratio is not None:
            _add_samples(ratio, by_rule, r.evidence_ratio)
    series_families = []
    if series is not None and series.gateways:
        # Dimension names are Prometheus label names, none of them "gateway" or "rule" (the
        # config checks both).
        labels = [
            {"gateway": g, **values}
            for g, values in zip(series.gateways, series.labels, strict=True)
        ]
        by_rule = [{**label_set, "rule": "sla_breach"} for label_set in labels]
        _add_samples(active, by_rule, series.active.astype(np.float64))
        _add_samples(ratio, by_rule, series.evidence_ratio)
        series_families = _window_families(
            "series", labels, series.payments, series.failures, series.declines, series.high
        )
    return [
        *_window_families(
            "gateway", gateway, health.payments, health.failures, health.declines, health.high
        ),
        _gauge("detector_gateway_status", status, current.ravel()),
        active,
        ratio,
        *series_families,
    ]
