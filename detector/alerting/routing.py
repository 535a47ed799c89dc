"""Alert transitions -> outbox deliveries: the route tree, grouping, reminders and muting.

Every tick the router decides, for each transition and each alert still firing, which
receivers get which notification and in which group; the store writes the result to the
outbox in the same transaction as the alert state, so routing decisions survive a crash
exactly like the transitions that caused them.

Muting (silences, maintenance windows, inhibition) holds back *firing* notifications. An
alert whose first firing notification was muted is notified as soon as the mute ends while
it still fires (as Alertmanager does), and its resolution is not notified if nobody was ever
told it fired. A resolution of an alert people were told about is always sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from detector.alerting.matchers import labels_match
from detector.alerting.mute import Mutes
from detector.alerting.silences import Silence
from detector.alerts import Alert, Transition, notification_for
from detector.config import GROUP_BY_ALL, Config, Route
from detector.model import Notification
from detector.notify.base import Receiver

__all__ = ["Delivery", "ResolvedRoute", "Router", "group_key", "receivers_for", "routes_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedRoute:
    """A matched route with every setting filled in from its ancestors."""

    id: str  # its key path in alerts.yaml, e.g. ``route.routes[0]``
    receivers: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta


def routes_for(config: Config, labels: Mapping[str, str]) -> list[ResolvedRoute]:
    """The routes an alert with these labels takes, deepest match first, in tree order.

    A route matches when its matchers do; then its children are tried in order, the first
    matching child wins unless it says ``continue: true``; a route none of whose children
    match is itself the destination. The root route matches every alert.
    """
    root = config.route
    resolved = ResolvedRoute(
        "route",
        root.receivers or (),
        root.group_by if root.group_by is not None else ("rule",),
        _or(root.group_wait, timedelta(0)),
        _or(root.group_interval, timedelta(minutes=1)),
        _or(root.repeat_interval, config.alerting.repeat_interval),
    )
    return _walk(root, resolved, labels)


def receivers_for(config: Config, labels: Mapping[str, str]) -> list[str]:
    """Receiver names for an alert with these labels, in route order, without repeats."""
    chosen: list[str] = []
    for route in routes_for(config, labels):
        chosen += [name for name in route.receivers if name not in chosen]
    return chosen


def _or(value: timedelta | None, default: timedelta) -> timedelta:
    return default if value is None else value


def _walk(route: Route, resolved: ResolvedRoute, labels: Mapping[str, str]) -> list[ResolvedRoute]:
    found: list[ResolvedRoute] = []
    for index, child in enumerate(route.routes):
        if not labels_match(labels, child.match, child.match_re, child.matchers):
            continue
        inherited = ResolvedRoute(
            f"{resolved.id}.routes[{index}]",
            child.receivers if child.receivers is not None else resolved.receivers,
            child.group_by if child.group_by is not None else resolved.group_by,
            _or(child.group_wait, resolved.group_wait),
            _or(child.group_interval, resolved.group_interval),
            _or(child.repeat_interval, resolved.repeat_interval),
        )
        found += _walk(child, inherited, labels)
        if not child.continue_:
            break
    return found or [resolved]


class Delivery(NamedTuple):
    """One notification for one receiver, and how its group batches messages."""

    receiver: str
    notification: Notification
    group_key: str = ""
    # A new group waits group_wait so alerts arriving together go out together; a group
    # that has just sent waits until group_interval after that message.
    group_wait: timedelta = timedelta(0)
    group_interval: timedelta = timedelta(0)


def group_key(route: ResolvedRoute, labels: Mapping[str, str]) -> str:
    """Alerts of one route with equal ``group_by`` labels share a key (and a message).

    >>> from datetime import timedelta
    >>> route = ResolvedRoute("route", ("console",), ("rule",), *[timedelta(0)] * 3)
    >>> group_key(route, {"rule": "outage", "gateway": "stripe"}) == group_key(
    ...     route, {"rule": "outage", "gateway": "adyen"})
    True
    """
    if GROUP_BY_ALL in route.group_by:
        values = dict(labels)
    else:
        values = {name: labels.get(name, "") for name in route.group_by}
    text = route.id + "\n" + json.dumps(values, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Router:
    """Follows ``config.route`` to the receivers; owns reminders and muting."""

    def __init__(self, config: Config, receivers: Mapping[str, Receiver]):
        self.config = config
        self.receivers = receivers

    def deliveries(
        self,
        transitions: Sequence[Transition],
        alerts: Mapping[str, Alert],
        now: datetime,
        silences: Sequence[Silence] = (),
        explains: Callable[[Alert, Alert], bool] | None = None,
    ) -> list[Delivery]:
        """What this tick sends. Updates ``alerts`` (who was told, when) in place.
        ``explains``: which firing alert's incident explains which other's (see
        :class:`~detector.alerting.mute.Mutes`)."""
        firing = [a for a in alerts.values() if a.state == "firing"]
        mutes = Mutes(self.config, silences, firing, explains)
        out: list[Delivery] = []
        for transition in transitions:
            alert = transition.alert
            if transition.event == "resolved":
                if alert.notified:
                    out += self._send(transition, None)
                continue
            live = alerts.get(alert.fingerprint)
            reason = mutes.reason(alert, now)
            if reason is not None:
                log.info("alert %s %s muted: %s", alert.fingerprint, alert.labels, reason)
                if live is not None and alert.fired_at == transition.at:
                    live.notified = False
                continue
            if live is not None:
                live.notified = True
            out += self._send(transition, live)
        changed = {t.alert.fingerprint for t in transitions}
        for key, alert in alerts.items():
            if key in changed or alert.state != "firing" or mutes.reason(alert, now):
                continue
            if not alert.notified:
                log.info("alert %s no longer muted, notifying", key)
                alert.notified = True
                out += self._send(Transition("firing", alert.copy(), now), alert)
            else:
                out += self._reminders(alert, now)
        return out

    def _send(self, transition: Transition, live: Alert | None) -> list[Delivery]:
        notification = notification_for(transition, self.config)
        out = []
        for route in routes_for(self.config, notification.labels):
            for name in route.receivers:
                if live is not None:
                    live.reminded[_reminder(route, name)] = transition.at.isoformat()
                if self.receivers[name].wants(notification):
                    out.append(self._delivery(route, name, notification))
        return out

    def _reminders(self, alert: Alert, now: datetime) -> list[Delivery]:
        notification: Notification | None = None
        out = []
        for route in routes_for(self.config, alert.routing_labels):
            for name in route.receivers:
                receiver = self.receivers[name]
                key = _reminder(route, name)
                last = alert.reminded.get(key)
                if last is None:
                    # A route added since the alert fired: its clock starts now.
                    alert.reminded[key] = now.isoformat()
                    continue
                every = receiver.resend_interval or route.repeat_interval
                if now - datetime.fromisoformat(last) < every:
                    continue
                alert.reminded[key] = now.isoformat()
                if notification is None:
                    repeat = Transition("firing", alert.copy(), now, repeat=True)
                    notification = notification_for(repeat, self.config)
                out.append(self._delivery(route, name, notification))
        return out

    def _delivery(self, route: ResolvedRoute, name: str, n: Notification) -> Delivery:
        if not self.receivers[name].groups:
            return Delivery(name, n, group_key(route, {}))
        return Delivery(
            name,
            replace(n, group_by=route.group_by),
            group_key(route, n.labels),
            route.group_wait,
            route.group_interval,
        )


def _reminder(route: ResolvedRoute, receiver: str) -> str:
    return f"{route.id}>{receiver}"
