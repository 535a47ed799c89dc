"""Prometheus metrics of the service, registered on a registry the caller passes in.

The per-gateway gauges are not registry children: :class:`LastTickGauges`, a custom
collector on the same registry, writes them from the tick's arrays on the first scrape
after the tick, which keeps publishing a tick independent of the number of gateways and a
scrape of 10,000 gateways well under a second.

Dimension series (``detection.sla_breach.series``) carry one label per dimension, as their
alerts do: ``detector_evidence_ratio{gateway="stripe",rule="sla_breach",method="card"}``.
Their payments and failure rates are ``detector_series_*`` gauges rather than more samples
of ``detector_gateway_*``, so that summing a gateway metric over its labels still counts
each payment once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from detector import __version__
from detector.alerts import Alert
from detector.engine import TickResult
from detector.rules import RULES, RuleResult
from detector.service.health import STATUSES, HealthTable, SeriesHealth

__all__ = ["LastTickGauges", "Metrics"]

# Every label value each counter can take, exported as 0 from the start: a rate() over a series
# that appears only at its first increment misses that increment.
TICK_OUTCOMES = ("ok", "source_error", "store_error", "follower", "skipped")
DELIVERY_OUTCOMES = ("delivered", "retried", "failed")
RELOAD_OUTCOMES = ("applied", "rejected")
ALERT_STATES = ("pending", "firing")
SEVERITIES = ("warning", "critical")

# A `_created` series per counter and histogram doubles their series for a timestamp that
# Prometheus does not use; process-wide, as the client library keeps it.
disable_created_metrics()  # type: ignore[no-untyped-call]


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
        self.build_info = Gauge(
            "detector_build_info",
            "Always 1; the detector's version as a label.",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(__version__).set(1)
        self.last_tick = LastTickGauges()
        registry.register(self.last_tick)
        for outcome in TICK_OUTCOMES:
            self.ticks.labels(outcome)
        for outcome in RELOAD_OUTCOMES:
            self.reloads.labels(outcome)
        for rule in RULES:
            for state in ALERT_STATES:
                for severity in SEVERITIES:
                    self.alerts.labels(rule.name, state, severity).set(0)

    def receivers(self, names: Iterable[str]) -> None:
        """Export every delivery outcome of these receivers, at 0 until one happens."""
        for receiver in names:
            for outcome in DELIVERY_OUTCOMES:
                self.notifications.labels(receiver, outcome)

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
        tick's gauges come last and are written once a tick rather than on every scrape
        (they are most of the text: thousands of samples at a few hundred gateways)."""
        with self.last_tick.appended_after():
            rest = generate_latest(self.registry)
        return rest + self.last_tick.exposition()

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

    Written straight from the tick's arrays into the text format on the first scrape after
    :meth:`update` (a line per sample, no object per sample: 10,000 gateways are about
    170,000 samples) and served as those bytes until the next tick. :meth:`collect` reads the
    same text back, for the registry's own readers (``get_sample_value``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._health: HealthTable | None = None
        self._results: list[RuleResult] = []
        self._series: SeriesHealth | None = None
        self._text: bytes | None = None
        # Set while Metrics.exposition formats the rest of the registry, in that thread only.
        self._appended = threading.local()

    def update(
        self, health: HealthTable, results: Iterable[RuleResult], series: SeriesHealth | None
    ) -> None:
        with self._lock:
            self._health, self._results, self._series = health, list(results), series
            self._text = None

    def exposition(self) -> bytes:
        """The families in the text format, written on the first call after a tick."""
        with self._lock:
            if self._text is None:
                self._text = _exposition(self._health, self._results, self._series).encode()
            return self._text

    @contextlib.contextmanager
    def appended_after(self) -> Iterator[None]:
        """Within it, this thread's collections of the registry leave these families out,
        as the caller appends :meth:`exposition` itself."""
        self._appended.active = True
        try:
            yield
        finally:
            self._appended.active = False

    def collect(self) -> Iterator[Metric]:
        if getattr(self._appended, "active", False):
            return iter(())
        return iter(text_string_to_metric_families(self.exposition().decode()))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families' names, so a registry can refuse a collector that clashes with them."""
        return iter(GaugeMetricFamily(name, help_) for name, help_ in _HELP.items())


def _window_help(kind: str, whose: str) -> dict[str, str]:
    return {
        f"detector_{kind}_payments": f"Final payments in {whose} SLA window.",
        f"detector_{kind}_failures": f"Failed payments in {whose} SLA window, declines excluded.",
        f"detector_{kind}_declines": (
            f"Declined payments in {whose} SLA window (final payments, not failures)."
        ),
        f"detector_{kind}_failure_ratio": (
            f"Failures / final payments in {whose} SLA window (NaN without payments)."
        ),
        f"detector_{kind}_failure_upper_bound_ratio": (
            f"Upper end of the Wilson 95% interval of {whose} failure ratio."
        ),
        f"detector_{kind}_decline_ratio": (
            f"Declines / final payments in {whose} SLA window (NaN without payments)."
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


def _quoted(value: str) -> str:
    """A label value as the text format quotes it (backslash, newline, double quote)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _label_text(labels: Mapping[str, str]) -> str:
    """``a="x",b="y"``: label names sorted, as prometheus_client writes them."""
    return ",".join(f'{name}="{_quoted(value)}"' for name, value in sorted(labels.items()))


def _numbers(values: npt.ArrayLike) -> list[str]:
    """Sample values as the text format writes them: Python's shortest float text, and
    NaN, +Inf, -Inf."""
    floats = np.asarray(values, dtype=np.float64)
    texts = list(map(repr, floats.tolist()))
    for i in np.flatnonzero(~np.isfinite(floats)).tolist():
        texts[i] = "NaN" if np.isnan(floats[i]) else ("+Inf" if floats[i] > 0 else "-Inf")
    return texts


def _family(name: str, labels: Sequence[str], values: npt.ArrayLike) -> str:
    """A gauge family in the text format; ``labels`` are the samples' ``_label_text``."""
    help_ = _HELP[name].replace("\\", r"\\").replace("\n", r"\n")
    lines = [
        f"{name}{{{label}}} {value}\n"
        for label, value in zip(labels, _numbers(values), strict=True)
    ]
    return f"# HELP {name} {help_}\n# TYPE {name} gauge\n" + "".join(lines)


def _window_families(
    kind: str,
    labels: Sequence[str],
    payments: npt.NDArray[np.int64],
    failures: npt.NDArray[np.int64],
    declines: npt.NDArray[np.int64],
    high: npt.NDArray[np.float64],
) -> list[str]:
    """detector_{kind}_payments, _failures, _declines, _failure_ratio,
    _failure_upper_bound_ratio and _decline_ratio:
    the counts of a gateway's or a series' SLA window."""
    return [
        _family(f"detector_{kind}_payments", labels, payments),
        _family(f"detector_{kind}_failures", labels, failures),
        _family(f"detector_{kind}_declines", labels, declines),
        _family(f"detector_{kind}_failure_ratio", labels, _share(failures, payments)),
        _family(f"detector_{kind}_failure_upper_bound_ratio", labels, high),
        _family(f"detector_{kind}_decline_ratio", labels, _share(declines, payments)),
    ]


def _share(part: npt.NDArray[np.int64], payments: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """``part / payments``, NaN without payments."""
    rate: npt.NDArray[np.float64] = np.divide(
        part, payments, out=np.full(payments.shape, np.nan), where=payments > 0
    )
    return rate


def _exposition(
    health: HealthTable | None, results: list[RuleResult], series: SeriesHealth | None = None
) -> str:
    """Every per-gateway and per-series family of the tick, in the text format."""
    if health is None or not len(health):
        return ""
    gateway = {g: f'gateway="{_quoted(g)}"' for g in health.gateways}
    named = [gateway[g] for g in health.gateways]
    status = [f'{g},status="{s}"' for g in named for s in STATUSES]
    current = health.status[:, None] == np.arange(len(STATUSES))
    # Label names in sorted order, as _label_text writes them: gateway, rule.
    active_labels: list[str] = []
    active_values: list[npt.NDArray[np.float64]] = []
    ratio_labels: list[str] = []
    ratio_values: list[npt.NDArray[np.float64]] = []
    for r in results:
        rule = f',rule="{_quoted(r.rule)}"'
        by_rule = [(gateway.get(g) or f'gateway="{_quoted(g)}"') + rule for g in r.gateways]
        active_labels += by_rule
        active_values.append(r.active.astype(np.float64))
        if r.evidence_ratio is not None:
            ratio_labels += by_rule
            ratio_values.append(np.asarray(r.evidence_ratio, dtype=np.float64))
    series_families = []
    if series is not None and series.gateways:
        # Dimension names are Prometheus label names, none of them "gateway" or "rule" (the
        # config checks both).
        labels = [
            _label_text({"gateway": g, **values})
            for g, values in zip(series.gateways, series.labels, strict=True)
        ]
        by_rule = [
            _label_text({"gateway": g, **values, "rule": "sla_breach"})
            for g, values in zip(series.gateways, series.labels, strict=True)
        ]
        active_labels += by_rule
        active_values.append(series.active.astype(np.float64))
        ratio_labels += by_rule
        ratio_values.append(np.asarray(series.evidence_ratio, dtype=np.float64))
        series_families = _window_families(
            "series", labels, series.payments, series.failures, series.declines, series.high
        )
    return "".join(
        [
            *_window_families(
                "gateway", named, health.payments, health.failures, health.declines, health.high
            ),
            _family("detector_gateway_status", status, current.ravel()),
            _family("detector_rule_active", active_labels, np.concatenate([[], *active_values])),
            _family("detector_evidence_ratio", ratio_labels, np.concatenate([[], *ratio_values])),
            *series_families,
        ]
    )
