"""Whether an alert's labels satisfy ``match``, ``match_re`` and ``matchers``.

The one check behind routes, maintenance windows, inhibit rules and silences. Labels work as
in Alertmanager: a label the alert does not have counts as the empty string, and a regex
must match the whole value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from detector.config import LabelMatcher

__all__ = ["labels_match"]


def labels_match(
    labels: Mapping[str, str],
    match: Mapping[str, str],
    match_re: Mapping[str, str],
    matchers: Iterable[LabelMatcher] = (),
) -> bool:
    """Every ``match`` label equal, every ``match_re`` label fully matching its regex, and
    every matcher holding.

    >>> labels_match({"gateway": "stripe"}, {}, {"gateway": "stripe|adyen"})
    True
    >>> labels_match({"gateway": "stripe-eu"}, {}, {"gateway": "stripe|adyen"})
    False
    >>> def matcher(text):
    ...     return [LabelMatcher.model_validate(text)]
    >>> labels_match({"gateway": "stripe"}, {}, {}, matcher('gateway!~"test-.*"'))
    True
    >>> labels_match({"gateway": "stripe"}, {}, {}, matcher("gateway != stripe"))
    False
    """
    return (
        all(labels.get(name, "") == value for name, value in match.items())
        and all(_full_match(pattern, labels.get(name, "")) for name, pattern in match_re.items())
        and all(_holds(matcher, labels.get(matcher.name, "")) for matcher in matchers)
    )


def _holds(matcher: LabelMatcher, actual: str) -> bool:
    if matcher.operator in ("=", "!="):
        return (actual == matcher.value) == (matcher.operator == "=")
    return _full_match(matcher.value, actual) == (matcher.operator == "=~")


def _full_match(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None
