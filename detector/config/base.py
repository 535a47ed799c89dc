"""What every section of alerts.yaml builds on: the frozen model, the error, shared value types."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from itertools import pairwise
from typing import Annotated, Any
from urllib.parse import urlsplit
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
    "MAX_DURATION",
    "ConfigError",
    "Duration",
    "FrozenModel",
    "HttpUrl",
    "Probability",
    "TimeZone",
    "at_least",
    "at_most",
    "check_http_url",
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


_DURATION = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# The longest duration any key takes: past it, time arithmetic leaves the calendar (a
# window of 1000000w reaches back before year 1) and nothing useful is that long.
MAX_DURATION = timedelta(days=3650)


def parse_duration(value: Any) -> timedelta:
    """Parse ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1w"``, a compound of them from the
    largest unit down as Prometheus writes it (``"1h30m"``), or a number of seconds.

    >>> parse_duration("5m")
    datetime.timedelta(seconds=300)
    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration(90)
    datetime.timedelta(seconds=90)
    >>> parse_duration("30m1h")
    Traceback (most recent call last):
    ...
    ValueError: '30m1h' is not a duration; write e.g. 30s, 5m, 2h, 1d or 1h30m
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 2h or 1d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        seconds = float(value)
    else:
        parts = _DURATION_PART.findall(str(value)) if _DURATION.match(str(value)) else []
        sizes = [_UNIT_SECONDS[unit] for _, unit in parts]
        # Each unit at most once, from the largest down: "30m1h" is more likely a typo.
        if not parts or any(a <= b for a, b in pairwise(sizes)):
            raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 5m, 2h, 1d or 1h30m")
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if not seconds <= MAX_DURATION.total_seconds():  # also refuses inf and nan
        longest = f"{MAX_DURATION.days}d"
        raise ValueError(f"{value!r} is longer than any setting takes (at most {longest})")
    return timedelta(seconds=seconds)


# As the loader reads it, for the JSON Schema of alerts.yaml (``detector schema``).
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*)+$"
DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": DURATION_PATTERN},
        {"type": "number", "minimum": 0},
    ],
    "description": "a duration: a number and a unit (ms, s, m, h, d, w) such as 90s, 5m, 2h, "
    "1d, units combined from the largest down such as 1h30m, or a number of seconds",
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


def at_most(maximum: timedelta, message: str) -> AfterValidator:
    """Refuse a duration longer than ``maximum``: ``Annotated[Duration, at_most(...)]``."""
    return _refuse(lambda value: value > maximum, message)


def _refuse(wrong: Callable[[timedelta], bool], message: str) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if wrong(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


Probability = Annotated[float, Field(gt=0, lt=1)]


_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def check_http_url(value: str, *, https: bool = False) -> str:
    """``value`` if it is an absolute http(s) URL that a request can be sent to, else a
    ``ValueError`` saying what is wrong. The message never repeats the URL: its path or
    query may be a credential (a Slack incoming webhook's is).

    ``https``: only https, except to this host itself (a local relay, a test server).

    >>> try:
    ...     check_http_url("http://")
    ... except ValueError as exc:
    ...     print(exc)
    the url has no host name after http://; write e.g. https://hooks.example.com/path
    """
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in ("http", "https"):
        raise ValueError("the url must start with http:// or https://")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(
            "the url contains a space or another blank or control character; "
            "write a space as %20 and remove line breaks"
        )
    try:
        parts = urlsplit(value)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(
            "the url's host or port does not parse; write e.g. https://host:8443/path"
        ) from None
    if not host:
        raise ValueError(
            f"the url has no host name after {scheme}://; write e.g. https://hooks.example.com/path"
        )
    if port == 0:
        raise ValueError("the url's port must be 1-65535")
    if https and scheme != "https" and host not in _LOOPBACK_HOSTS:
        raise ValueError("https is required: the url carries a secret; write https://")
    return value


HttpUrl = Annotated[str, BeforeValidator(lambda v: check_http_url(str(v)))]


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
