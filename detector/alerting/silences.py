"""Silences: muting, for a while, every alert whose labels match (``detector silence``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from detector.alerting.matchers import labels_match
from detector.config import LabelMatcher

__all__ = ["Silence"]


@dataclass(frozen=True)
class Silence:
    """Mutes the notifications of every alert whose labels match, from start to end."""

    id: str
    match: dict[str, str]
    match_re: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    matchers: tuple[LabelMatcher, ...] = ()  # Alertmanager-style, e.g. gateway!="sandbox"

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels_match(labels, self.match, self.match_re, self.matchers)

    def describe(self) -> str:
        """``gateway=stripe, rule=~outage|sla_breach`` (``=~`` marks a regex)."""
        parts = [f"{k}={v}" for k, v in sorted(self.match.items())]
        parts += [f"{k}=~{v}" for k, v in sorted(self.match_re.items())]
        parts += [str(matcher) for matcher in self.matchers]
        return ", ".join(parts)
