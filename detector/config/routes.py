"""Who is told and when: the route tree (``route:``), ``inhibit_rules:``,
``maintenance_windows:``, ``alerting:``, and the label matchers they share.

Matchers are parsed and validated here; :mod:`detector.alerting.matchers` evaluates them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from detector.config.base import Duration, FrozenModel, TimeZone, positive

__all__ = [
    "DEFAULT_INHIBIT_RULES",
    "GROUP_BY_ALL",
    "AlertingConfig",
    "InhibitRule",
    "LabelMatcher",
    "MaintenanceWindow",
    "Matchers",
    "Regex",
    "Route",
    "check_regex",
]


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


_MATCHER = re.compile(r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*""", re.DOTALL)


class LabelMatcher(FrozenModel):
    """One Alertmanager-style matcher: ``gateway!="sandbox"``, ``rule=~"outage|sla_breach"``.

    ``=`` equal, ``!=`` not equal, ``=~`` the regex matches the whole value, ``!~`` it does
    not. A label the alert lacks is the empty string, so ``team!=""`` means "has a team".

    >>> str(LabelMatcher.model_validate("gateway != 'stripe'"))
    'gateway!="stripe"'
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

    def __str__(self) -> str:
        return f"{self.name}{self.operator}{json.dumps(self.value)}"


class Matchers(FrozenModel):
    """``match`` (label equals value), ``match_re`` (label fully matches a regex) and
    ``matchers`` (Alertmanager-style strings, which can also say "not"); all must hold."""

    match: dict[str, str] = {}
    match_re: dict[str, Regex] = {}
    matchers: tuple[LabelMatcher, ...] = ()


# Group by every label: one group per alert.
GROUP_BY_ALL = "..."

# A reminder interval of zero would send a reminder on every tick.
RepeatInterval = Annotated[Duration, positive("the repeat interval must be positive, e.g. 4h")]


class Route(Matchers):
    """A node of the route tree; unset settings are inherited from the parent route."""

    receivers: tuple[str, ...] | None = None
    group_by: tuple[str, ...] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: RepeatInterval | None = None
    # Keep looking at later sibling routes after this one matched.
    continue_: bool = Field(default=False, alias="continue")
    routes: tuple[Route, ...] = ()


class InhibitRule(FrozenModel):
    """While an alert matching ``source_*`` fires, alerts matching ``target_*`` are muted
    if they have the same value (or both lack) each label in ``equal``."""

    source_match: dict[str, str] = {}
    source_match_re: dict[str, Regex] = {}
    source_matchers: tuple[LabelMatcher, ...] = ()
    target_match: dict[str, str] = {}
    target_match_re: dict[str, Regex] = {}
    target_matchers: tuple[LabelMatcher, ...] = ()
    equal: tuple[str, ...] = ()


DEFAULT_INHIBIT_RULES = (
    # An outage explains the same gateway's SLA breaches and silence.
    InhibitRule(
        source_match={"rule": "outage"},
        target_match_re={"rule": "sla_breach|latency_breach|no_data"},
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
        target_match_re={
            "rule": "outage|sla_breach|latency_breach|no_data|volume_drop|decline_rate"
        },
    ),
)

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_weekdays(value: Any) -> tuple[int, ...]:
    """``[mon, wed]``, ``mon-fri`` or ``[sat, sun]`` -> weekday numbers (Monday is 0)."""
    items = [value] if isinstance(value, str) else list(value)
    days: set[int] = set()
    for item in items:
        first, _, last = str(item).strip().lower().partition("-")
        for name in (first, last or first):
            if name[:3] not in _WEEKDAYS:
                raise ValueError(f"{item!r}: weekdays are mon, tue, wed, thu, fri, sat, sun")
        a, b = _WEEKDAYS.index(first[:3]), _WEEKDAYS.index((last or first)[:3])
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


_DAY = r"([Mm]on|[Tt]ue|[Ww]ed|[Tt]hu|[Ff]ri|[Ss]at|[Ss]un)[a-z]*"
_DAYS = rf"^\s*{_DAY}(\s*-\s*{_DAY})?\s*$"
_WEEKDAYS_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": _DAYS},
        {"type": "array", "items": {"type": "string", "pattern": _DAYS}},
    ],
    "description": "weekdays: mon-fri, or a list such as [sat, sun]",
}
_CLOCK_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": r"^\d{1,2}:\d{2}(:\d{2})?$"},
        {"type": "integer", "minimum": 0, "maximum": 1439},
    ],
    "description": 'a time of day, quoted: "02:30" (unquoted YAML reads it as minutes)',
}


class MaintenanceWindow(Matchers):
    """Recurring quiet hours: alerts matching it notify nobody while it is open.

    ``start``-``end`` in the local time of ``timezone`` on each of ``weekdays``; an ``end``
    at or before ``start`` runs past midnight into the next day.
    """

    name: str = ""
    weekdays: Annotated[
        tuple[int, ...], BeforeValidator(_parse_weekdays), WithJsonSchema(_WEEKDAYS_SCHEMA)
    ] = tuple(range(7))
    start: Annotated[time, BeforeValidator(_parse_clock), WithJsonSchema(_CLOCK_SCHEMA)]
    end: Annotated[time, BeforeValidator(_parse_clock), WithJsonSchema(_CLOCK_SCHEMA)]
    timezone: TimeZone = "UTC"

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


class AlertingConfig(FrozenModel):
    repeat_interval: RepeatInterval = timedelta(hours=4)
