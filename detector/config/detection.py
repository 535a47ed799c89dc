"""What counts as an anomaly: the ``detection:`` section (the false-alert budget and each
rule's settings) and the per-gateway overrides under ``gateways:``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator

from detector.config.base import (
    Duration,
    FrozenModel,
    Probability,
    at_least,
    at_most,
    parse_duration,
    positive,
)

__all__ = [
    "BankRule",
    "DeclineRateRule",
    "DetectionConfig",
    "GatewayConfig",
    "LatencyRule",
    "NoDataRule",
    "OutageRule",
    "SlaBreachRule",
    "VolumeDropRule",
    "parse_false_alerts",
]


# The rules count whole minutes: a window shorter than one holds nothing to judge (a
# no_data silence of 0s fires on every gateway), and every window must fit in memory.
Window = Annotated[
    Duration,
    at_least(timedelta(minutes=1), "must be at least 1m: the rules count whole minutes"),
    at_most(timedelta(days=1), "may be at most 1d"),
]
History = Annotated[
    Duration,
    at_least(timedelta(minutes=1), "must be at least 1m: the rules count whole minutes"),
    at_most(timedelta(days=7), "may be at most 7d"),
]


class _Rule(FrozenModel):
    enabled: bool = True
    # How long a condition must hold before the alert fires (pending meanwhile).
    for_: Duration = Field(default=timedelta(0), alias="for")
    # How long a firing alert stays firing after its condition clears (anti-flapping).
    keep_firing_for: Duration = timedelta(minutes=5)


_PER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s+per\s+(.+?)\s*$")


def parse_false_alerts(value: Any) -> float:
    """A budget such as ``"1 per 90d"`` as false alerts per minute.

    >>> round(parse_false_alerts("1 per 90d") * 60 * 24 * 90, 6)
    1.0
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)  # already a rate per minute, as a validated model holds it
    match = _PER.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a budget; write e.g. '1 per 90d' or '2 per 30d'")
    period = parse_duration(match.group(2))
    count = float(match.group(1))
    if count <= 0 or period <= timedelta(0):
        raise ValueError(f"{value!r}: give a positive count per a positive duration")
    return count / (period.total_seconds() / 60)


FalseAlertRate = Annotated[
    float,
    BeforeValidator(parse_false_alerts),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^\s*\d+(\.\d+)?\s+per\s+\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*$",
                },
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "description": "a false-alert budget: COUNT per DURATION such as '1 per 90d', or "
            "false alerts per minute",
        },
        mode="validation",
    ),
]


def _check_post_change_rate(value: Any) -> str | float:
    """``"2x"`` (a multiple of the gateway's SLA) or an absolute failure rate in (0, 1)."""
    text = str(value).strip()
    if text.endswith("x"):
        try:
            factor = float(text[:-1])
        except ValueError:
            factor = 0.0
        if factor <= 1:
            raise ValueError(f"{value!r}: a multiple of the SLA must be above 1, e.g. '2x'")
        return text
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"{value!r}: give a failure rate between 0 and 1 or a multiple like '2x'")
    return float(value)


PostChangeRate = Annotated[
    str | float,
    BeforeValidator(_check_post_change_rate),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?x\s*$"},
                {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            ],
            "description": "a multiple of the gateway's SLA above 1 such as '2x', or a failure "
            "rate between 0 and 1",
        },
        mode="validation",
    ),
]


class BankRule(_Rule):
    """Settings of a bank of binomial CUSUMs against a share of payments (an SLA);
    thresholds come from ``false_alerts``."""

    # The CUSUM has already weighed the evidence: waiting longer only adds delay.
    for_: Duration = Field(default=timedelta(0), alias="for")
    # Past a breach the statistic hovers near its threshold for a while; this bridges that.
    keep_firing_for: Duration = timedelta(minutes=15)
    # Failure rates the bank is tuned to detect fastest: multiples of the SLA or absolute.
    rates: tuple[PostChangeRate, ...] = Field(default=("2x", 0.15, 0.5), min_length=1)
    # How far back the CUSUMs look; the slowest useful detection must fit in it.
    history: Annotated[
        History,
        at_least(timedelta(hours=1), "the history must be at least 1h (thresholds are set hourly)"),
    ] = timedelta(hours=6)
    # Resolved messages and ``detector check`` show the failure rate over this recent window
    # (a firing message shows it since the estimated start of the breach).
    window: Window = timedelta(minutes=30)
    # An estimated failure rate at this multiple of the SLA makes the alert critical.
    critical_factor: float = Field(default=5.0, gt=1)

    def post_change_rates(self, sla: float) -> list[float]:
        """The bank's rates for a gateway with this SLA (those not above it are dropped)."""
        rates = [sla * float(r[:-1]) if isinstance(r, str) else r for r in self.rates]
        return [min(r, 0.999) for r in rates if r > sla]


class SlaBreachRule(BankRule):
    """Bank of binomial CUSUMs against the failure SLA."""

    # Also watch each gateway per value of these dimensions (names from
    # source.columns.dimensions): [[method], [country]] adds (stripe, method=card), ...
    series: tuple[tuple[str, ...], ...] = ()
    # A series is tested once it had this many final payments in the history before the hour.
    series_min_payments: int = Field(default=100, ge=1)

    @field_validator("series")
    @classmethod
    def _groupings(cls, value: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        for grouping in value:
            if not grouping or len(set(grouping)) != len(grouping):
                raise ValueError(
                    f"{list(grouping)}: list one or more distinct dimensions, e.g. [method]"
                )
        if len(set(value)) != len(value):
            raise ValueError("a series is listed twice")
        return value


class LatencyRule(BankRule):
    """``latency_breach``: more payments slower than ``threshold`` than the latency SLA
    allows, by the same bank of CUSUMs as ``sla_breach``. Active only where
    ``source.columns.latency_ms`` names the latency column."""

    # A payment slower than this is a slow payment.
    threshold: Annotated[Duration, positive("the latency threshold must be positive")] = timedelta(
        seconds=2
    )
    # The share of payments that may be slow (per gateway: gateways.<name>.latency_sla).
    sla: Probability = 0.05

    @property
    def threshold_ms(self) -> float:
        return self.threshold.total_seconds() * 1000


class OutageRule(_Rule):
    """Near-total failure in the most recent minutes; fires on the first tick that sees it."""

    window: Window = timedelta(minutes=5)
    min_payments: int = Field(default=5, ge=1)
    failure_rate: Probability = 0.9
    keep_firing_for: Duration = timedelta(minutes=2)


class NoDataRule(_Rule):
    """A gateway went silent: no payment where its usual traffic for this time of the week
    (in the first week: its recent rate) makes that very unlikely.

    Its per-tick significance is its share of ``detection.false_alerts``.
    """

    silence: Window = timedelta(minutes=15)
    history: History = timedelta(hours=2)
    keep_firing_for: Duration = timedelta(0)


class VolumeDropRule(_Rule):
    """Payments far below the seasonal expectation for this time of week (in the first week:
    far below the traffic just before the window)."""

    window: Window = timedelta(minutes=15)
    # Only a drop below this share of the expectation counts, however significant.
    below: Probability = 0.5
    # In the first week the window is compared with the traffic of this long before it.
    history: History = timedelta(hours=2)


class DeclineRateRule(_Rule):
    """The share of final payments declined (``source.declines``, ``statuses.declined``)
    far above its usual share for this time of the week: a decline wave, an issuer's or a
    fraud screen's problem rather than the gateway's. Silent where no declines are counted.

    Its per-tick significance is its share of ``detection.false_alerts``.
    """

    # The longest stretch of recent minutes tested; its half and its quarter are tested too.
    window: Annotated[
        Window, at_least(timedelta(minutes=4), "must be at least 4m (its quarter is tested)")
    ] = timedelta(hours=1)
    # Only a share above this multiple of the usual share counts, however significant ...
    above: float = Field(default=1.5, gt=1)
    # ... and at least this much above the usual share (a share of final payments).
    min_increase: float = Field(default=0.02, ge=0, lt=1)
    severity: Literal["warning", "critical"] = "warning"
    # A wave's share stays high for the window's length after it ends; this bridges its
    # noisy last minutes.
    keep_firing_for: Duration = timedelta(minutes=15)


class DetectionConfig(FrozenModel):
    sla: Probability = 0.02
    # False alerts tolerated per gateway, all rules together; every threshold derives from it.
    false_alerts: FalseAlertRate = Field(default=1 / (90 * 24 * 60), gt=0)
    sla_breach: SlaBreachRule = SlaBreachRule()
    outage: OutageRule = OutageRule()
    no_data: NoDataRule = NoDataRule()
    volume_drop: VolumeDropRule = VolumeDropRule()
    decline_rate: DeclineRateRule = DeclineRateRule()
    latency: LatencyRule = LatencyRule()

    def settings_of(self, rule: str) -> _Rule | None:
        """The settings of the rule of this name (``latency_breach``'s are ``latency``);
        None for a rule without settings (``source_down``)."""
        settings = getattr(self, "latency" if rule == "latency_breach" else rule, None)
        return settings if isinstance(settings, _Rule) else None


class GatewayConfig(FrozenModel):
    sla: Probability | None = None
    latency_sla: Probability | None = None  # overrides detection.latency.sla
    backup: str | None = None
    links: tuple[str, ...] = ()
