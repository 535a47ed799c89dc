"""Counts read straight into arrays, a chunk at a time: the same on every database, every
chunk size; and a read that fails in the detector (out of memory) reported as such."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, timedelta

import numpy as np
import pytest

from detector import source_arrays
from detector.config import Config, parse_config
from detector.engine import Engine
from detector.simulate import create_schema
from detector.source import ReadFailed, SqlSource
from detector.timeutil import epoch_minute

from .conftest import T0, PaymentsDb

# Names COPY's text format escapes (tab, backslash) beside plain ones.
GATEWAYS = ["stripe", "adyen", "pay\tpal", "back\\slash", None]
STATUSES = ["succeeded", "failed", "pending", "declined", "chargeback", None]
ERROR_CODES = ["card_declined", "timeout", None]
METHODS = ["card", "wallet", None]
MINUTES = 30


def _config(db: PaymentsDb) -> Config:
    source = {
        "url": db.url,
        "table": db.table,
        "columns": {"dimensions": {"method": "method"}},
        "statuses": {"declined": ["declined"]},
        "declines": {"error_codes": ["card_declined"]},
    }
    return parse_config({"source": source}, env={})


def _seed(db: PaymentsDb, rows: int = 1500) -> list[dict[str, object]]:
    """Seeded random payments over ``MINUTES`` minutes from T0, bad rows included."""
    rng = np.random.default_rng(14)
    written = []
    for _ in range(rows):
        at = T0 + timedelta(seconds=int(rng.integers(MINUTES * 60)))
        written.append(
            {
                "id": f"pay_{uuid.uuid4().hex[:20]}",
                "created_at": at.astimezone(UTC).replace(tzinfo=None),
                "gateway": GATEWAYS[int(rng.integers(len(GATEWAYS)))],
                "status": STATUSES[int(rng.integers(len(STATUSES)))],
                "error_code": ERROR_CODES[int(rng.integers(len(ERROR_CODES)))],
                "amount": 10,
                "currency": "USD",
                "method": METHODS[int(rng.integers(len(METHODS)))],
                "country": "US",
            }
        )
    with db.engine.begin() as connection:
        connection.execute(create_schema(db.engine, db.table).insert(), written)
    return written


def _expected(rows: list[dict[str, object]]) -> tuple[Counter[tuple[object, ...]], int]:
    """(gateway, minute, method, what) -> rows, counted here one payment at a time; and
    the rows a read skips."""
    counts: Counter[tuple[object, ...]] = Counter()
    skipped = 0
    for row in rows:
        status, gateway = row["status"], row["gateway"]
        if gateway is None or status not in ("succeeded", "failed", "pending", "declined"):
            skipped += 1
            continue
        at = row["created_at"]
        assert hasattr(at, "replace")
        key = (gateway, epoch_minute(at.replace(tzinfo=UTC)), row["method"] or "(none)")
        counts[(*key, "volume")] += 1
        if status != "pending":
            counts[(*key, "payments")] += 1
        declined = status == "declined" or (
            status == "failed" and row["error_code"] == "card_declined"
        )
        if status == "failed" and not declined:
            counts[(*key, "failures")] += 1
        if declined:
            counts[(*key, "declines")] += 1
    return counts, skipped


def _read(source: SqlSource) -> tuple[Counter[tuple[object, ...]], int]:
    counts = source.read(T0, T0 + timedelta(minutes=MINUTES), ("method",))
    detail = counts.detail
    assert detail is not None
    assert detail.values is not None
    got: Counter[tuple[object, ...]] = Counter()
    for what in ("volume", "payments", "failures", "declines"):
        for gateway, minute, method, n in zip(
            detail.gateway, detail.minute, detail.values[:, 0], getattr(detail, what), strict=True
        ):
            if n:
                got[(gateway, int(minute), method, what)] += int(n)
    return got, counts.invalid


@pytest.mark.parametrize("chunks", ["default", "tiny"])
def test_a_seeded_table_reads_exactly_its_counts_in_any_chunk_size(
    payments_db: PaymentsDb,
    open_source: Callable[[Config], SqlSource],
    monkeypatch: pytest.MonkeyPatch,
    chunks: str,
) -> None:
    if chunks == "tiny":  # every chunk boundary, mid-line ones of COPY's text included
        monkeypatch.setattr(source_arrays, "CHUNK_ROWS", 7)
        monkeypatch.setattr(source_arrays, "_COPY_CHUNK_BYTES", 64)
        monkeypatch.setattr(source_arrays, "_DUCKDB_VECTORS", 1)  # 2,048 rows
    rows = _seed(payments_db)
    expected, skipped = _expected(rows)
    got, invalid = _read(open_source(_config(payments_db)))
    assert got == expected
    assert invalid == skipped > 0
    assert {key[0] for key in got} == {"stripe", "adyen", "pay\tpal", "back\\slash"}


def test_the_rows_read_share_one_object_per_gateway_name(
    payments_db: PaymentsDb,
    open_source: Callable[[Config], SqlSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What keeps a read at a few bytes per row: no string is made per row, across chunks."""
    monkeypatch.setattr(source_arrays, "CHUNK_ROWS", 7)
    monkeypatch.setattr(source_arrays, "_COPY_CHUNK_BYTES", 64)
    _seed(payments_db, rows=300)
    counts = open_source(_config(payments_db)).read(T0, T0 + timedelta(minutes=MINUTES))
    assert counts.gateway.size > 50
    assert len({id(name) for name in counts.gateway}) == 4


def test_an_empty_range_reads_no_rows(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    counts = open_source(_config(payments_db)).read(T0, T0 + timedelta(minutes=5), ("method",))
    assert counts.gateway.size == 0
    assert counts.invalid == 0


def test_running_out_of_memory_in_a_read_fails_the_tick_with_the_cause_and_fires_source_down(
    sqlite_db: PaymentsDb,
    open_source: Callable[[Config], SqlSource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sqlite_db.steady("stripe", T0 - timedelta(minutes=30), 30, per_minute=5)
    config = parse_config(
        {
            "source": {"url": sqlite_db.url, "table": sqlite_db.table},
            "schedule": {"source_down_after": 2},
        },
        env={},
    )
    source = open_source(config)

    def out_of_memory(*_: object) -> None:
        raise MemoryError

    monkeypatch.setattr(source_arrays._Collector, "add", out_of_memory)
    engine = Engine(config, source)
    first = engine.tick(T0)
    assert first.error is not None
    assert first.error.startswith("cannot read payments: out of memory holding the counts from")
    assert "give the detector more memory" in first.error
    second = engine.tick(T0 + timedelta(minutes=1))
    assert [(t.alert.rule, t.event) for t in second.transitions] == [("source_down", "firing")]
    with pytest.raises(ReadFailed, match="out of memory"):
        source.read(T0 - timedelta(minutes=5), T0)

    monkeypatch.undo()  # memory again: the next tick reads and resolves source_down
    third = engine.tick(T0 + timedelta(minutes=2))
    assert third.error is None
    assert third.rows == 150
    assert ("source_down", "resolved") in [(t.alert.rule, t.event) for t in third.transitions]
