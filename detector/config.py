"""alerts.yaml -> typed, validated, frozen configuration (the only YAML reader).

Secrets come from the environment: any string value may hold ``${VAR}`` or
``${VAR:-default}``. Every problem is reported with the key path that holds it, e.g.
``receivers.ops-slack.url: environment variable SLACK_WEBHOOK_URL is not set``.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from detector.errors import DetectorError

__all__ = [
    "GROUP_BY_ALL",
    "TEMPLATE_FIELDS",
    "AlertmanagerReceiver",
    "Config",
    "ConfigError",
    "ConsoleReceiver",
    "EmailReceiver",
    "InhibitRule",
    "LabelMatcher",
    "MaintenanceWindow",
    "Matchers",
    "PagerDutyReceiver",
    "ReceiverConfig",
    "ResolvedRoute",
    "Route",
    "SlackReceiver",
    "Templates",
    "WebhookReceiver",
    "all_match",
    "check_regex",
    "labels_match",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_false_alerts",
]

DEFAULT_CONFIG_PATH = "alerts.yaml"


class ConfigError(DetectorError):
    """alerts.yaml is unreadable or invalid; ``problems`` lists ``(key path, message)``."""

    def __init__(self, problems: list[tuple[str, str]], source: str = DEFAULT_CONFIG_PATH):
        self.problems = problems
        self.source = source
        lines = [f"{source}: {len(problems)} problem(s)"]
        lines += [f"  {path or '<top level>'}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


# --- value types ---------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """Parse ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1w"`` or a number of seconds.

    >>> parse_duration("5m")
    datetime.timedelta(seconds=300)
    >>> parse_duration(90)
    datetime.timedelta(seconds=90)
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 2h or 1d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 5m, 2h or 1d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


def _check_identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"{value!r} is not a plain SQL identifier (letters, digits and underscores, "
            "not starting with a digit)"
        )
    return value


Identifier = Annotated[str, BeforeValidator(lambda v: _check_identifier(str(v)))]

# Labels every alert may carry already; a dimension cannot take one of these names.
RESERVED_LABELS = frozenset({"rule", "gateway", "severity", "alertname"})
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_table_name(value: Any) -> str:
    parts = str(value).split(".")
    if len(parts) > 2:
        raise ValueError(f"{value!r}: write the table as 'table' or 'schema.table'")
    for part in parts:
        _check_identifier(part)
    return str(value)


TableName = Annotated[str, BeforeValidator(_check_table_name)]
Probability = Annotated[float, Field(gt=0, lt=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# --- source ------------------------------------------------------------------------------


class Columns(_Frozen):
    """Names of the payments table's columns."""

    id: Identifier = "id"
    timestamp: Identifier = "created_at"
    gateway: Identifier = "gateway"
    status: Identifier = "status"
    error_code: Identifier | None = "error_code"
    # Label name -> column, e.g. {method: payment_method, country: country}: an alert says
    # which combination of them holds most of the excess failures.
    dimensions: dict[Identifier, Identifier] = {}

    @field_validator("dimensions")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for label in value:
            if label in RESERVED_LABELS:
                raise ValueError(
                    f"{label!r} is a label the detector sets itself; name the dimension "
                    "otherwise (e.g. payment_method)"
                )
            if not _LABEL.match(label):
                raise ValueError(f"{label!r}: a dimension's name must be a Prometheus label name")
        return value


class Statuses(_Frozen):
    """Which status values are final failures, final successes, or not final yet."""

    failed: tuple[str, ...] = ("failed",)
    succeeded: tuple[str, ...] = ("succeeded",)
    pending: tuple[str, ...] = ("pending",)

    @model_validator(mode="after")
    def _disjoint(self) -> Statuses:
        seen: dict[str, str] = {}
        for kind in ("failed", "succeeded", "pending"):
            for status in getattr(self, kind):
                if status in seen:
                    raise ValueError(
                        f"status {status!r} is listed as both {seen[status]} and {kind}"
                    )
                seen[status] = kind
        if not self.failed or not self.succeeded:
            raise ValueError("list at least one failed and one succeeded status")
        return self


class SourceConfig(_Frozen):
    url: str = "sqlite:///payments.db"
    table: TableName = "payments"
    columns: Columns = Columns()
    statuses: Statuses = Statuses()
    # Rows can be committed a little after their timestamp; each tick re-reads this much.
    late_arrival: Duration = timedelta(minutes=5)
    # How much history a fresh start reads to fill its windows.
    warmup: Duration = timedelta(hours=3)


class StateConfig(_Frozen):
    url: str = "sqlite:///detector-state.db"


class ScheduleConfig(_Frozen):
    interval: Duration = timedelta(minutes=1)
    # Consecutive failed ticks before the single "source down" alert fires.
    source_down_after: int = Field(default=3, ge=1)
    # On SIGTERM, how long the last delivery passes may take before the process exits.
    shutdown_grace: Duration = timedelta(seconds=10)

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("the interval must be positive")
        return value


# --- detection -----------------------------------------------------------------------------


class _Rule(_Frozen):
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


FalseAlertRate = Annotated[float, BeforeValidator(parse_false_alerts)]


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


PostChangeRate = Annotated[str | float, BeforeValidator(_check_post_change_rate)]


class SlaBreachRule(_Rule):
    """Bank of binomial CUSUMs against the SLA; thresholds come from ``false_alerts``."""

    # The CUSUM has already weighed the evidence: waiting longer only adds delay.
    for_: Duration = Field(default=timedelta(0), alias="for")
    # Past a breach the statistic hovers near its threshold for a while; this bridges that.
    keep_firing_for: Duration = timedelta(minutes=15)
    # Failure rates the bank is tuned to detect fastest: multiples of the SLA or absolute.
    rates: tuple[PostChangeRate, ...] = Field(default=("2x", 0.15, 0.5), min_length=1)
    # How far back the CUSUMs look; the slowest useful detection must fit in it.
    history: Duration = timedelta(hours=6)
    # Resolved messages and ``detector check`` show the failure rate over this recent window
    # (a firing message shows it since the estimated start of the breach).
    window: Duration = timedelta(minutes=30)
    # An estimated failure rate at this multiple of the SLA makes the alert critical.
    critical_factor: float = Field(default=5.0, gt=1)
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

    @field_validator("history")
    @classmethod
    def _at_least_an_hour(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1):
            raise ValueError("the history must be at least 1h (thresholds are set hourly)")
        return value

    def post_change_rates(self, sla: float) -> list[float]:
        """The bank's rates for a gateway with this SLA (those not above it are dropped)."""
        rates = [sla * float(r[:-1]) if isinstance(r, str) else r for r in self.rates]
        return [min(r, 0.999) for r in rates if r > sla]


class OutageRule(_Rule):
    """Near-total failure in the most recent minutes; fires on the first tick that sees it."""

    window: Duration = timedelta(minutes=5)
    min_payments: int = Field(default=5, ge=1)
    failure_rate: Probability = 0.9
    keep_firing_for: Duration = timedelta(minutes=2)


class NoDataRule(_Rule):
    """A gateway went silent: no payment where its usual traffic for this time of the week
    (in the first week: its recent rate) makes that very unlikely.

    Its per-tick significance is its share of ``detection.false_alerts``.
    """

    silence: Duration = timedelta(minutes=15)
    history: Duration = timedelta(hours=2)
    keep_firing_for: Duration = timedelta(0)


class VolumeDropRule(_Rule):
    """Payments far below the seasonal expectation for this time of week (in the first week:
    far below the traffic just before the window)."""

    window: Duration = timedelta(minutes=15)
    # Only a drop below this share of the expectation counts, however significant.
    below: Probability = 0.5
    # In the first week the window is compared with the traffic of this long before it.
    history: Duration = timedelta(hours=2)


class DetectionConfig(_Frozen):
    sla: Probability = 0.02
    # False alerts tolerated per gateway, all rules together; every threshold derives from it.
    false_alerts: FalseAlertRate = Field(default=1 / (90 * 24 * 60), gt=0)
    sla_breach: SlaBreachRule = SlaBreachRule()
    outage: OutageRule = OutageRule()
    no_data: NoDataRule = NoDataRule()
    volume_drop: VolumeDropRule = VolumeDropRule()


class GatewayConfig(_Frozen):
    sla: Probability | None = None
    backup: str | None = None
    links: tuple[str, ...] = ()


class AlertingConfig(_Frozen):
    repeat_interval: Duration = timedelta(hours=4)


# --- service: HTTP endpoint and high availability -------------------------------------------


class ServerConfig(_Frozen):
    """The HTTP endpoint: /healthz, /metrics, /api/v1/gateways and the status page."""

    enabled: bool = True
    listen: str = "127.0.0.1:8080"
    # /healthz turns 503 once the last successful tick is this many intervals old.
    unhealthy_after: float = Field(default=3, gt=1)
    # Where people reach the status page (behind a proxy, say); every message links to the
    # gateway's row there.
    external_url: HttpUrl | None = None

    def status_link(self, gateway: str | None) -> str | None:
        """``https://detector.example.com/#gw-stripe``, or None without ``external_url``."""
        if self.external_url is None:
            return None
        base = str(self.external_url).rstrip("/") + "/"
        return base + (f"#gw-{quote(gateway)}" if gateway else "")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r}: write HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
        return value

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class HaConfig(_Frozen):
    """The leader lease that lets exactly one replica evaluate and notify."""

    # A dead leader is replaced within this long; the leader renews every third of it.
    lease_ttl: Duration = timedelta(seconds=30)
    # Identifies this replica in the lease row; default hostname:pid.
    replica_id: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("lease_ttl")
    @classmethod
    def _long_enough(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=2):
            raise ValueError("the lease TTL must be at least 2s")
        return value


# --- label matchers ------------------------------------------------------------------------


def check_regex(value: Any) -> str:
    """A regular expression as Alertmanager reads it: anchored at both ends.

    >>> check_regex("stripe|adyen")
    'stripe|adyen'
    """
    text = str(value)
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"{text!r} is not a valid regular expression ({exc})") from exc
    return text


Regex = Annotated[str, BeforeValidator(check_regex)]


def labels_match(
    labels: Mapping[str, str], match: Mapping[str, str], match_re: Mapping[str, str]
) -> bool:
    """Every ``match`` label equal and every ``match_re`` label fully matching its regex.

    A label the alert does not have counts as the empty string, as in Alertmanager.

    >>> labels_match({"gateway": "stripe"}, {}, {"gateway": "stripe|adyen"})
    True
    >>> labels_match({"gateway": "stripe-eu"}, {}, {"gateway": "stripe|adyen"})
    False
    """
    return all(labels.get(key, "") == value for key, value in match.items()) and all(
        re.fullmatch(pattern, labels.get(key, "")) is not None for key, pattern in match_re.items()
    )


_MATCHER = re.compile(r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*""", re.DOTALL)


class LabelMatcher(_Frozen):
    """One Alertmanager-style matcher: ``gateway!="sandbox"``, ``rule=~"outage|sla_breach"``.

    ``=`` equal, ``!=`` not equal, ``=~`` the regex matches the whole value, ``!~`` it does
    not. A label the alert lacks is the empty string, so ``team!=""`` means "has a team".

    >>> LabelMatcher.model_validate('gateway!~"test-.*"').matches({"gateway": "stripe"})
    True
    >>> LabelMatcher.model_validate("gateway != stripe").matches({"gateway": "stripe"})
    False
    """

    name: str
    operator: Literal["=", "!=", "=~", "!~"]
    value: str

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        found = _MATCHER.fullmatch(data)
        if found is None:
            raise ValueError(
                f"{data!r} is not a matcher; write label=value, label!=value, "
                'label=~regex or label!~regex, e.g. gateway!="sandbox"'
            )
        name, operator, value = found.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if "~" in operator:
            check_regex(value)
        return {"name": name, "operator": operator, "value": value}

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.operator in ("=", "!="):
            return (actual == self.value) == (self.operator == "=")
        return (re.fullmatch(self.value, actual) is not None) == (self.operator == "=~")

    def __str__(self) -> str:
        return f"{self.name}{self.operator}{json.dumps(self.value)}"


def all_match(labels: Mapping[str, str], matchers: tuple[LabelMatcher, ...]) -> bool:
    return all(matcher.matches(labels) for matcher in matchers)


class Matchers(_Frozen):
    """``match`` (label equals value), ``match_re`` (label fully matches a regex) and
    ``matchers`` (Alertmanager-style strings, which can also say "not"); all must hold."""

    match: dict[str, str] = {}
    match_re: dict[str, Regex] = {}
    matchers: tuple[LabelMatcher, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels_match(labels, self.match, self.match_re) and all_match(labels, self.matchers)


# --- receivers -----------------------------------------------------------------------------


def _check_http(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("the url must start with http:// or https://")
    return value


HttpUrl = Annotated[str, BeforeValidator(lambda v: _check_http(str(v)))]


# What a message template may use: $title and $text are the standard wording.
TEMPLATE_FIELDS = (
    "title",
    "text",
    "summary",
    "event",
    "rule",
    "gateway",
    "severity",
    "at",
    "since",
    "failure_rate",
    "counts",
    "backup_gateway",
    "links",
    "labels",
    "fingerprint",
    "attribution",
)


def _check_template(value: Any) -> str:
    text = str(value)
    try:
        string.Template(text).substitute(dict.fromkeys(TEMPLATE_FIELDS, ""))
    except KeyError as exc:
        fields = ", ".join(f"${name}" for name in TEMPLATE_FIELDS)
        raise ValueError(f"unknown field ${exc.args[0]}; the fields are {fields}") from None
    except ValueError:
        raise ValueError(
            "a $ must start a field such as $gateway or ${gateway}; write $$ for a dollar sign"
        ) from None
    return text


MessageTemplate = Annotated[str, BeforeValidator(_check_template)]


class Templates(_Frozen):
    """Overrides of a receiver's wording (Python string.Template: ``$gateway``, ``${rule}``)."""

    title: MessageTemplate | None = None  # subject, header, PagerDuty summary
    text: MessageTemplate | None = None  # the body


class _Receiver(_Frozen):
    send_resolved: bool = True
    timeout: Duration = timedelta(seconds=10)
    templates: Templates = Templates()


class ConsoleReceiver(_Receiver):
    type: Literal["console"]


class WebhookReceiver(_Receiver):
    type: Literal["webhook"]
    url: HttpUrl
    headers: dict[str, SecretStr] = {}
    # "detector": our versioned document per alert; "alertmanager": Alertmanager's webhook
    # format (version 4), one document per group, for receivers written for Alertmanager.
    format: Literal["detector", "alertmanager"] = "detector"
    # HMAC-SHA256 key for the X-Detector-Signature header (README: verifying a webhook).
    signing_secret: SecretStr | None = None


class SlackReceiver(_Receiver):
    type: Literal["slack"]
    url: SecretStr
    channel: str | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("the Slack incoming-webhook url must start with https://")
        return value


class EmailReceiver(_Receiver):
    type: Literal["email"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from")
    to: tuple[str, ...] = Field(min_length=1)


class PagerDutyReceiver(_Receiver):
    """PagerDuty Events API v2: one event per alert, deduplicated by the alert's fingerprint."""

    type: Literal["pagerduty"]
    routing_key: SecretStr
    url: HttpUrl = "https://events.pagerduty.com/v2/enqueue"
    source: str = "payment-failure-detector"


class AlertmanagerReceiver(_Receiver):
    """Posts to Prometheus Alertmanager's ``/api/v2/alerts``, which groups and routes itself."""

    type: Literal["alertmanager"]
    url: HttpUrl  # Alertmanager's base URL, e.g. http://alertmanager:9093
    # Alertmanager resolves an alert nobody re-posts by its endsAt; firing alerts are
    # re-posted this often with endsAt four intervals ahead, as Prometheus does.
    resend_interval: Duration = timedelta(minutes=1)
    generator_url: str | None = None

    @field_validator("resend_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("the resend interval must be positive")
        return value


ReceiverConfig = Annotated[
    ConsoleReceiver
    | WebhookReceiver
    | SlackReceiver
    | EmailReceiver
    | PagerDutyReceiver
    | AlertmanagerReceiver,
    Field(discriminator="type"),
]
RECEIVER_TYPES = ("console", "webhook", "slack", "email", "pagerduty", "alertmanager")


# --- routes, inhibition, maintenance windows -----------------------------------------------

# Group by every label: one group per alert.
GROUP_BY_ALL = "..."


class Route(Matchers):
    """A node of the route tree; unset settings are inherited from the parent route."""

    receivers: tuple[str, ...] | None = None
    group_by: tuple[str, ...] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    # Keep looking at later sibling routes after this one matched.
    continue_: bool = Field(default=False, alias="continue")
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class ResolvedRoute:
    """A matched route with every setting filled in from its ancestors."""

    id: str  # its key path in alerts.yaml, e.g. ``route.routes[0]``
    receivers: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta


class InhibitRule(_Frozen):
    """While an alert matching ``source_*`` fires, alerts matching ``target_*`` are muted
    if they have the same value (or both lack) each label in ``equal``."""

    source_match: dict[str, str] = {}
    source_match_re: dict[str, Regex] = {}
    source_matchers: tuple[LabelMatcher, ...] = ()
    target_match: dict[str, str] = {}
    target_match_re: dict[str, Regex] = {}
    target_matchers: tuple[LabelMatcher, ...] = ()
    equal: tuple[str, ...] = ()

    def is_source(self, labels: Mapping[str, str]) -> bool:
        return labels_match(labels, self.source_match, self.source_match_re) and all_match(
            labels, self.source_matchers
        )

    def is_target(self, labels: Mapping[str, str]) -> bool:
        return labels_match(labels, self.target_match, self.target_match_re) and all_match(
            labels, self.target_matchers
        )


DEFAULT_INHIBIT_RULES = (
    # An outage explains the same gateway's SLA breach and silence.
    InhibitRule(
        source_match={"rule": "outage"},
        target_match_re={"rule": "sla_breach|no_data"},
        equal=("gateway",),
    ),
    # A silent gateway's volume has dropped too: one alert says it.
    InhibitRule(
        source_match={"rule": "no_data"},
        target_match={"rule": "volume_drop"},
        equal=("gateway",),
    ),
    # Without data nothing can be said about any gateway.
    InhibitRule(
        source_match={"rule": "source_down"},
        target_match_re={"rule": "outage|sla_breach|no_data|volume_drop"},
    ),
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_weekdays(value: Any) -> tuple[int, ...]:
    """``[mon, wed]``, ``mon-fri`` or ``[sat, sun]`` -> weekday numbers (Monday is 0)."""
    items = [value] if isinstance(value, str) else list(value)
    days: set[int] = set()
    for item in items:
        first, _, last = str(item).strip().lower().partition("-")
        for name in (first, last or first):
            if name[:3] not in WEEKDAYS:
                raise ValueError(f"{item!r}: weekdays are mon, tue, wed, thu, fri, sat, sun")
        a, b = WEEKDAYS.index(first[:3]), WEEKDAYS.index((last or first)[:3])
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return tuple(sorted(days))


def _parse_clock(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 02:30 as the base-60 number 150: minutes after midnight.
        return time(value // 60, value % 60)
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f'{value!r} is not a time of day; write it quoted, e.g. "02:30"') from None


def _check_zone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not an IANA time zone such as Europe/Berlin or UTC"
        ) from None
    return str(value)


class MaintenanceWindow(Matchers):
    """Recurring quiet hours: alerts matching it notify nobody while it is open.

    ``start``-``end`` in the local time of ``timezone`` on each of ``weekdays``; an ``end``
    at or before ``start`` runs past midnight into the next day.
    """

    name: str = ""
    weekdays: Annotated[tuple[int, ...], BeforeValidator(_parse_weekdays)] = tuple(range(7))
    start: Annotated[time, BeforeValidator(_parse_clock)]
    end: Annotated[time, BeforeValidator(_parse_clock)]
    timezone: Annotated[str, BeforeValidator(_check_zone)] = "UTC"

    def is_open(self, now: datetime) -> bool:
        """
        >>> from datetime import UTC
        >>> w = MaintenanceWindow(weekdays="sun", start="23:00", end="01:00", timezone="UTC")
        >>> times = [(22, 23), (23, 0), (23, 1)]  # Sunday 23:00, Monday 00:00 and 01:00
        >>> [w.is_open(datetime(2026, 11, d, h, tzinfo=UTC)) for d, h in times]
        [True, True, False]
        """
        local = now.astimezone(ZoneInfo(self.timezone))
        clock, day = local.time().replace(tzinfo=None), local.weekday()
        if self.start < self.end:
            return day in self.weekdays and self.start <= clock < self.end
        # Past midnight: the evening belongs to its own day, the morning to the day before.
        return (day in self.weekdays and clock >= self.start) or (
            (day - 1) % 7 in self.weekdays and clock < self.end
        )


class Config(_Frozen):
    source: SourceConfig = SourceConfig()
    state: StateConfig = StateConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    detection: DetectionConfig = DetectionConfig()
    gateways: dict[str, GatewayConfig] = {}
    alerting: AlertingConfig = AlertingConfig()
    server: ServerConfig = ServerConfig()
    ha: HaConfig = HaConfig()
    receivers: dict[str, ReceiverConfig] = {"console": ConsoleReceiver(type="console")}
    route: Route = Route(receivers=("console",))
    inhibit_rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()

    @model_validator(mode="after")
    def _routes_name_receivers(self) -> Config:
        def check(route: Route, path: str) -> None:
            for name in route.receivers or ():
                if name not in self.receivers:
                    known = ", ".join(sorted(self.receivers)) or "none"
                    raise ValueError(
                        f"{path}.receivers: unknown receiver {name!r} (defined: {known})"
                    )
            for index, child in enumerate(route.routes):
                check(child, f"{path}.routes[{index}]")

        if self.route.receivers is None:
            raise ValueError(
                "route.receivers: the root route needs receivers: (for alerts that no "
                "other route takes; [] to drop them)"
            )
        check(self.route, "route")
        dimensions = self.source.columns.dimensions
        for index, grouping in enumerate(self.detection.sla_breach.series):
            for label in grouping:
                if label not in dimensions:
                    known = ", ".join(sorted(dimensions)) or "none"
                    raise ValueError(
                        f"detection.sla_breach.series[{index}]: {label!r} is not one of "
                        f"source.columns.dimensions (defined: {known})"
                    )
        for name, gateway in self.gateways.items():
            if gateway.backup == name:
                raise ValueError(f"gateways.{name}.backup: a gateway cannot be its own backup")
        return self

    def sla_for(self, gateway: str) -> float:
        override = self.gateways.get(gateway)
        return override.sla if override and override.sla is not None else self.detection.sla

    def routes_for(self, labels: Mapping[str, str]) -> list[ResolvedRoute]:
        """The routes an alert with these labels takes, deepest match first, in tree order.

        A route matches when its matchers do; then its children are tried in order, the first
        matching child wins unless it says ``continue: true``; a route none of whose children
        match is itself the destination. The root route matches every alert.
        """
        root = ResolvedRoute(
            "route",
            self.route.receivers or (),
            self.route.group_by if self.route.group_by is not None else ("rule",),
            _or(self.route.group_wait, timedelta(0)),
            _or(self.route.group_interval, timedelta(minutes=1)),
            _or(self.route.repeat_interval, self.alerting.repeat_interval),
        )
        return _walk(self.route, root, labels)

    def receivers_for(self, labels: Mapping[str, str]) -> list[str]:
        """Receiver names for an alert with these labels, in route order, without repeats."""
        chosen: list[str] = []
        for route in self.routes_for(labels):
            chosen += [name for name in route.receivers if name not in chosen]
        return chosen


def _or(value: timedelta | None, default: timedelta) -> timedelta:
    return default if value is None else value


def _walk(route: Route, resolved: ResolvedRoute, labels: Mapping[str, str]) -> list[ResolvedRoute]:
    found: list[ResolvedRoute] = []
    for index, child in enumerate(route.routes):
        if not child.matches(labels):
            continue
        inherited = ResolvedRoute(
            f"{resolved.id}.routes[{index}]",
            child.receivers if child.receivers is not None else resolved.receivers,
            child.group_by if child.group_by is not None else resolved.group_by,
            _or(child.group_wait, resolved.group_wait),
            _or(child.group_interval, resolved.group_interval),
            _or(child.repeat_interval, resolved.repeat_interval),
        )
        found += _walk(child, inherited, labels)
        if not child.continue_:
            break
    return found or [resolved]


# --- loading -------------------------------------------------------------------------------

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(
    node: Any, path: str, env: Mapping[str, str], problems: list[tuple[str, str]]
) -> Any:
    """Replace ``${VAR}`` in every string, recording unset variables with their key path."""
    if isinstance(node, dict):
        return {
            key: _interpolate(value, f"{path}.{key}" if path else str(key), env, problems)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(item, f"{path}[{i}]", env, problems) for i, item in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append((path, f"environment variable {name} is not set"))
        return ""

    return _ENV_REF.sub(substitute, node)


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in RECEIVER_TYPES and path.startswith("receivers."):
            continue  # pydantic's discriminator tag, not a key the user wrote
        else:
            path += f".{part}" if path else str(part)
    return path


def _explain(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key; check its spelling against the README's alerts.yaml reference"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        kind = error["input"].get("type")
        return f"unknown receiver type {kind!r}; use {', '.join(RECEIVER_TYPES)}"
    if kind == "union_tag_not_found":
        return f"say which receiver this is with type: {', '.join(RECEIVER_TYPES)}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def parse_config(
    data: Any, env: Mapping[str, str] | None = None, source: str = DEFAULT_CONFIG_PATH
) -> Config:
    """Validate already-parsed YAML. Raises :class:`ConfigError` listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [("", "the file must hold a mapping of keys such as source:, receivers:")], source
        )
    problems: list[tuple[str, str]] = []
    data = _interpolate(data, "", os.environ if env is None else env, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        unset = {path for path, _ in problems}
        for error in exc.errors():
            message = _explain(error)
            path = _key_path(error["loc"])
            if path in unset:
                continue  # already reported as an unset environment variable
            if ": " in message and message.split(": ", 1)[0].startswith(
                ("route", "gateways.", "detection.")
            ):
                path, message = message.split(": ", 1)
            problems.append((path, message))
    if problems:
        raise ConfigError(problems, source)
    return config


def load_config(
    path: str | Path = DEFAULT_CONFIG_PATH, env: Mapping[str, str] | None = None
) -> Config:
    """Read and validate an alerts.yaml file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read the file: {exc.strerror}")], str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(
            [("", f"{where}not valid YAML ({getattr(exc, 'problem', exc)})")], str(path)
        ) from exc
    return parse_config(data, env, str(path))
