"""What the last tick saw, published by the daemon for the HTTP threads to read.

The daemon replaces the whole :class:`Snapshot` after each tick and never changes one in
place, so a request always renders one consistent tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detector.config import Config
from detector.service.health import HealthTable
from detector.service.history import HistorySnapshot
from detector.service.volume_charts import VolumeCharts

__all__ = ["Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """What the last tick saw, for the API and the status page."""

    at: datetime | None
    role: str  # "leader" or "follower"
    config: Config
    health: HealthTable
    history: HistorySnapshot | None = None
    # Silences in force, as dicts of matchers, until and comment.
    silences: list[dict[str, Any]] = field(default_factory=list)
    # The business volumes' charts (``/volumes``), read hourly; None before the first read.
    volumes: VolumeCharts | None = None
    # Per volume series firing an alert: the rule, e.g. {"sales": "volume_drop"}.
    volume_alerts: dict[str, str] = field(default_factory=dict)
