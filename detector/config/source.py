"""Where the payments are and how to read them, where the detector keeps its state, and
how often it ticks: the ``source:``, ``state:`` and ``schedule:`` sections."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from detector.config.base import Duration, FrozenModel, at_most, positive
from detector.config.routes import check_regex

__all__ = [
    "RESERVED_LABELS",
    "Columns",
    "DatabaseUrl",
    "Declines",
    "Identifier",
    "ScheduleConfig",
    "SourceConfig",
    "StateConfig",
    "Statuses",
    "TableName",
    "trace_link",
]

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


class Columns(FrozenModel):
    """Names of the payments table's columns."""

    id: Identifier = "id"
    timestamp: Identifier = "created_at"
    gateway: Identifier = "gateway"
    status: Identifier = "status"
    error_code: Identifier | None = "error_code"
    # How long each payment took, in milliseconds (NULL where unknown, e.g. pending): set,
    # it enables detection.latency.
    latency_ms: Identifier | None = None
    # Label name -> column, e.g. {method: payment_method, country: country}: an alert says
    # which combination of them holds most of the excess failures.
    dimensions: dict[Identifier, Identifier] = {}
    # A numeric column with each payment's amount: firing alerts then say how much money
    # failed above the SLA (or fell short of the expected volume), per currency.
    amount: Identifier | None = None
    currency: Identifier | None = None  # the amount's currency code; none: one currency
    # When each row was written, and last changed (a pending payment settling): set, they
    # let `detector backtest --as-visible` replay what the table showed at each tick.
    inserted_at: Identifier | None = None
    updated_at: Identifier | None = None

    @model_validator(mode="after")
    def _currency_needs_amount(self) -> Columns:
        if self.currency is not None and self.amount is None:
            raise ValueError("currency: a currency column needs the amount column; set amount")
        return self

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


class Statuses(FrozenModel):
    """Which status values are final failures, final successes, final declines (the payer's
    or issuer's refusal, not the gateway's fault), or not final yet."""

    failed: tuple[str, ...] = ("failed",)
    succeeded: tuple[str, ...] = ("succeeded",)
    pending: tuple[str, ...] = ("pending",)
    declined: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _disjoint(self) -> Statuses:
        seen: dict[str, str] = {}
        for kind in ("failed", "succeeded", "pending", "declined"):
            for status in getattr(self, kind):
                if status in seen:
                    raise ValueError(
                        f"status {status!r} is listed as both {seen[status]} and {kind}"
                    )
                seen[status] = kind
        if not self.failed or not self.succeeded:
            raise ValueError("list at least one failed and one succeeded status")
        return self


class Declines(FrozenModel):
    """Failed payments that are not the gateway's fault, told apart by their error code:
    they count as final payments, never as failures against the SLA."""

    error_codes: tuple[str, ...] = ()  # exact values of columns.error_code
    # Matched anywhere in the code (anchor it with ^...$); the database evaluates it.
    error_code_match: Annotated[str, BeforeValidator(check_regex)] | None = None

    @property
    def configured(self) -> bool:
        return bool(self.error_codes) or self.error_code_match is not None


# What a trace URL template must hold: where each sample payment id goes.
TRACE_ID = "${payment_id}"


def _check_trace_url(value: Any) -> str:
    url = str(value)
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r}: the log search must be an http:// or https:// URL")
    if TRACE_ID not in url:
        raise ValueError(f"{url!r}: put {TRACE_ID} where the payment id goes in the URL")
    return url


def trace_link(template: str | None, payment_id: str) -> str | None:
    """The log search for one payment: its id URL-encoded into ``source.trace_url``.

    >>> trace_link("https://logs.example.com/search?q=${payment_id}", "pay 1&x")
    'https://logs.example.com/search?q=pay%201%26x'
    >>> trace_link(None, "pay_1") is None
    True
    """
    if template is None:
        return None
    return template.replace(TRACE_ID, quote(payment_id, safe=""))


def _database_url(value: Any) -> str:
    # Imported here: reading the configuration loads the database layer only when a URL
    # is given, so the detection code stays free of it.
    from detector.db import check_url

    check_url(str(value))
    return str(value)


def _state_url(value: Any) -> str:
    from detector.db import check_url

    check_url(str(value), state=True)
    return str(value)


DatabaseUrl = Annotated[str, AfterValidator(_database_url)]
# The detector's own tables: any database URL but DuckDB's.
StateUrl = Annotated[str, AfterValidator(_state_url)]


class SourceConfig(FrozenModel):
    url: DatabaseUrl = "sqlite:///payments.db"
    table: TableName = "payments"
    columns: Columns = Columns()
    statuses: Statuses = Statuses()
    declines: Declines = Declines()
    # Rows can be committed a little after their timestamp; each tick re-reads at least
    # this much, and as much as rows are seen to arrive late, up to max_late_arrival.
    late_arrival: Duration = timedelta(minutes=5)
    # The furthest back a tick re-reads for late rows; equal to late_arrival, the re-read
    # stays late_arrival and every minute is judged as it stands.
    max_late_arrival: Duration = timedelta(minutes=60)
    # A log search for one payment, e.g. "https://logs.example.com/search?q=${payment_id}":
    # each sample failed payment id in a message links to it.
    trace_url: Annotated[str, BeforeValidator(_check_trace_url)] | None = None
    # How much history a fresh start reads to fill its windows.
    warmup: Duration = timedelta(hours=3)
    # Longest a payments query may run or wait for a lock before its tick counts as failed;
    # unset: half of schedule.interval, at most 30s.
    query_timeout: Annotated[Duration, positive("the query timeout must be positive")] | None = None

    @model_validator(mode="after")
    def _declines_need_codes(self) -> SourceConfig:
        if self.declines.configured and self.columns.error_code is None:
            raise ValueError(
                "source.declines: decline error codes need the error code column; "
                "set source.columns.error_code"
            )
        return self

    @model_validator(mode="after")
    def _settling_needs_pending(self) -> SourceConfig:
        if self.columns.updated_at is not None and not self.statuses.pending:
            raise ValueError(
                "source.columns.updated_at: a row not updated yet was pending; list its "
                "status under source.statuses.pending"
            )
        return self

    @field_validator("max_late_arrival")
    @classmethod
    def _not_below_late_arrival(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        floor = info.data.get("late_arrival")
        if floor is not None and value < floor:
            raise ValueError(
                f"must be at least source.late_arrival ({floor}); set it equal to "
                "late_arrival to re-read only that much"
            )
        return value


class StateConfig(FrozenModel):
    url: StateUrl = "sqlite:///detector-state.db"
    # Longest a query of the state database (outbox, alerts, lease) may take.
    query_timeout: Annotated[
        Duration,
        positive("the query timeout must be positive"),
        at_most(timedelta(hours=1), "the query timeout may be at most 1h"),
    ] = timedelta(seconds=10)


class ScheduleConfig(FrozenModel):
    # At most an hour: the rules judge the last minutes on each tick, and an outage shorter
    # than the interval could pass between two of them.
    interval: Annotated[
        Duration,
        positive("the interval must be positive"),
        at_most(timedelta(hours=1), "the interval may be at most 1h (1m is usual)"),
    ] = timedelta(minutes=1)
    # Consecutive failed ticks before the single "source down" alert fires.
    source_down_after: int = Field(default=3, ge=1)
    # On SIGTERM, how long the last delivery passes may take before the process exits.
    shutdown_grace: Duration = timedelta(seconds=10)
