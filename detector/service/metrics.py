"""Prometheus metrics of the service, registered on a registry the caller passes in.

The per-gateway gauges are not registry children: they are formatted straight from the
tick's arrays (see :meth:`Metrics.exposition`), which keeps publishing a tick independent
of the number of gateways.

Dimension series (``detection.sla_breach.series``) carry one label per dimension, as their
alerts do: ``detector_evidence_ratio{gateway="stripe",rule="sla_breach",method="card"}``.
Their payments and failure rates are ``detector_series_*`` gauges rather than more samples
of ``detector_gateway_*``, so that summing a gateway metric over its labels still counts
each payment once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.utils import floatToGoString

from detector.alerts import Alert
from detector.engine import TickResult
from detector.rules import RuleResult
from detector.service.health import STATUSES, HealthTable, SeriesHealth

__all__ = ["Metrics"]


class Metrics:
    """Everything ``/metrics`` exposes; the daemon updates it after each tick and send."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self._lock = threading.Lock()
        self._health: HealthTable | None = None
        self._results: list[RuleResult] = []
        self._series: SeriesHealth | None = None
        self._gateway_text: bytes | None = None
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
        health: HealthTable,
        alerts: Iterable[Alert],
        results: Iterable[RuleResult],
        series: SeriesHealth | None = None,
    ) -> None:
        """Keep the tick's per-gateway and per-series figures (exposed by
        :meth:`exposition`) and count the alerts."""
        with self._lock:
            self._health, self._results, self._series = health, list(results), series
            self._gateway_text = None
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
        """``/metrics``: the registry's metrics, then the per-gateway gauges of the last tick.

        The per-gateway part is formatted from the tick's arrays once per tick, on the
        first scrape after it, rather than kept as thousands of labelled gauge children.
        """
        with self._lock:
            if self._gateway_text is None:
                self._gateway_text = _gateway_families(
                    self._health, self._results, self._series
                ).encode()
            text = self._gateway_text
        return generate_latest(self.registry) + text

    def _alert_series(self) -> Iterable[tuple[str, str, str]]:
        for metric in self.alerts.collect():
            for sample in metric.samples:
                yield sample.labels["rule"], sample.labels["state"], sample.labels["severity"]

    def notification_result(self, receiver: str, outcome: str) -> None:
        self.notifications.labels(receiver, outcome).inc()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _samples(name: str, labels: list[str], values: npt.NDArray[np.float64]) -> str:
    """Sample lines of one metric; ``labels`` are the rendered label sets, one per value."""
    numbers = map(floatToGoString, values.tolist())
    return "".join(
        f"{name}{{{label}}} {number}\n" for label, number in zip(labels, numbers, strict=True)
    )


def _family(name: str, help_: str, samples: str) -> str:
    return f"# HELP {name} {help_}\n# TYPE {name} gauge\n{samples}"


def _window_families(
    kind: str,
    whose: str,
    labels: list[str],
    payments: npt.NDArray[np.int64],
    failures: npt.NDArray[np.int64],
    high: npt.NDArray[np.float64],
) -> str:
    """detector_{kind}_payments, _failures, _failure_rate and _failure_rate_upper: the counts
    of a gateway's or a series' SLA window."""
    families = [
        ("payments", f"Final payments in {whose} SLA window.", payments.astype(np.float64)),
        ("failures", f"Failed payments in {whose} SLA window.", failures.astype(np.float64)),
        (
            "failure_rate",
            f"Failures / final payments in {whose} SLA window (NaN without payments).",
            _failure_rate(payments.astype(np.float64), failures),
        ),
        (
            "failure_rate_upper",
            f"Upper end of the Wilson 95% interval of {whose} failure rate.",
            high,
        ),
    ]
    return "".join(
        _family(f"detector_{kind}_{name}", help_, _samples(f"detector_{kind}_{name}", labels, v))
        for name, help_, v in families
    )


def _failure_rate(
    payments: npt.NDArray[np.float64], failures: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    return np.divide(failures, payments, out=np.full(payments.shape, np.nan), where=payments > 0)


def _series_families(series: SeriesHealth | None) -> tuple[str, str, str]:
    """The series' samples of detector_rule_active and detector_evidence_ratio, and their
    own detector_series_* families."""
    if series is None or not series.gateways:
        return "", "", ""
    gateway = [f'gateway="{_escape(g)}"' for g in series.gateways]
    # Dimension names are Prometheus label names, none of them "gateway" or "rule" (the
    # config checks both).
    dimensions = [
        "".join(f',{name}="{_escape(value)}"' for name, value in sorted(values.items()))
        for values in series.labels
    ]
    labels = [g + d for g, d in zip(gateway, dimensions, strict=True)]
    by_rule = [f'{g},rule="sla_breach"{d}' for g, d in zip(gateway, dimensions, strict=True)]
    return (
        _samples("detector_rule_active", by_rule, series.active.astype(np.float64)),
        _samples("detector_evidence_ratio", by_rule, series.evidence_ratio),
        _window_families(
            "series", "the series'", labels, series.payments, series.failures, series.high
        ),
    )


def _gateway_families(
    health: HealthTable | None, results: list[RuleResult], series: SeriesHealth | None = None
) -> str:
    if health is None or not len(health):
        return ""
    gateway = [f'gateway="{_escape(g)}"' for g in health.gateways]
    status = [f'{label},status="{s}"' for label in gateway for s in STATUSES]
    current = (health.status[:, None] == np.arange(len(STATUSES))).astype(np.float64)
    by_rule = [
        ([f'gateway="{_escape(g)}",rule="{r.rule}"' for g in r.gateways], r) for r in results
    ]
    active = "".join(
        _samples("detector_rule_active", labels, r.active.astype(np.float64))
        for labels, r in by_rule
    )
    ratio = "".join(
        _samples("detector_evidence_ratio", labels, r.evidence_ratio)
        for labels, r in by_rule
        if r.evidence_ratio is not None
    )
    series_active, series_ratio, series_families = _series_families(series)
    return (
        _window_families(
            "gateway", "the gateway's", gateway, health.payments, health.failures, health.high
        )
        + _family(
            "detector_gateway_status",
            "1 for the gateway's current status (healthy, degraded, down, unknown).",
            _samples("detector_gateway_status", status, current.ravel()),
        )
        + _family(
            "detector_rule_active",
            "1 where the rule's condition holds for the gateway (or series) at the last tick.",
            active + series_active,
        )
        + _family(
            "detector_evidence_ratio",
            "The rule's detector statistic over its calibrated threshold (1 fires).",
            ratio + series_ratio,
        )
        + series_families
    )
