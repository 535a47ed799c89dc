"""alerts.yaml -> typed, validated, frozen configuration (the only YAML reader).

One module per part of the file: :mod:`~detector.config.source` (``source:``, ``state:``,
``schedule:``), :mod:`~detector.config.detection` (``detection:``, ``gateways:``),
:mod:`~detector.config.calendar` (``calendar:``),
:mod:`~detector.config.service` (``server:``, ``ha:``), :mod:`~detector.config.receivers`,
:mod:`~detector.config.routes` (``route:``, ``inhibit_rules:``, ``maintenance_windows:``,
``alerting:``), :mod:`~detector.config.document` (the whole file) and
:mod:`~detector.config.loading` (``${VAR}`` interpolation and error reporting).
"""

from detector.config.base import DEFAULT_CONFIG_PATH, ConfigError, parse_duration
from detector.config.calendar import CalendarConfig, CalendarDay, DeclaredSpan
from detector.config.detection import (
    BankRule,
    DeclineRateRule,
    DetectionConfig,
    GatewayConfig,
    LatencyRule,
    NoDataRule,
    OutageRule,
    SlaBreachRule,
    VolumeDropRule,
    parse_false_alerts,
)
from detector.config.document import Config
from detector.config.loading import load_config, parse_config
from detector.config.receivers import (
    TEMPLATE_FIELDS,
    AlertmanagerReceiver,
    ConsoleReceiver,
    EmailReceiver,
    PagerDutyReceiver,
    ReceiverConfig,
    SlackReceiver,
    Templates,
    WebhookReceiver,
    standard_webhooks_key,
)
from detector.config.routes import (
    GROUP_BY_ALL,
    AlertingConfig,
    InhibitRule,
    LabelMatcher,
    MaintenanceWindow,
    Matchers,
    Route,
    check_regex,
)
from detector.config.service import HaConfig, HeartbeatConfig, ServerConfig
from detector.config.source import (
    Columns,
    Declines,
    ScheduleConfig,
    SourceConfig,
    StateConfig,
    Statuses,
    trace_link,
)
from detector.config.volumes import VOLUME_LABEL, VolumeConfig

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "GROUP_BY_ALL",
    "TEMPLATE_FIELDS",
    "VOLUME_LABEL",
    "AlertingConfig",
    "AlertmanagerReceiver",
    "BankRule",
    "CalendarConfig",
    "CalendarDay",
    "Columns",
    "Config",
    "ConfigError",
    "ConsoleReceiver",
    "DeclaredSpan",
    "DeclineRateRule",
    "Declines",
    "DetectionConfig",
    "EmailReceiver",
    "GatewayConfig",
    "HaConfig",
    "HeartbeatConfig",
    "InhibitRule",
    "LabelMatcher",
    "LatencyRule",
    "MaintenanceWindow",
    "Matchers",
    "NoDataRule",
    "OutageRule",
    "PagerDutyReceiver",
    "ReceiverConfig",
    "Route",
    "ScheduleConfig",
    "ServerConfig",
    "SlaBreachRule",
    "SlackReceiver",
    "SourceConfig",
    "StateConfig",
    "Statuses",
    "Templates",
    "VolumeConfig",
    "VolumeDropRule",
    "WebhookReceiver",
    "check_regex",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_false_alerts",
    "standard_webhooks_key",
    "trace_link",
]
