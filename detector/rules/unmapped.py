"""``unmapped_statuses``: a gateway whose rows of the last hour carry, for more than a
twentieth of them, a status listed under none of ``source.statuses``.

Such rows are skipped by every other rule, so a status nobody listed (``TIMEOUT``) can
hide an outage; the warning names the values so that they can be mapped.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from detector.model import Counts, Evidence
from detector.rules.verdict import Finding, percent
from detector.window import CountWindow

__all__ = ["UNMAPPED_SHARE", "UnmappedStatuses"]

# The share of a gateway's rows in the last hour with an unlisted status above which the
# alert fires: a few stray values are logged only, a twentieth of the traffic hides failures.
UNMAPPED_SHARE = 0.05
_MINUTES = 60


class UnmappedStatuses:
    """The last hour of every gateway's rows and of those with an unlisted status.

    Fed with each read's counts (the unlisted rows are counted by the same GROUP BY), so
    that watching them costs no query of its own.
    """

    rule = "unmapped_statuses"

    def __init__(self, gateways: list[str]):
        # payments: every row of the gateway, failures: those with an unlisted status.
        self.window = CountWindow(_MINUTES, gateways=gateways)
        # Per gateway, its unlisted status values and their rows, as the last read that had
        # any of its rows named them.
        self.values: dict[str, tuple[tuple[str, int], ...]] = {}

    def update(self, first_minute: int, end_minute: int, counts: Counts) -> None:
        """Take a read of ``[first_minute, end_minute)``."""
        self.window.advance(end_minute)
        every = counts.volume + counts.unlisted
        self.window.replace(
            first_minute,
            end_minute,
            Counts(counts.gateway, counts.minute, every, counts.unlisted, every),
        )
        named: dict[str, list[tuple[str, int]]] = {}
        for gateway, reason, rows in counts.unlisted_values:
            named.setdefault(gateway, []).append((reason, rows))
        self.values.update((gateway, tuple(values)) for gateway, values in named.items())

    def findings(self, now: datetime) -> list[Finding]:
        """A warning for each gateway above :data:`UNMAPPED_SHARE`."""
        rows = self.window.payments.sum(axis=1)
        unlisted = self.window.failures.sum(axis=1)
        share = np.divide(unlisted, rows, out=np.zeros(len(rows)), where=rows > 0)
        return [
            Finding(
                self.rule,
                gateway,
                "warning",
                f"{percent(float(share[i]))} of the rows of the last hour ({unlisted[i]} of "
                f"{rows[i]}) have a status listed under none of source.statuses, so no rule "
                f"counts them; last read: {self._named(gateway)}",
                now,
                Evidence(),
            )
            for i, gateway in enumerate(self.window.gateways)
            if share[i] > UNMAPPED_SHARE
        ]

    def _named(self, gateway: str) -> str:
        """The gateway's unlisted values and their rows, as the last read naming any read them."""
        values = self.values.get(gateway, ())
        return ", ".join(f"{reason}: {n} rows" for reason, n in values) or "no value named"
