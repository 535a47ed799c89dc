"""Prometheus metrics of the service, registered on a registry the caller passes in."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from detector.alerts import Alert
from detector.engine import TickResult
from detector.health import GatewayHealth
from detector.rules import RuleResult

__all__ = ["Metrics"]

_STATUSES = ("healthy", "degraded", "down", "unknown")


class Metrics:
    """Everything ``/metrics`` exposes; the daemon updates it after each tick and send."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.ticks = Counter(
            "detector_ticks",
            "Evaluation ticks by outcome (ok, source_error, store_error, follower).",
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
            "Rows skipped for a null gateway or an unknown status.",
            registry=registry,
        )
        self.last_success = Gauge(
            "detector_last_successful_tick_timestamp_seconds",
            "When the last tick that read the source finished (Unix time).",
            registry=registry,
        )
        self.payments = Gauge(
            "detector_gateway_payments",
            "Final payments in the gateway's SLA window.",
            ["gateway"],
            registry=registry,
        )
        self.failures = Gauge(
            "detector_gateway_failures",
            "Failed payments in the gateway's SLA window.",
            ["gateway"],
            registry=registry,
        )
        self.failure_rate = Gauge(
            "detector_gateway_failure_rate",
            "Failures / final payments in the SLA window (NaN without payments).",
            ["gateway"],
            registry=registry,
        )
        self.failure_rate_upper = Gauge(
            "detector_gateway_failure_rate_upper",
            "Upper end of the Wilson 95% interval of the failure rate.",
            ["gateway"],
            registry=registry,
        )
        self.status = Gauge(
            "detector_gateway_status",
            "1 for the gateway's current status (healthy, degraded, down, unknown).",
            ["gateway", "status"],
            registry=registry,
        )
        self.evidence_ratio = Gauge(
            "detector_evidence_ratio",
            "The rule's detector statistic over its calibrated threshold (1 fires).",
            ["gateway", "rule"],
            registry=registry,
        )
        self.rule_active = Gauge(
            "detector_rule_active",
            "1 where the rule's condition holds for the gateway at the last tick.",
            ["gateway", "rule"],
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

    def observe_tick(self, result: TickResult, outcome: str) -> None:
        self.ticks.labels(outcome).inc()
        self.tick_seconds.observe(result.seconds)
        if result.error is None:
            self.rows.inc(result.rows)
            self.invalid_rows.inc(result.invalid_rows)
            self.last_success.set(result.at.timestamp())

    def observe_health(
        self,
        health: Iterable[GatewayHealth],
        alerts: Iterable[Alert],
        results: Iterable[RuleResult],
    ) -> None:
        for h in health:
            self.payments.labels(h.gateway).set(h.payments)
            self.failures.labels(h.gateway).set(h.failures)
            rate = h.failure_rate if h.failure_rate is not None else float("nan")
            self.failure_rate.labels(h.gateway).set(rate)
            self.failure_rate_upper.labels(h.gateway).set(h.interval[1] if h.interval else 1.0)
            for status in _STATUSES:
                self.status.labels(h.gateway, status).set(1 if status == h.status else 0)
        for result in results:
            for i, gateway in enumerate(result.gateways):
                self.rule_active.labels(gateway, result.rule).set(1 if result.active[i] else 0)
                if result.evidence_ratio is not None:
                    ratio = float(result.evidence_ratio[i])
                    self.evidence_ratio.labels(gateway, result.rule).set(ratio)
        counts: dict[tuple[str, str, str], int] = {}
        for alert in alerts:
            key = (alert.rule, alert.state, alert.severity)
            counts[key] = counts.get(key, 0) + 1
        # Series of alerts that went away drop to zero rather than vanishing, so rates work.
        for labels in list(self._alert_series()):
            counts.setdefault(labels, 0)
        for (rule, state, severity), count in counts.items():
            self.alerts.labels(rule, state, severity).set(count)

    def _alert_series(self) -> Iterable[tuple[str, str, str]]:
        for metric in self.alerts.collect():
            for sample in metric.samples:
                yield sample.labels["rule"], sample.labels["state"], sample.labels["severity"]

    def notification_result(self, receiver: str, outcome: str) -> None:
        self.notifications.labels(receiver, outcome).inc()
