"""Incidents injected into simulated traffic, and their command-line syntax."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from detector.config import parse_duration
from detector.timeutil import naive_utc

__all__ = ["Incident"]

_SPAN_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_SPAN = re.compile(rf"(?:{_SPAN_PART.pattern})+")
_EFFECT_WORDS = {"outage": ("failure_rate", 1.0), "silence": ("volume_factor", 0.0)}
_SYNTAX = "GATEWAY:START:DURATION:EFFECT, e.g. adyen:+5d14h:45m:failure_rate=0.12"
_NUMERIC_EFFECTS = ("failure_rate", "volume_factor", "decline_rate", "latency")


@dataclass(frozen=True)
class Incident:
    """A stretch of time in which one gateway fails more often, carries less traffic or sees
    more declines.

    Incidents act on whole minutes: a minute is affected when its start lies in
    ``[start, start + duration)``. Where incidents on one gateway overlap, volume factors
    multiply and the later incident's failure rate wins.

    Parameters
    ----------
    gateway : str
        Name of the affected gateway.
    start : datetime
        Naive UTC (an aware datetime is converted to naive UTC).
    duration : timedelta
        Positive length of the incident.
    failure_rate : float, optional
        Failure probability during the incident, e.g. 0.12; 1.0 is an outage.
    volume_factor : float, optional
        Multiplies the volume: 0.0 is silence, 0.2 a drop to 20%.
    decline_rate : float, optional
        Share of the payments that do not fail which are declined during the incident (a
        decline wave), in place of the gateway's usual share and its swing.
    latency : float, optional
        The p95 latency of the payments in milliseconds during the incident (a slow
        checkout), e.g. 3000; healthy payments have a p95 of about 680 ms.
    """

    gateway: str
    start: datetime
    duration: timedelta
    failure_rate: float | None = None
    volume_factor: float | None = None
    decline_rate: float | None = None
    latency: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", naive_utc(self.start))
        problem = _incident_problem(
            self.duration, self.failure_rate, self.volume_factor, self.decline_rate, self.latency
        )
        if problem:
            raise ValueError(f"incident on {self.gateway}: {problem}")

    @property
    def end(self) -> datetime:
        """First instant after the incident (naive UTC)."""
        return self.start + self.duration

    @classmethod
    def parse(cls, text: str, default_start: datetime) -> Incident:
        """Read ``GATEWAY:START:DURATION:EFFECT[,EFFECT]`` as given on the command line.

        - START is an ISO 8601 date-time (naive means UTC), e.g. ``2026-11-20T14:00``, or an
          offset from ``default_start`` (the simulation start) such as ``+5d14h`` or ``+90m``.
        - DURATION is a span such as ``45m``, ``2h``, ``1d`` or ``1h30m``.
        - EFFECT is ``failure_rate=P`` (0 to 1), ``volume_factor=F`` (0 or more),
          ``decline_rate=P`` (0 to 1), ``latency=MS`` (the p95 latency in milliseconds),
          ``outage`` (failure_rate=1) or ``silence`` (volume_factor=0); join several with a
          comma.

        >>> start = datetime(2026, 11, 16)
        >>> Incident.parse("adyen:2026-11-20T14:00:45m:failure_rate=0.12", start).end
        datetime.datetime(2026, 11, 20, 14, 45)
        >>> Incident.parse("stripe:+1d2h:30m:silence", start).start
        datetime.datetime(2026, 11, 17, 2, 0)
        >>> Incident.parse("stripe:tomorrow:30m:outage", start)
        Traceback (most recent call last):
        ...
        ValueError: incident 'stripe:tomorrow:30m:outage': start 'tomorrow' is neither an ISO \
date-time such as 2026-11-20T14:00 nor an offset such as +5d14h
        """
        # START may itself contain colons (14:00, +01:00), so cut the gateway off the left
        # and the duration and effect off the right.
        gateway, _, rest = text.strip().partition(":")
        parts = rest.rsplit(":", 2)
        if not gateway or len(parts) != 3 or not all(parts):
            raise ValueError(f"incident {text!r} does not read as {_SYNTAX}")
        start_text, duration_text, effect_text = parts
        try:
            start = _read_start(start_text, default_start)
            duration = _parse_span(duration_text)
            if duration is None:
                raise _Unreadable(
                    f"duration {duration_text!r} is not a span such as 45m, 2h or 1h30m"
                )
            effects = _read_effects(effect_text)
        except _Unreadable as exc:
            raise ValueError(f"incident {text!r}: {exc}") from None
        invalid = _incident_problem(duration, **effects)
        if invalid:
            raise ValueError(f"incident {text!r}: {invalid}")
        return cls(gateway, start, duration, **effects)


class _Unreadable(ValueError):
    """One part of an incident's text does not read; :meth:`Incident.parse` names the text."""


def _read_start(text: str, default_start: datetime) -> datetime:
    """An ISO date-time, or ``+SPAN`` after ``default_start``."""
    if text.startswith("+"):
        offset = _parse_span(text[1:])
        if offset is None:
            raise _Unreadable(f"start offset {text!r} is not a span such as +5d14h or +90m")
        return naive_utc(default_start) + offset
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise _Unreadable(
            f"start {text!r} is neither an ISO date-time such as "
            "2026-11-20T14:00 nor an offset such as +5d14h"
        ) from None


def _read_effects(text: str) -> dict[str, float | None]:
    """``failure_rate=P``, ``volume_factor=F``, ``decline_rate=P``, ``latency=MS``,
    ``outage`` or ``silence``, comma-joined."""
    effects: dict[str, float | None] = dict.fromkeys(_NUMERIC_EFFECTS)
    for effect in text.split(","):
        kind, equals, value = (word.strip() for word in effect.partition("="))
        if not equals and kind in _EFFECT_WORDS:
            kind, number = _EFFECT_WORDS[kind]
        elif equals and kind in _NUMERIC_EFFECTS:
            try:
                number = float(value)
            except ValueError:
                raise _Unreadable(f"{kind} needs a number, not {value!r}") from None
        else:
            raise _Unreadable(
                f"effect {effect!r} is not one of failure_rate=P, volume_factor=F, "
                "decline_rate=P, latency=MS, outage or silence"
            )
        if effects[kind] is not None:
            raise _Unreadable(f"{kind} is given twice")
        effects[kind] = number
    return effects


def _incident_problem(
    duration: timedelta,
    failure_rate: float | None,
    volume_factor: float | None,
    decline_rate: float | None = None,
    latency: float | None = None,
) -> str | None:
    """What is wrong with these incident settings, as a sentence; ``None`` if nothing."""
    if duration <= timedelta(0):
        return "the duration must be positive"
    if failure_rate is None and volume_factor is None and decline_rate is None and latency is None:
        return "set a failure_rate, a volume_factor, a decline_rate, a latency or several"
    if latency is not None and not latency > 0:
        return f"latency must be a positive number of milliseconds, not {latency}"
    if decline_rate is not None and not 0 <= decline_rate <= 1:
        return f"decline_rate must be between 0 and 1, not {decline_rate}"
    if failure_rate is not None and not 0 <= failure_rate <= 1:
        return f"failure_rate must be between 0 and 1, not {failure_rate}"
    if volume_factor is not None and not volume_factor >= 0:
        return f"volume_factor must be zero or more, not {volume_factor}"
    return None


def _parse_span(text: str) -> timedelta | None:
    """``"1d2h30m"`` -> timedelta; ``None`` when the text is not such a span."""
    if not _SPAN.fullmatch(text):
        return None
    return sum(
        (parse_duration(number + unit) for number, unit in _SPAN_PART.findall(text)),
        timedelta(0),
    )
