"""Per gateway x dimension series (``detection.sla_breach.series``).

With ``series: [[method], [country]]`` the SLA breach detector also watches (stripe,
method=card), (stripe, country=BR), ... Their per-minute counts come from the same read as
the gateways' (the database groups by gateway, minute and the dimension columns) and are
more rows of a count window of their own, so the CUSUM bank runs on all of them at once.
Only ``sla_breach`` runs on them: outages, silences and volume stay per gateway.

Each gateway's sla_breach budget is shared equally by the gateway and its series that are
watched (had ``series_min_payments`` final payments in the calibration history), so adding
series does not add false alerts.

A series opens an alert only when it fails significantly more often than the rest of its
gateway (:func:`hold_back`): a gateway-wide incident is the gateway's one alert, not one
more per method and country.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Container, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.alerts import fingerprint
from detector.config import Config
from detector.model import Counts, grouped
from detector.rules import (
    Calibration,
    RuleResult,
    SeriesRows,
    calibration_history,
    evaluate_series,
)
from detector.stats.binomial import binomial_upper_tail
from detector.timeutil import epoch_minute
from detector.window import CountWindow

__all__ = ["DimensionSeries", "hold_back", "series_counts", "series_dimensions", "series_key"]


def series_dimensions(config: Config) -> tuple[str, ...]:
    """Every dimension some series needs, in the order they are first named."""
    if not config.detection.sla_breach.enabled:
        return ()
    return tuple(
        dict.fromkeys(d for grouping in config.detection.sla_breach.series for d in grouping)
    )


def series_key(gateway: str, labels: Mapping[str, str]) -> str:
    """The window row of a series: any gateway or value, unambiguously.

    >>> series_key("stripe", {"method": "card"})
    '["stripe", [["method", "card"]]]'
    """
    return json.dumps([gateway, sorted(labels.items())])


def _parse_key(key: str) -> tuple[str, dict[str, str]]:
    gateway, labels = json.loads(key)
    return gateway, dict(labels)


def series_counts(detail: Counts, groupings: tuple[tuple[str, ...], ...]) -> Counts:
    """Per (series, minute) counts from the per-(gateway, values, minute) ``detail``.

    >>> values = np.array([["card", "BR"], ["card", "US"], ["wallet", "BR"]], dtype=object)
    >>> one = np.ones(3, dtype=np.int64)
    >>> detail = Counts(np.array(["stripe"] * 3, dtype=object), one * 7, one * 10, one, one * 10,
    ...                 dimensions=("method", "country"), values=values)
    >>> rows = series_counts(detail, (("method",),))
    >>> rows.gateway.tolist(), rows.payments.tolist()
    (['["stripe", [["method", "card"]]]', '["stripe", [["method", "wallet"]]]'], [20, 10])
    """
    if detail.values is None or not detail.minute.size:
        return Counts.empty()
    parts = []
    for grouping in groupings:
        columns = [detail.dimensions.index(label) for label in grouping]
        cells = np.column_stack([detail.gateway, detail.values[:, columns]]).astype(str)
        # One key per distinct series, not per row: a tick reads a row per series and minute.
        distinct, where = np.unique(cells, axis=0, return_inverse=True)
        keys = np.array(
            [series_key(cell[0], dict(zip(grouping, cell[1:], strict=True))) for cell in distinct],
            dtype=object,
        )
        parts.append(grouped(keys[where.ravel()], detail.minute, detail))
    order = np.argsort(np.concatenate([part.minute for part in parts]), kind="stable")

    def joined(column: str) -> npt.NDArray[Any]:
        return np.concatenate([getattr(part, column) for part in parts])[order]

    return Counts(
        joined("gateway"),
        joined("minute"),
        joined("payments"),
        joined("failures"),
        joined("volume"),
        declines=joined("declines"),
    )


class DimensionSeries:
    """The dimension series' count window and their SLA breach verdicts, tick after tick.

    Each tick: :meth:`update` with the read, then :attr:`shares` for the gateways'
    calibration and :meth:`verdicts` for the alert book.
    """

    def __init__(self, config: Config, minutes: int):
        self.config = config
        self.groupings = config.detection.sla_breach.series
        self.dimensions = series_dimensions(config)
        self.window = CountWindow(minutes)
        self.calibration = Calibration()
        self.rows = SeriesRows([], [], np.zeros(0, dtype=bool))
        self._parsed: dict[str, tuple[str, dict[str, str]]] = {}

    def update(self, first_minute: int, end_minute: int, counts: Counts) -> None:
        """Take the series' share of a read (its ``detail``) for the same minutes."""
        self.window.advance(end_minute)
        detail = counts.detail if counts.detail is not None else Counts.empty()
        self.window.replace(first_minute, end_minute, series_counts(detail, self.groupings))
        for key in self.window.gateways:
            if key not in self._parsed:
                self._parsed[key] = _parse_key(key)
        # Watched or not is judged on the history the hour is calibrated on, so it holds for
        # the whole hour, live or in a backtest.
        hour = (self.window.end_minute - 1) // 60
        history = self.window.payments[:, calibration_history(self.window, hour)]
        self.rows = SeriesRows(
            [self._parsed[key][0] for key in self.window.gateways],
            [self._parsed[key][1] for key in self.window.gateways],
            history.sum(axis=1) >= self.config.detection.sla_breach.series_min_payments,
        )

    @property
    def shares(self) -> dict[str, int]:
        """Per gateway, how many series share its sla_breach budget: itself and the watched."""
        rows = self.rows
        watched = Counter(g for g, w in zip(rows.gateways, rows.watched, strict=True) if w)
        return {gateway: 1 + count for gateway, count in watched.items()}

    def verdicts(
        self,
        gateways: CountWindow,
        open_alerts: Container[str],
        restarts: npt.NDArray[np.int64] | None = None,
    ) -> RuleResult:
        """The series' sla_breach verdicts, less those :func:`hold_back` holds back;
        ``restarts``: per series, the epoch minute its evidence counts from."""
        result = evaluate_series(
            self.window, self.config, self.calibration, self.rows, self.shares, restarts
        )
        return hold_back(result, self.window, gateways, open_alerts)


# A series opens an alert only when its failures since its change are this unlikely at the
# failure rate of the rest of its gateway over the same minutes (or the SLA, if higher).
# Strict, because the series tested are those whose CUSUM picked their worst stretch, out of
# many: at 0.01 a gateway-wide incident still opened alerts for 5 of 8 payments failing in
# a small country. A truly confined incident passes within minutes of its detection.
CONFINED_P_VALUE = 1e-4


def hold_back(
    series: RuleResult,
    series_window: CountWindow,
    gateways: CountWindow,
    open_alerts: Container[str],
) -> RuleResult:
    """``series`` without the new alerts of series no worse than the rest of their gateway.

    A gateway-wide incident lifts every series of the gateway: it is the gateway's alert
    (whose attribution line says where the failures are), not one more per method and
    country. A series alert opens when the series fails significantly more often than the
    other payments of its gateway since its change; one already open (in ``open_alerts``,
    by fingerprint) carries on. ``series_window`` and ``gateways`` cover the same minutes.
    """
    first_minute = series_window.end_minute - series_window.minutes
    active = series.active.copy()
    for i in np.flatnonzero(active):
        if fingerprint(series.identity(int(i))) in open_alerts:
            continue
        finding = series.finding(int(i))
        start = epoch_minute(finding.since) - first_minute
        row = gateways.gateways.index(series.gateways[i])
        n = int(series_window.payments[i, start:].sum())
        k = int(series_window.failures[i, start:].sum())
        rest_n = int(gateways.payments[row, start:].sum()) - n
        rest_k = int(gateways.failures[row, start:].sum()) - k
        rest_rate = max(rest_k / rest_n if rest_n > 0 else 0.0, finding.evidence.baseline or 0.0)
        active[i] = float(binomial_upper_tail(k, n, rest_rate)) < CONFINED_P_VALUE
    return replace(series, active=active)
