"""The payments source and one engine tick, against SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pytest
import sqlalchemy as sa

from detector.config import Config, parse_config
from detector.db import connect
from detector.engine import Engine
from detector.source import SchemaError, SqlSource
from detector.timeutil import epoch_minute

from .conftest import T0, PaymentsDb


def _config(
    db: PaymentsDb, *, columns: dict[str, object] | None = None, **detection: object
) -> Config:
    source: dict[str, object] = {"url": db.url, "table": db.table}
    if columns is not None:
        source["columns"] = columns
    return parse_config({"source": source, "detection": detection}, env={})


def _with_dimensions(db: PaymentsDb, **detection: object) -> Config:
    dimensions = {"method": "method", "country": "country"}
    return _config(db, columns={"dimensions": dimensions}, **detection)


def test_counts_are_grouped_by_gateway_and_minute(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.add("stripe", T0, succeeded=7, failed=3, pending=2)
    payments_db.add("stripe", T0 + timedelta(minutes=1), succeeded=4)
    payments_db.add("adyen", T0, failed=1)
    counts = open_source(_config(payments_db)).read(
        T0 - timedelta(minutes=5), T0 + timedelta(minutes=5)
    )

    got = {
        (g, int(m - epoch_minute(T0))): (int(p), int(f), int(v))
        for g, m, p, f, v in zip(
            counts.gateway,
            counts.minute,
            counts.payments,
            counts.failures,
            counts.volume,
            strict=True,
        )
    }
    # Pending payments count as volume but not in the failure rate's denominator.
    assert got == {("stripe", 0): (10, 3, 12), ("stripe", 1): (4, 0, 4), ("adyen", 0): (1, 1, 1)}
    assert counts.invalid == 0


def test_bad_rows_are_counted_and_skipped(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.add("stripe", T0, succeeded=5, other={"chargeback": 2, None: 1})
    payments_db.add(None, T0, succeeded=4)
    counts = open_source(_config(payments_db)).read(T0, T0 + timedelta(minutes=1))
    assert counts.gateway.tolist() == ["stripe"]
    assert counts.payments.tolist() == [5]
    assert counts.invalid == 7


def test_read_covers_exactly_the_requested_range(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.add("stripe", T0 - timedelta(seconds=1), failed=1)
    payments_db.add("stripe", T0, succeeded=2)
    payments_db.add("stripe", T0 + timedelta(minutes=3), succeeded=8)
    counts = open_source(_config(payments_db)).read(T0, T0 + timedelta(minutes=3))
    assert int(counts.payments.sum()) == 2
    assert int(counts.failures.sum()) == 0


def test_evidence_lists_top_error_codes_and_failed_ids(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.add("stripe", T0, failed=5, error_code="gateway_timeout")
    payments_db.add("stripe", T0, failed=2, error_code="card_declined")
    payments_db.add("adyen", T0, failed=9, error_code="do_not_honor")
    codes, ids = open_source(_config(payments_db)).evidence(
        "stripe", T0, T0 + timedelta(minutes=2), limit=3
    )
    assert codes == (("gateway_timeout", 5), ("card_declined", 2))
    assert len(ids) == 3
    assert all(i.startswith("pay_") for i in ids)


def test_breakdown_counts_payments_per_combination_of_dimensions(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.add("stripe", T0, succeeded=6, failed=4, method="card", country="BR")
    payments_db.add("stripe", T0, succeeded=5, pending=3, method="card", country="US")
    payments_db.add("stripe", T0, failed=1, method=None, country="US")
    payments_db.add("adyen", T0, failed=9, method="card", country="BR")
    payments_db.add("stripe", T0 + timedelta(minutes=5), failed=7, method="card", country="BR")
    breakdown = open_source(_with_dimensions(payments_db)).breakdown(
        "stripe", T0, T0 + timedelta(minutes=5)
    )
    assert breakdown is not None
    assert breakdown.dimensions == ("method", "country")
    got = {
        tuple(values): (int(n), int(k))
        for values, n, k in zip(
            breakdown.values.tolist(), breakdown.payments, breakdown.failures, strict=True
        )
    }
    # Pending payments are not final; a NULL value reads "(none)".
    assert got == {("card", "BR"): (10, 4), ("card", "US"): (5, 0), ("(none)", "US"): (1, 1)}


def test_evidence_of_a_series_is_its_own_payments(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.add("stripe", T0, failed=4, error_code="gateway_timeout", method="card")
    payments_db.add("stripe", T0, failed=2, error_code="card_declined", method="wallet")
    payments_db.add("stripe", T0, failed=1, error_code="do_not_honor", method=None)
    source = open_source(_with_dimensions(payments_db))
    end = T0 + timedelta(minutes=1)
    codes, ids = source.evidence("stripe", T0, end, series={"method": "card"})
    assert (codes, len(ids)) == ((("gateway_timeout", 4),), 4)
    codes, ids = source.evidence("stripe", T0, end, series={"method": "(none)"})
    assert (codes, len(ids)) == ((("do_not_honor", 1),), 1)
    codes, _ = source.evidence("stripe", T0, end, series={"method": "card", "country": "BR"})
    assert codes == ()


def test_no_breakdown_without_dimensions(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.add("stripe", T0, failed=3)
    source = open_source(_config(payments_db))
    assert source.breakdown("stripe", T0, T0 + timedelta(minutes=1)) is None


def test_a_missing_dimension_column_names_its_key_path(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    config = _config(payments_db, columns={"dimensions": {"method": "payment_method"}})
    with pytest.raises(
        SchemaError,
        match=r"source\.columns\.dimensions\.method: column 'payment_method' not found",
    ):
        open_source(config).check()


def test_a_misspelt_column_names_its_key_path(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    config = _config(payments_db, columns={"status": "state"})
    source = open_source(config)
    with pytest.raises(SchemaError, match=r"source\.columns\.status: column 'state' not found"):
        source.check()


def test_the_source_connection_cannot_write(payments_db: PaymentsDb) -> None:
    engine = connect(payments_db.url)
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as connection:
        connection.execute(sa.text(f"DELETE FROM {payments_db.table}"))
    engine.dispose()


def test_engine_fires_and_resolves_an_outage_on_each_database(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    payments_db.steady("stripe", T0 - timedelta(hours=1), minutes=60, per_minute=10)
    config = _config(payments_db, sla_breach={"enabled": False})  # the outage rule alone
    engine = Engine(config, open_source(config))
    assert engine.tick(T0).transitions == []

    payments_db.steady("stripe", T0, minutes=1, per_minute=10, failed=10)
    fired = engine.tick(T0 + timedelta(minutes=1))
    assert [(t.event, t.alert.rule, t.alert.labels["gateway"]) for t in fired.transitions] == [
        ("firing", "outage", "stripe")
    ]
    evidence = fired.transitions[0].alert.evidence
    assert (evidence.failures, evidence.payments) == (10, 10)
    assert evidence.top_error_codes == (("card_declined", 10),)

    payments_db.steady("stripe", T0 + timedelta(minutes=1), minutes=6, per_minute=10)
    events = []
    for minute in range(2, 8):
        events += [
            (t.event, t.alert.rule) for t in engine.tick(T0 + timedelta(minutes=minute)).transitions
        ]
    assert ("resolved", "outage") in events
    assert ("firing", "outage") not in events


def test_a_breach_confined_to_one_country_is_attributed_to_it(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    hour_ago = T0 - timedelta(hours=1)
    payments_db.steady("stripe", hour_ago, minutes=70, per_minute=10, country="US")
    payments_db.steady("stripe", hour_ago, minutes=60, per_minute=10, country="BR")
    payments_db.steady("stripe", T0, minutes=10, per_minute=10, failed=5, country="BR")
    config = _with_dimensions(payments_db)
    engine = Engine(config, open_source(config))
    fired = [
        t
        for minute in range(11)
        for t in engine.tick(T0 + timedelta(minutes=minute)).transitions
        if t.event == "firing"
    ]
    assert [t.alert.rule for t in fired] == ["sla_breach"]
    attribution = fired[0].alert.evidence.attribution
    assert attribution is not None
    # Every failure is in BR, which has half the payments; method=card holds them all
    # but also every payment, and (card, BR) ties with BR: the wider segment is named.
    assert attribution.segment == (("country", "BR"),)
    assert attribution.excess_share == pytest.approx(1.0)
    assert attribution.payments_share == pytest.approx(0.5)


def test_late_rows_and_settled_pending_payments_are_recounted(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    engine = Engine(_config(payments_db), open_source(_config(payments_db)))

    def bucket(matrix: npt.NDArray[np.int64], at: datetime) -> int:
        return int(matrix[0, epoch_minute(at) - (engine.window.end_minute - engine.window.minutes)])

    minute = T0 - timedelta(minutes=2)
    payments_db.add("stripe", minute, succeeded=3, pending=2)
    engine.tick(T0)
    assert (bucket(engine.window.payments, minute), bucket(engine.window.volume, minute)) == (3, 5)
    # Two rows arrive late for the same minute and the pending ones settle: the next tick
    # re-reads that minute and counts every payment once.
    payments_db.add("stripe", minute, failed=2)
    with payments_db.engine.begin() as connection:
        connection.execute(
            sa.text(f"UPDATE {payments_db.table} SET status = 'succeeded' WHERE status = 'pending'")
        )
    engine.tick(T0 + timedelta(minutes=1))
    assert bucket(engine.window.payments, minute) == 7
    assert bucket(engine.window.failures, minute) == 2
    assert bucket(engine.window.volume, minute) == 7
