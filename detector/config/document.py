"""The whole of alerts.yaml as one model, and the checks that span its sections."""

from __future__ import annotations

from datetime import timedelta

from pydantic import model_validator

from detector.config.base import FrozenModel
from detector.config.calendar import CalendarConfig
from detector.config.detection import DetectionConfig, GatewayConfig
from detector.config.receivers import ConsoleReceiver, ReceiverConfig
from detector.config.routes import (
    DEFAULT_INHIBIT_RULES,
    AlertingConfig,
    InhibitRule,
    MaintenanceWindow,
    Route,
)
from detector.config.service import HaConfig, HeartbeatConfig, ServerConfig
from detector.config.source import ScheduleConfig, SourceConfig, StateConfig
from detector.config.volumes import VOLUME_LABEL, VolumeConfig, VolumeName

__all__ = ["Config"]

# The payments query timeout when source.query_timeout is unset: half an interval, at most this.
MAX_DEFAULT_QUERY_TIMEOUT = timedelta(seconds=30)


class Config(FrozenModel):
    """alerts.yaml as a whole; an absent section takes its defaults."""

    source: SourceConfig = SourceConfig()
    state: StateConfig = StateConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    detection: DetectionConfig = DetectionConfig()
    calendar: CalendarConfig = CalendarConfig()
    gateways: dict[str, GatewayConfig] = {}
    alerting: AlertingConfig = AlertingConfig()
    server: ServerConfig = ServerConfig()
    ha: HaConfig = HaConfig()
    heartbeat: HeartbeatConfig | None = None
    receivers: dict[str, ReceiverConfig] = {"console": ConsoleReceiver(type="console")}
    route: Route = Route(receivers=("console",))
    inhibit_rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()
    volumes: dict[VolumeName, VolumeConfig] = {}

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
        return self

    @model_validator(mode="after")
    def _series_name_dimensions(self) -> Config:
        dimensions = self.source.columns.dimensions
        for index, grouping in enumerate(self.detection.sla_breach.series):
            for label in grouping:
                if label not in dimensions:
                    known = ", ".join(sorted(dimensions)) or "none"
                    raise ValueError(
                        f"detection.sla_breach.series[{index}]: {label!r} is not one of "
                        f"source.columns.dimensions (defined: {known})"
                    )
        return self

    @model_validator(mode="after")
    def _backups_are_other_gateways(self) -> Config:
        for name, gateway in self.gateways.items():
            if gateway.backup == name:
                raise ValueError(f"gateways.{name}.backup: a gateway cannot be its own backup")
            # A misspelt backup would be named in every message and handed to failover
            # routers by /api/v1/gateways: it must be a gateway this file knows.
            if gateway.backup is not None and gateway.backup not in self.gateways:
                listed = ", ".join(sorted(self.gateways))
                raise ValueError(
                    f"gateways.{name}.backup: {gateway.backup!r} is not listed under gateways: "
                    f"(listed: {listed}); correct the name, or list it "
                    f"({gateway.backup}: {{}})"
                )
        return self

    @model_validator(mode="after")
    def _queries_end_within_a_tick(self) -> Config:
        timeout, interval = self.source.query_timeout, self.schedule.interval
        if timeout is not None and timeout >= interval:
            raise ValueError(
                f"source.query_timeout: {timeout.total_seconds():g}s is not shorter than "
                f"schedule.interval ({interval.total_seconds():g}s): a hanging query would "
                "delay the next tick"
            )
        return self

    @property
    def source_query_timeout(self) -> timedelta:
        """``source.query_timeout``, or half of ``schedule.interval`` (at most 30s)."""
        if self.source.query_timeout is not None:
            return self.source.query_timeout
        return min(MAX_DEFAULT_QUERY_TIMEOUT, self.schedule.interval / 2)

    @property
    def inhibitions(self) -> tuple[InhibitRule, ...]:
        """``inhibit_rules`` as applied: a rule whose alerts must share their ``gateway``
        must share their business volume too (its name and ``by`` values), which a
        volume's alert carries in the gateway's stead."""
        subject = (VOLUME_LABEL, *sorted({c for v in self.volumes.values() for c in v.by}))
        if not self.volumes:
            return self.inhibit_rules
        return tuple(
            rule.model_copy(update={"equal": (*rule.equal, *subject)})
            if "gateway" in rule.equal
            else rule
            for rule in self.inhibit_rules
        )

    def sla_for(self, gateway: str) -> float:
        override = self.gateways.get(gateway)
        return override.sla if override and override.sla is not None else self.detection.sla

    @property
    def latency_watched(self) -> bool:
        """Whether ``latency_breach`` runs: the latency column is set and the rule enabled."""
        return self.source.columns.latency_ms is not None and self.detection.latency.enabled

    @property
    def declines_watched(self) -> bool:
        """Whether ``decline_rate`` runs: the source counts declines (``source.declines`` or
        ``statuses.declined``) and the rule is enabled."""
        source = self.source
        counted = source.declines.configured or bool(source.statuses.declined)
        return counted and self.detection.decline_rate.enabled

    @property
    def latency_threshold(self) -> timedelta | None:
        """What the source counts slow payments against; None where latency is not watched."""
        return self.detection.latency.threshold if self.latency_watched else None

    def latency_sla_for(self, gateway: str) -> float:
        """The share of the gateway's payments that may be slower than the threshold."""
        override = self.gateways.get(gateway)
        if override and override.latency_sla is not None:
            return override.latency_sla
        return self.detection.latency.sla
