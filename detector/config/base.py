"""What every section of alerts.yaml builds on: the frozen model, the error, shared value types."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from detector.errors import DetectorError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ConfigError",
    "Duration",
    "FrozenModel",
    "HttpUrl",
    "Probability",
    "TimeZone",
    "at_least",
    "parse_duration",
    "positive",
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


# As the loader reads it, for the JSON Schema of alerts.yaml (``detector schema``).
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*$"
DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": DURATION_PATTERN},
        {"type": "number", "minimum": 0},
    ],
    "description": "a duration: a number and a unit (ms, s, m, h, d, w) such as 90s, 5m, 2h, "
    "1d, or a number of seconds",
}
Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), WithJsonSchema(DURATION_SCHEMA, mode="validation")
]


def positive(message: str) -> AfterValidator:
    """Refuse a duration of zero or less: ``Annotated[Duration, positive(...)]``."""
    return _refuse(lambda value: value <= timedelta(0), message)


def at_least(minimum: timedelta, message: str) -> AfterValidator:
    """Refuse a duration shorter than ``minimum``: ``Annotated[Duration, at_least(...)]``."""
    return _refuse(lambda value: value < minimum, message)


def _refuse(wrong: Callable[[timedelta], bool], message: str) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if wrong(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


Probability = Annotated[float, Field(gt=0, lt=1)]


def _check_http(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("the url must start with http:// or https://")
    return value


HttpUrl = Annotated[str, BeforeValidator(lambda v: _check_http(str(v)))]


def _check_zone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not an IANA time zone such as Europe/Berlin or UTC"
        ) from None
    return str(value)


# An IANA time zone name, checked against the zone database at load.
TimeZone = Annotated[str, BeforeValidator(_check_zone)]


class FrozenModel(BaseModel):
    """A section of alerts.yaml: immutable once loaded, and an unknown key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
