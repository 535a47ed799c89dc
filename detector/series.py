"""Per gateway x dimension series (``detection.sla_breach.series``).

With ``series: [[method], [country]]`` the SLA breach detector also watches (stripe,
method=card), (stripe, country=BR), ... Their per-minute counts come from the same read as
the gateways' (the database groups by gateway, minute and the dimension columns) and are
more rows of a count window of their own, so the CUSUM bank runs on all of them at once.
``sla_breach`` and ``outage`` run on them (:data:`~detector.rules.SERIES_RULES`); silences
and volume stay per gateway.

Each gateway's sla_breach budget is shared equally by the gateway and its series that are
watched (had ``series_min_payments`` final payments in the calibration history), so adding
series does not add false alerts.

A series opens an alert only when it fails significantly more often than the rest of its
gateway, and when no open or recent alert of an overlapping series of its gateway already
holds most of its excess failures (:func:`hold_back`): a gateway-wide incident is the
gateway's one alert, not one more per method and country, and an incident of card payments
in Brazil is one alert (``method=card`` or ``country=BR``, whichever fires first) whose
attribution line names the other.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from detector.alerts import AlertBook, fingerprint
from detector.config import Config
from detector.model import Counts, grouped_by_index
from detector.rules import (
    Calibration,
    Finding,
    Replay,
    RuleResult,
    SeriesRows,
    calibration_history,
    evaluate_series,
)
from detector.stats.binomial import binomial_upper_tail
from detector.timeutil import epoch_minute
from detector.window import CountWindow

__all__ = [
    "DimensionSeries",
    "Overlaps",
    "hold_back",
    "series_counts",
    "series_dimensions",
    "series_key",
]


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
    # Each row's gateway and values as integers (hashing, no sorting of strings).
    gateway = _factorized(detail.gateway)
    values = [_factorized(detail.values[:, i]) for i in range(len(detail.dimensions))]
    parts = []
    for grouping in groupings:
        columns = [detail.dimensions.index(label) for label in grouping]
        cell = gateway[0].astype(np.int64)
        for i in columns:
            cell = cell * len(values[i][1]) + values[i][0]
        # One key per distinct series, not per row: a tick reads a row per series and minute.
        distinct, where = np.unique(cell, return_inverse=True)
        first = np.zeros(distinct.size, dtype=np.int64)
        first[where.ravel()] = np.arange(cell.size)
        keys = np.array(
            [
                series_key(
                    str(gateway[1][gateway[0][row]]),
                    {
                        label: str(values[i][1][values[i][0][row]])
                        for label, i in zip(grouping, columns, strict=True)
                    },
                )
                for row in first
            ],
            dtype=object,
        )
        names, key_index = np.unique(keys.astype(str), return_inverse=True)
        parts.append(
            grouped_by_index(names, key_index.ravel()[where.ravel()], detail.minute, detail)
        )
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


def _factorized(
    column: npt.NDArray[Any],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.str_]]:
    """Each row's value as an integer, and the text of each integer: rows whose values
    read the same as text share one."""
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    names, merged = np.unique(np.array([str(u) for u in uniques], dtype=str), return_inverse=True)
    return np.asarray(merged.ravel()[codes], dtype=np.int64), names


class Overlaps:
    """What overlapping series share: per-minute counts per gateway and every series
    dimension at once (stripe, method=card, country=BR), for the payments of
    ``method=card`` that are also ``country=BR``.

    In a replay (``replay``) they are not kept: :meth:`excess`, seldom asked, cuts what it
    needs from the final counts' detail, which is what the window would hold."""

    def __init__(self, dimensions: tuple[str, ...], minutes: int, replay: Replay | None = None):
        self.dimensions = dimensions
        self.window = CountWindow(minutes)
        self.replay = replay
        # In a replay: the window's first minute and the end of what was read into it.
        self._replayed: tuple[int, int] | None = None
        self._gateways = np.zeros(0, dtype=object)
        self._values = np.zeros((0, len(dimensions)), dtype=object)

    def counts_of(self, counts: Counts) -> Counts:
        """The counts of a read (from its ``detail``) per gateway and every dimension."""
        detail = counts.detail if counts.detail is not None else Counts.empty()
        return series_counts(detail, (self.dimensions,))

    def update(
        self, first_minute: int, end_minute: int, counts: Counts, read_end: int | None = None
    ) -> None:
        """Take a read's counts for the minutes it covers (in a replay, ``read_end``: the
        minute before which it counted)."""
        if self.replay is not None and read_end is not None:
            self._replayed = (end_minute - self.window.minutes, read_end)
            return
        self.window.advance(end_minute)
        self.window.replace(first_minute, end_minute, self.counts_of(counts))
        known = len(self._gateways)
        if known < len(self.window.gateways):  # a window only ever adds rows
            parsed = [_parse_key(key) for key in self.window.gateways[known:]]
            added = np.array([gateway for gateway, _ in parsed], dtype=object)
            values = np.array(
                [[labels[d] for d in self.dimensions] for _, labels in parsed], dtype=object
            ).reshape(len(parsed), len(self.dimensions))
            self._gateways = np.concatenate([self._gateways, added])
            self._values = np.concatenate([self._values, values])

    def counts(self, gateway: str, labels: Mapping[str, str], start: int) -> tuple[int, int]:
        """The payments and failures of ``gateway``'s payments with all of ``labels``, from
        column ``start`` of the window on."""
        if self.replay is not None and self._replayed is not None:
            first, end = self._replayed
            detail = self.replay.final(first + start, end).detail
            if detail is None or detail.values is None:
                return 0, 0
            rows = detail.gateway == gateway
            for name, value in labels.items():
                rows &= detail.values[:, detail.dimensions.index(name)] == value
            return int(detail.payments[rows].sum()), int(detail.failures[rows].sum())
        rows = self._gateways == gateway
        for name, value in labels.items():
            rows &= self._values[:, self.dimensions.index(name)] == value
        payments = int(self.window.payments[rows, start:].sum())
        return payments, int(self.window.failures[rows, start:].sum())

    def excess(self, gateway: str, labels: Mapping[str, str], start: int, rate: float) -> float:
        """Failures above ``rate`` of ``gateway``'s payments with all of ``labels``, from
        column ``start`` of the window on."""
        payments, failures = self.counts(gateway, labels, start)
        return failures - rate * payments


class DimensionSeries:
    """The dimension series' count window and their verdicts, tick after tick.

    Each tick: :meth:`update` with the read, then :attr:`shares` for the gateways'
    calibration, :meth:`verdicts` for the raw verdicts of each series rule and
    :meth:`hold_back` on each of them just before the alert book takes it.
    """

    def __init__(self, config: Config, minutes: int, replay: Replay | None = None):
        self.config = config
        self.groupings = config.detection.sla_breach.series
        self.dimensions = series_dimensions(config)
        self.window = CountWindow(minutes)
        # Series of one grouping never share a payment; those of two groupings may.
        self.overlaps = (
            Overlaps(self.dimensions, minutes, replay) if len(self.groupings) > 1 else None
        )
        # In a replay, the series' counts cut from the final ones, so that their rules
        # compute an hour of ticks at once as the gateways' do; and each read's are cut
        # from them too, rather than counted anew every tick.
        self.replay = None if replay is None else replay.derived(self._of_read)
        self._rules: list[str] = []  # the series rules evaluated at the last tick
        self.calibration = Calibration()
        self.rows = SeriesRows([], [], np.zeros(0, dtype=bool))
        self._parsed: dict[str, tuple[str, dict[str, str]]] = {}
        # The window the last verdicts judged (see :meth:`verdicts`).
        self.judged = self.window

    def _of_read(self, counts: Counts) -> Counts:
        """The series' counts in a read (from its ``detail``)."""
        detail = counts.detail if counts.detail is not None else Counts.empty()
        return series_counts(detail, self.groupings)

    def update(
        self, first_minute: int, end_minute: int, counts: Counts, read_end: int | None = None
    ) -> None:
        """Take the series' share of a read (its ``detail``) for the same minutes; in a
        replay, ``read_end`` is the minute before which the read counted (its end, floored)."""
        self.window.advance(end_minute)
        series = (
            self.replay.final(first_minute, read_end)
            if self.replay is not None and read_end is not None
            else self._of_read(counts)
        )
        self.window.replace(first_minute, end_minute, series)
        if self.overlaps is not None:
            self.overlaps.update(first_minute, end_minute, counts, read_end)
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
        restarts: npt.NDArray[np.int64] | None = None,
        judged: CountWindow | None = None,
        lateness: npt.NDArray[np.int64] | None = None,
    ) -> dict[str, RuleResult]:
        """Per series rule, its verdicts on the series before :meth:`hold_back`;
        ``restarts``: per series, the epoch minute its sla_breach evidence counts from;
        ``judged``: the window judged, where it is not :attr:`window` as read (minutes not
        settled yet with their pending rows counted, as their gateways'); ``lateness``: per
        series, how many minutes late its gateway's rows arrive (None: on time)."""
        self.judged = self.window if judged is None else judged
        results = evaluate_series(
            self.judged,
            self.config,
            self.calibration,
            self.rows,
            self.shares,
            restarts,
            self.replay,
            lateness,
        )
        self._rules = [result.rule for result in results]
        return {result.rule: result for result in results}

    def quiet(self, end_minute: int) -> bool:
        """Whether a replay knows that no series rule is active for any series in the window
        ending before ``end_minute`` (see :meth:`Replay.quiet`)."""
        return (
            self.replay is not None
            and bool(self._rules)
            and self.replay.quiet(end_minute, self._rules)
        )

    def hold_back(self, result: RuleResult, gateways: CountWindow, book: AlertBook) -> RuleResult:
        """``result`` less the new alerts :func:`hold_back` holds back, as ``book`` stands,
        on the series' window as the last :meth:`verdicts` judged it (``gateways`` judged
        the same way)."""
        return hold_back(result, self.judged, gateways, book, self.overlaps)

    def explains(
        self,
        gateway: str,
        segment: Mapping[str, str],
        target: Mapping[str, str],
        since: datetime,
        rate: float,
        gateways: CountWindow,
    ) -> bool:
        """Whether an incident of ``gateway``'s ``segment`` (a series' labels) explains a
        failure-rate alert of its ``target`` series ({} for the gateway itself) since
        ``since``: the target's payments outside the segment do not fail significantly
        more often than ``rate`` (:data:`ALONE_P_VALUE`). ``gateways`` covers the same
        minutes as the series' window.

        The gateway's breach during Brazil's outage is Brazil's when the rest of the
        gateway is healthy, and an incident of its own when the rest fails too.
        """
        if segment.items() <= target.items():
            return True  # the target's payments are all the segment's
        if any(target.get(key, value) != value for key, value in segment.items()):
            return False  # e.g. country=BR and country=US share no payment
        start = max(0, epoch_minute(since) - (self.window.end_minute - self.window.minutes))
        if target:
            total = _row_counts(self.window, series_key(gateway, target), start)
            if self.overlaps is None:  # one grouping: its series either match or never meet
                return False
            shared = self.overlaps.counts(gateway, {**target, **segment}, start)
        else:
            total = _row_counts(gateways, gateway, start)
            shared = _row_counts(self.window, series_key(gateway, segment), start)
        payments, failures = total[0] - shared[0], total[1] - shared[1]
        return float(binomial_upper_tail(failures, payments, rate)) >= ALONE_P_VALUE


def _row_counts(window: CountWindow, key: str, start: int) -> tuple[int, int]:
    """The payments and failures of ``window``'s row ``key`` from column ``start`` on."""
    row = window.row(key)
    if row is None:
        return 0, 0
    return int(window.payments[row, start:].sum()), int(window.failures[row, start:].sum())


# A series opens an alert only when its failures since its change are this unlikely at the
# failure rate of the rest of its gateway over the same minutes (or the SLA, if higher).
# Strict, because the series tested are those whose CUSUM picked their worst stretch, out of
# many: at 0.01 a gateway-wide incident still opened alerts for 5 of 8 payments failing in
# a small country. A truly confined incident passes within minutes of its detection.
CONFINED_P_VALUE = 1e-4

# A series opens no alert while an overlapping series' alert holds at least this share of
# its failures above the SLA: most of its incident is already told.
EXPLAINED_SHARE = 0.5

# The rest of a gateway (or series) outside a segment in an incident breaches on its own,
# so that the segment's alert does not explain (and mute) the gateway's, when its failures
# since the gateway's alert began are this unlikely at the SLA. Strict, because the test is
# repeated every tick while the segment's incident lasts and one chance pass notifies the
# gateway's alert; an unrelated breach of the rest passes it within minutes.
ALONE_P_VALUE = 1e-3

# The series rules whose alerts tell an incident that an overlapping series would repeat.
_TELLING_RULES = ("sla_breach", "outage")


def hold_back(
    series: RuleResult,
    series_window: CountWindow,
    gateways: CountWindow,
    book: AlertBook,
    overlaps: Overlaps | None = None,
) -> RuleResult:
    """``series`` without the new alerts that repeat an incident another alert tells.

    A gateway-wide incident lifts every series of the gateway: it is the gateway's alert
    (whose attribution line says where the failures are), not one more per method and
    country. So a series alert opens only when the series fails significantly more often
    than the other payments of its gateway since its change.

    An incident of card payments in Brazil lifts both ``method=card`` and ``country=BR``:
    the first of them to open tells it, with the other in its attribution line. So a series
    alert does not open while an alert of an overlapping series of the same gateway (either
    series rule), open or resolved since the series' change, holds at least
    :data:`EXPLAINED_SHARE` of its failures above the SLA since that change (``overlaps``
    counts the shared payments). Of the series opening on the same tick, the most specific
    (most labels, then fewest payments) goes first and may hold back the others.

    An alert already open in ``book`` carries on. ``series_window``, ``gateways`` and
    ``overlaps`` cover the same minutes.
    """
    first_minute = series_window.end_minute - series_window.minutes
    active = series.active.copy()
    opening: list[tuple[int, int, int, Finding, int, float]] = []
    for index in np.flatnonzero(active):
        i = int(index)
        if fingerprint(series.identity(i)) in book.alerts:
            continue
        finding = series.finding(i)
        start = epoch_minute(finding.since) - first_minute
        row = gateways.gateways.index(series.gateways[i])
        n = int(series_window.payments[i, start:].sum())
        k = int(series_window.failures[i, start:].sum())
        rest_n = int(gateways.payments[row, start:].sum()) - n
        rest_k = int(gateways.failures[row, start:].sum()) - k
        baseline = finding.evidence.baseline or 0.0
        rest_rate = max(rest_k / rest_n if rest_n > 0 else 0.0, baseline)
        active[i] = float(binomial_upper_tail(k, n, rest_rate)) < CONFINED_P_VALUE
        if active[i]:
            opening.append((-len(finding.series), n, i, finding, start, k - baseline * n))
    if not opening or overlaps is None:
        return replace(series, active=active)
    told = _told(book)
    for *_, i, finding, start, excess in sorted(opening, key=lambda o: o[:3]):
        gateway, labels = series.gateways[i], dict(finding.series)
        if _explained(overlaps, told.get(gateway, []), gateway, labels, finding, start, excess):
            active[i] = False
        else:
            told.setdefault(gateway, []).append((labels, None))
    return replace(series, active=active)


def _explained(
    overlaps: Overlaps,
    told: list[tuple[dict[str, str], datetime | None]],
    gateway: str,
    labels: dict[str, str],
    finding: Finding,
    start: int,
    excess: float,
) -> bool:
    """Whether an alert of a series in ``told`` (of ``gateway``, open or resolved since the
    finding's change) overlaps ``labels`` on at least :data:`EXPLAINED_SHARE` of its
    ``excess`` failures (above the SLA from column ``start`` on)."""
    if excess <= 0:
        return False
    rate = finding.evidence.baseline or 0.0
    for other, until in told:
        if other == labels or (until is not None and until <= finding.since):
            continue
        if any(other.get(key, value) != value for key, value in labels.items()):
            continue  # e.g. method=card and method=wallet share no payment
        shared = overlaps.excess(gateway, {**labels, **other}, start, rate)
        if shared >= EXPLAINED_SHARE * excess:
            return True
    return False


def _told(book: AlertBook) -> dict[str, list[tuple[dict[str, str], datetime | None]]]:
    """Per gateway, the series of its open and resolved series alerts, with when each
    resolved (None while open)."""
    told: dict[str, list[tuple[dict[str, str], datetime | None]]] = {}
    alerts = [(a.labels, None) for a in book.alerts.values()]
    resolutions = [(r.labels, r.at) for r in book.resolved.values()]
    for labels, until in alerts + resolutions:
        series = {k: v for k, v in labels.items() if k not in ("rule", "gateway")}
        if series and labels["rule"] in _TELLING_RULES and "gateway" in labels:
            told.setdefault(labels["gateway"], []).append((series, until))
    return told
