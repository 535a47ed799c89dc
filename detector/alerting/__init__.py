"""From alert transitions to deliveries: label matchers, the route tree, silences,
maintenance windows and inhibition."""

from detector.alerting.matchers import labels_match
from detector.alerting.mute import Mutes
from detector.alerting.routing import (
    Delivery,
    ResolvedRoute,
    Router,
    group_key,
    receivers_for,
    routes_for,
)
from detector.alerting.silences import Silence

__all__ = [
    "Delivery",
    "Mutes",
    "ResolvedRoute",
    "Router",
    "Silence",
    "group_key",
    "labels_match",
    "receivers_for",
    "routes_for",
]
