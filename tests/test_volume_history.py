"""The volume rules' weeks of quarter hours: kept up to date by reading only what is new (and
what late rows may have changed), equal to reading the weeks whole, and read back from the
state store after a restart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from detector.config import CalendarConfig, Config, parse_config
from detector.engine import Engine
from detector.model import Counts
from detector.rules import VolumeHistory, seasonal
from detector.rules.quarter_hours import HISTORY_SLOTS, QuarterHourRead, QuarterHourTable
from detector.service.web import WebServer
from detector.simulate import create_schema
from detector.source import FrameSource, Source, SourceError, SqlSource
from detector.store import StateStore
from detector.timeutil import epoch_minute

from .conftest import Clock, PaymentsDb, in_process_daemon

DAY = datetime(2026, 3, 2, tzinfo=UTC)
GATEWAYS = ("stripe", "adyen", "paypal")


MINUTES_A_DAY = 24 * 60


class Recording:
    """A source that notes the span of every quarter-hourly read (in epoch minutes), and
    fails those it is told to (:attr:`failing`: from their start) and, as a query timeout
    would, those longer than :attr:`longest` minutes."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.queries: list[tuple[int, int]] = []
        self.failing: set[int] = set()
        self.longest: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def quarter_hourly(self, start: datetime, end: datetime) -> Counts:
        span = (epoch_minute(start), epoch_minute(end))
        self.queries.append(span)
        too_long = self.longest is not None and span[1] - span[0] > self.longest
        if too_long or span[0] in self.failing:
            self.failing.discard(span[0])
            raise SourceError("query timed out after 0.5s")
        return self.source.quarter_hourly(start, end)

    @property
    def spans(self) -> list[tuple[int, int]]:
        """The reads, a read of several days (one query per UTC day, each ending at
        midnight or at the read's end) as one span."""
        spans: list[tuple[int, int]] = []
        for first, end in self.queries:
            assert first < end <= (first // MINUTES_A_DAY + 1) * MINUTES_A_DAY
            if spans and spans[-1][1] == first and first % MINUTES_A_DAY == 0:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((first, end))
        return spans


def _insert(db: PaymentsDb, rows: list[dict[str, object]]) -> None:
    with db.engine.begin() as connection:
        connection.execute(create_schema(db.engine, db.table).insert(), rows)


def _row(gateway: str, at: datetime, status: str) -> dict[str, object]:
    return {
        "id": f"pay_{gateway}_{at.timestamp():.6f}_{status}",
        "created_at": at.astimezone(UTC).replace(tzinfo=None),
        "gateway": gateway,
        "status": status,
        "error_code": "timeout" if status == "failed" else None,
        "amount": 10,
        "currency": "USD",
        "method": "card",
        "country": "US",
    }


def _seeded_rows(rng: np.random.Generator, start: datetime, hours: int) -> list[dict[str, object]]:
    """A few payments per gateway and quarter hour (none some quarters), some failed or
    pending; "paypal" starts a day late."""
    rows = []
    for quarter in range(hours * 4):
        for g, gateway in enumerate(GATEWAYS):
            at = start + timedelta(minutes=15 * quarter)
            if gateway == "paypal" and at < start + timedelta(days=1):
                continue
            for k in range(int(rng.poisson(3 + g))):
                status = str(rng.choice(["succeeded", "failed", "pending"], p=[0.8, 0.15, 0.05]))
                rows.append(_row(gateway, at + timedelta(seconds=k * 7 + g), status))
    return rows


def _full_read(source: Source, hour: int, config: Config) -> VolumeHistory:
    """The history of the weeks before ``hour`` read whole, as one GROUP BY."""
    start = datetime.fromtimestamp((hour - VolumeHistory.hours_needed()) * 3600, UTC)
    counts = source.quarter_hourly(start, datetime.fromtimestamp(hour * 3600, UTC))
    return VolumeHistory(hour, counts, config.calendar)


def _assert_same(kept: VolumeHistory, whole: VolumeHistory, gateways: list[str]) -> None:
    assert kept.end_hour == whole.end_hour
    (a, seen_a), (b, seen_b) = kept.table.per_slot(gateways), whole.table.per_slot(gateways)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(seen_a, seen_b)
    season, expected = kept.season(gateways), whole.season(gateways)
    np.testing.assert_array_equal(season.usual, expected.usual)
    np.testing.assert_array_equal(season.levels, expected.levels)
    np.testing.assert_array_equal(season.size, expected.size)


def test_the_hourly_history_read_incrementally_equals_the_weeks_read_whole(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    rng = np.random.default_rng(14)
    _insert(payments_db, _seeded_rows(rng, DAY, hours=48))
    # Rows of a status no list names only mark a gateway as seen.
    _insert(payments_db, [_row("ghost", DAY + timedelta(hours=30, minutes=5), "TIMEOUT")])
    config = parse_config({"source": {"url": payments_db.url, "table": payments_db.table}}, env={})
    source = Recording(open_source(config))
    engine = Engine(config, source)
    now = DAY + timedelta(hours=40, seconds=30)
    engine.tick(now)
    assert engine.volume_history is not None
    hour = engine.volume_history.end_hour
    for step in range(1, 4):
        # Rows 20 minutes late for the quarter hours before the last read's end: within
        # source.max_late_arrival, so the next hour's read re-reads those quarter hours.
        late = DAY + timedelta(hours=40 + step - 1) - timedelta(minutes=20)
        _insert(
            payments_db, [_row("stripe", late + timedelta(seconds=i), "failed") for i in (1, 2)]
        )
        now += timedelta(hours=1)
        engine.tick(now)
        assert engine.volume_history.end_hour == hour + step
        gateways = [*GATEWAYS, "ghost", "nobody"]
        _assert_same(
            engine.volume_history, _full_read(source.source, hour + step, config), gateways
        )
    # The first read covered the weeks; each later one its hour and the hour before it.
    assert source.spans == [
        ((hour - VolumeHistory.hours_needed()) * 60, hour * 60),
        *(((hour + s - 2) * 60, (hour + s) * 60) for s in range(1, 4)),
    ]


def _day_counts(rng: np.random.Generator, first_slot: int, end_slot: int) -> Counts:
    """Random counts of some gateways in some quarter hours of ``[first_slot, end_slot)``;
    a gateway named by the day's slot joins on that day."""
    slots = np.arange(first_slot, end_slot)
    names = np.array([*GATEWAYS, f"new-{first_slot}"], dtype=object)
    gateway, slot = (a.ravel() for a in np.meshgrid(names, slots, indexing="ij"))
    keep = rng.random(gateway.size) < 0.7
    volume = rng.integers(1, 50, gateway.size)[keep]
    return Counts(
        gateway[keep], slot[keep] * 15, volume // 2, volume // 5, volume, declines=volume // 7
    )


@pytest.mark.parametrize("base", ["first read", "incremental"])
def test_a_read_of_several_days_fills_one_table_as_a_day_at_a_time_would(base: str) -> None:
    """The table of a read taken a day per query, and of one cut short by a failing day,
    holds the same gateways in the same order and the same cells as the tables each day's
    update would make."""
    rng = np.random.default_rng(7)
    day = 96
    end_slot = 20_000 * day + 40  # not on a midnight: the first and last days are partial
    table = None
    if base == "incremental":
        table = QuarterHourTable.empty(end_slot - day).updated(
            end_slot - day - HISTORY_SLOTS,
            end_slot - day,
            _day_counts(rng, end_slot - 2 * day, end_slot - day),
        )
    first_slot = end_slot - HISTORY_SLOTS if table is None else end_slot - day - 4
    parts, chunk = [], first_slot
    while chunk < end_slot:
        chunk_end = min(end_slot, (chunk // day + 1) * day)
        parts.append((chunk, chunk_end, _day_counts(rng, chunk, chunk_end)))
        chunk = chunk_end
    assert len(parts) >= 2
    for cut in range(1, len(parts) + 1):
        expected, read = table, QuarterHourRead(table, first_slot, end_slot)
        for start, end, counts in parts[:cut]:
            expected = (expected or QuarterHourTable.empty(end)).updated(start, end, counts)
            read.add(end, counts)
        got = read.table()
        assert expected is not None
        assert (got.end_slot, got.gateways) == (expected.end_slot, expected.gateways)
        np.testing.assert_array_equal(got.cells, expected.cells)


def test_a_restarted_daemon_reads_back_the_weeks_and_then_only_the_hours_since(
    sqlite_db: PaymentsDb, state_url: str, session: requests.Session
) -> None:
    rng = np.random.default_rng(3)
    _insert(sqlite_db, _seeded_rows(rng, DAY, hours=30))
    config = parse_config({"source": {"url": sqlite_db.url, "table": sqlite_db.table}}, env={})
    clock = Clock(DAY + timedelta(hours=26, minutes=10))
    with in_process_daemon(config, state_url, clock, session) as daemon:
        daemon.tick()
        first = daemon.engine.volume_history
        assert first is not None
        assert first.end_hour == epoch_minute(clock.now) // 60
    # Down for two hours, during which more payments arrive.
    _insert(
        sqlite_db, [_row("adyen", DAY + timedelta(hours=27, minutes=m), "failed") for m in range(3)]
    )
    clock.now += timedelta(hours=2)
    with in_process_daemon(config, state_url, clock, session) as daemon:
        restored = daemon.engine.quarter_hours
        assert restored is not None
        assert restored.end_slot == first.end_hour * 4
        source = Recording(daemon.engine.source)
        daemon.engine.source = source
        daemon.tick()
        history = daemon.engine.volume_history
        assert history is not None
        assert history.end_hour == first.end_hour + 2
        # Only the gap since the saved weeks, from as far back as rows may arrive late.
        assert source.spans == [((first.end_hour - 1) * 60, history.end_hour * 60)]
        _assert_same(history, _full_read(source.source, history.end_hour, config), list(GATEWAYS))
    # Another table is another history: the saved weeks are not used for it.
    other = parse_config(
        {
            "source": {
                "url": sqlite_db.url,
                "table": sqlite_db.table,
                "statuses": {"pending": ["pending", "processing"]},
            }
        },
        env={},
    )
    store = StateStore.open(state_url)
    try:
        assert store.load_history(Engine(other, source.source).history_key) is None
        assert store.load_history(Engine(config, source.source).history_key) is not None
    finally:
        store.engine.dispose()


def test_a_reload_keeps_the_weeks_read_unless_the_source_settings_change() -> None:
    counts = Counts(
        np.array(["stripe"] * 3, dtype=object),
        np.array([0, 1, 2]) * 15 + epoch_minute(DAY),
        np.array([4, 5, 6]),
        np.array([0, 1, 0]),
        np.array([4, 5, 6]),
    )
    config = parse_config({}, env={})
    source = Recording(FrameSource(counts))
    engine = Engine(config, source)
    engine.tick(DAY + timedelta(hours=5, seconds=30))
    hour = epoch_minute(DAY) // 60 + 5
    same = engine.reconfigured(parse_config({"detection": {"false_alerts": 0.5}}, env={}), source)
    same.tick(DAY + timedelta(hours=5, minutes=1))
    other = engine.reconfigured(parse_config({"source": {"table": "orders"}}, env={}), source)
    other.tick(DAY + timedelta(hours=5, minutes=1))
    weeks = VolumeHistory.hours_needed() * 60
    # The first read and the reloaded one with another table cover the weeks; the reload
    # with the same source reads only its last hour again.
    assert source.spans == [
        (hour * 60 - weeks, hour * 60),
        ((hour - 1) * 60, hour * 60),
        (hour * 60 - weeks, hour * 60),
    ]
    assert same.volume_history is not None
    assert same.volume_history.table.per_slot(["stripe"])[0][1, 0, -20:-17].tolist() == [4, 5, 6]


def test_weeks_of_history_that_no_query_could_read_whole_are_read_a_day_at_a_time(
    sqlite_db: PaymentsDb, tmp_path: Path, session: requests.Session
) -> None:
    """On a large table or a loaded database a four-week GROUP BY may not fit the query
    timeout; a day does. A day that fails is read on the next tick, and the days before it
    are not read again."""
    rng = np.random.default_rng(5)
    _insert(sqlite_db, _seeded_rows(rng, DAY - timedelta(days=8), hours=8 * 24 + 10))
    config = parse_config({"source": {"url": sqlite_db.url, "table": sqlite_db.table}}, env={})
    clock = Clock(DAY + timedelta(hours=10, seconds=30))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with in_process_daemon(config, state, clock, session) as daemon:
        server = WebServer(("127.0.0.1", 0), daemon).start()
        try:
            source = Recording(daemon.engine.source)
            source.longest = 2 * MINUTES_A_DAY
            daemon.engine.source = source
            failing = epoch_minute(DAY - timedelta(days=3))
            source.failing.add(failing)
            daemon.tick()
            assert daemon.engine.volume_history is None
            loading = _stripe_on_the_status_page(server)
            assert "expected-band" not in loading
            assert "the weeks of volume history are still being read" in loading

            clock.now += timedelta(seconds=10)
            daemon.tick()
            history = daemon.engine.volume_history
            assert history is not None
            _assert_same(history, _full_read(source.source, history.end_hour, config), ["stripe"])
            assert 'class="expected-band"' in _stripe_on_the_status_page(server)
        finally:
            server.stop()
    weeks = VolumeHistory.hours_needed() * 60
    end = history.end_hour * 60
    # The weeks up to the day that failed; from that day on (with the quarter hours late
    # rows may change) on the next tick.
    assert source.spans == [(end - weeks, failing + MINUTES_A_DAY), (failing - 60, end)]
    assert all(b - a <= MINUTES_A_DAY for a, b in source.queries)


def _stripe_on_the_status_page(server: WebServer) -> str:
    host, port = server.address
    page = requests.get(f"http://{host}:{port}/", timeout=10).text
    return page.split('id="gw-stripe"')[1].split("</section>")[0]


@pytest.mark.parametrize(
    ("block", "busiest"),
    [(256, 0), (5, 0), (256, 2**24)],
    ids=["one block", "blocks of 5 gateways", "counts past float32"],
)
def test_an_hour_on_the_seasonal_fit_from_the_hour_before_equals_one_fitted_anew(
    block: int, busiest: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Five weeks of quarter hours, gateways starting at different times, a time zone with a
    # change of the clocks and declared days; each hour the last hour's quarter hours
    # change (late rows). The history made from the hour before reuses its usual volumes,
    # and must give exactly what a history fitted from nothing gives: fitted a block of
    # gateways at a time, and with counts a float32 cannot hold exactly (the hour before's
    # volume is then compared in float64).
    one_block = {}
    if block != 256:
        monkeypatch.setattr(seasonal, "_SEASON_BLOCK", block)
    rng = np.random.default_rng(21)
    names = [f"gw{g}" for g in range(12)]
    end_hour = epoch_minute(datetime(2026, 3, 30, 6, tzinfo=UTC)) // 60
    calendar = CalendarConfig.model_validate(
        {
            "timezone": "Europe/Berlin",
            "days": [{"date": "2026-03-20", "volume": 2}, {"date": "2026-03-25"}],
        }
    )
    first_slot = end_hour * 4 - HISTORY_SLOTS
    hours = 6
    daily = 1 + 0.5 * np.sin(np.arange(HISTORY_SLOTS + 4 * hours) / 96 * 2 * np.pi)
    volume = rng.poisson(rng.uniform(0.5, 40, (len(names), 1)) * daily)
    starts = rng.integers(0, 3000, len(names))
    starts[:4] = 0
    # One gateway's only early quarter hour leaves the weeks in the second hour: the empty
    # days after it become unknown (before its first payment), not zero.
    starts[4], volume[4, :3000] = 2, 0
    volume[4, 2] = 5
    volume[0] += busiest
    previous = None
    for hour in range(end_hour, end_hour + hours):
        offset = hour * 4 - HISTORY_SLOTS - first_slot
        columns = np.arange(offset, offset + HISTORY_SLOTS)
        cells = np.zeros((5, len(names), HISTORY_SLOTS), dtype=np.int32)
        counts = volume[:, columns] + (columns >= columns[-4]) * (hour - end_hour)
        present = (columns[None, :] >= starts[:, None]) & (counts > 0)
        cells[0] = cells[1] = np.where(present, counts, 0)
        cells[4] = present  # volume, payments, failures, declines, any row
        table = QuarterHourTable(hour * 4, tuple(names), cells)
        kept = VolumeHistory(hour, table, calendar, previous=previous)
        anew = VolumeHistory(hour, table, calendar)
        season, expected = kept.season(names), anew.season(names)
        np.testing.assert_array_equal(season.usual, expected.usual)
        np.testing.assert_array_equal(season.levels, expected.levels)
        np.testing.assert_array_equal(season.size, expected.size)
        if block != 256 and not one_block:  # the same fit as of all gateways at once
            with monkeypatch.context() as patch:
                patch.setattr(seasonal, "_SEASON_BLOCK", 256)
                one_block["season"] = VolumeHistory(hour, table, calendar).season(names)
            np.testing.assert_array_equal(expected.usual, one_block["season"].usual)
            np.testing.assert_array_equal(expected.size, one_block["season"].size)
        assert np.isfinite(season.usual).any()
        assert np.isnan(season.usual).any()
        previous = kept
