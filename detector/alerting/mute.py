"""Why an alert notifies nobody right now: a silence, a maintenance window, or inhibition.

Muting holds back notifications only; the alert keeps its lifecycle. See
:class:`detector.alerting.routing.Router` for what happens when a mute ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from detector.alerting.matchers import labels_match
from detector.alerting.silences import Silence
from detector.alerts import Alert
from detector.config import Config, InhibitRule

__all__ = ["Mutes"]


class Mutes:
    """The silences, maintenance windows and inhibit rules in force at one tick.

    Parameters
    ----------
    config
        Supplies ``maintenance_windows`` and ``inhibit_rules``.
    silences
        Silences from the state store (ended ones are ignored).
    firing
        The alerts firing now: the possible sources of inhibition.
    explains
        ``explains(source, target)``: whether the source's incident explains the target,
        which an inhibit rule pairing them then mutes (the engine's
        :meth:`~detector.engine.Engine.explains`: a segment's outage mutes its gateway's
        breach only when the rest of the gateway would not breach). Every pair by default.
    """

    def __init__(
        self,
        config: Config,
        silences: Sequence[Silence],
        firing: Sequence[Alert],
        explains: Callable[[Alert, Alert], bool] | None = None,
    ):
        self.config = config
        self.silences = silences
        self.explains = explains
        # Per inhibit rule, its firing sources by their values of the `equal` labels, so
        # that checking an alert costs the number of rules, not the number of alerts.
        self.sources: list[tuple[InhibitRule, dict[tuple[str, ...], list[Alert]]]] = []
        for rule in config.inhibitions:
            by_equal: dict[tuple[str, ...], list[Alert]] = {}
            for source in firing:
                labels = source.routing_labels
                if labels_match(
                    labels, rule.source_match, rule.source_match_re, rule.source_matchers
                ):
                    by_equal.setdefault(_values(labels, rule.equal), []).append(source)
            self.sources.append((rule, by_equal))

    def reason(self, alert: Alert, now: datetime) -> str | None:
        """Why ``alert`` is muted at ``now``, or None if it is not."""
        labels = alert.routing_labels
        for silence in self.silences:
            if silence.is_active(now) and silence.matches(labels):
                return f"silence {silence.id} ({silence.comment})"
        for index, window in enumerate(self.config.maintenance_windows):
            matched = labels_match(labels, window.match, window.match_re, window.matchers)
            if matched and window.is_open(now):
                return f"maintenance window {window.name or f'maintenance_windows[{index}]'}"
        for rule, by_equal in self.sources:
            if not by_equal or not labels_match(
                labels, rule.target_match, rule.target_match_re, rule.target_matchers
            ):
                continue
            for source in by_equal.get(_values(labels, rule.equal), ()):
                if source.fingerprint == alert.fingerprint:
                    continue
                if self.explains is None or self.explains(source, alert):
                    pairs = ", ".join(f"{k}={v}" for k, v in sorted(source.labels.items()))
                    return f"inhibited by firing {pairs}"
        return None


def _values(labels: Mapping[str, str], names: Sequence[str]) -> tuple[str, ...]:
    return tuple(labels.get(name, "") for name in names)
