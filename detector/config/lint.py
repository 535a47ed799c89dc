"""Settings that are valid but can never take effect: a route, inhibit rule or maintenance
window that matches on a label no alert carries (``gatway=stripe``) matches nothing, or
everything, without a word. Warnings, not errors: ``detector validate`` prints them and
``detector run`` logs them at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator

from detector.config.document import Config
from detector.config.routes import GROUP_BY_ALL, Matchers, Route
from detector.config.source import RESERVED_LABELS

__all__ = ["alert_labels", "label_warnings", "unknown_label_warnings"]


def alert_labels(config: Config) -> frozenset[str]:
    """Every label an alert of this configuration can carry."""
    return RESERVED_LABELS | frozenset(config.source.columns.dimensions)


def _matched_labels(matchers: Matchers) -> list[str]:
    return [*matchers.match, *matchers.match_re, *(m.name for m in matchers.matchers)]


def _routes(route: Route, path: str) -> Iterator[tuple[str, Route]]:
    yield path, route
    for index, child in enumerate(route.routes):
        yield from _routes(child, f"{path}.routes[{index}]")


def label_warnings(config: Config) -> list[str]:
    """``key path: label 'gatway' is carried by no alert (...)`` for each such use.

    >>> from detector.config import parse_config
    >>> config = parse_config({"route": {"receivers": ["console"],
    ...     "routes": [{"match": {"gatway": "stripe"}, "receivers": ["console"]}]}}, env={})
    >>> label_warnings(config)  # doctest: +ELLIPSIS
    ["route.routes[0].match: label 'gatway' is carried by no alert (alerts carry: ...)"]
    """
    found: list[tuple[str, str]] = []
    for path, route in _routes(config.route, "route"):
        found += [(f"{path}.match", label) for label in route.match]
        found += [(f"{path}.match_re", label) for label in route.match_re]
        found += [(f"{path}.matchers", m.name) for m in route.matchers]
        found += [
            (f"{path}.group_by", label) for label in route.group_by or () if label != GROUP_BY_ALL
        ]
    for index, rule in enumerate(config.inhibit_rules):
        path = f"inhibit_rules[{index}]"
        for side in ("source", "target"):
            found += [(f"{path}.{side}_match", label) for label in getattr(rule, f"{side}_match")]
            found += [
                (f"{path}.{side}_match_re", label) for label in getattr(rule, f"{side}_match_re")
            ]
            found += [
                (f"{path}.{side}_matchers", m.name) for m in getattr(rule, f"{side}_matchers")
            ]
        found += [(f"{path}.equal", label) for label in rule.equal]
    for index, window in enumerate(config.maintenance_windows):
        found += [(f"maintenance_windows[{index}]", label) for label in _matched_labels(window)]
    return unknown_label_warnings(config, found)


def unknown_label_warnings(config: Config, found: list[tuple[str, str]]) -> list[str]:
    """``where: label ... is carried by no alert`` for each (where, label) of ``found``
    naming a label no alert of ``config`` carries; ``detector silence add`` warns with it too."""
    known = alert_labels(config)
    carried = ", ".join(sorted(known))
    warnings = [
        f"{path}: label {label!r} is carried by no alert (alerts carry: {carried})"
        for path, label in found
        if label not in known
    ]
    return list(dict.fromkeys(warnings))
