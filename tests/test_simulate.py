"""Synthetic payments: the traffic a user asks for, the incidents they inject, in their database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from detector.simulate import (
    DEFAULT_GATEWAYS,
    GatewayProfile,
    Incident,
    create_schema,
    generate,
    minute_counts,
    simulate,
    write,
)

MONDAY = datetime(2026, 11, 16)
SATURDAY = datetime(2026, 11, 21)
BIG = GatewayProfile("big", per_minute=100.0, failure_rate=0.01)


def _between(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    return frame[(frame["created_at"] >= start) & (frame["created_at"] < end)]


def _failure_rate(frame: pd.DataFrame) -> float:
    final = frame[frame["status"] != "pending"]
    return float((final["status"] == "failed").mean())


def _per_minute(frame: pd.DataFrame, gateway: str) -> pd.DataFrame:
    rows = frame[frame["gateway"] == gateway]
    minute = rows["created_at"].dt.floor("min")
    return pd.DataFrame(
        {
            "payments": rows.groupby(minute).size(),
            "failures": (rows["status"] == "failed").groupby(minute).sum(),
        }
    )


# --- the traffic -----------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_payments_however_the_range_is_cut() -> None:
    start, cut, end = (MONDAY + timedelta(hours=hours) for hours in (21, 25.5, 27))
    whole = generate(start, end, seed=7)
    pieces = pd.concat([generate(start, cut, seed=7), generate(cut, end, seed=7)])
    assert whole.equals(pieces.reset_index(drop=True))
    assert whole["id"].is_unique
    assert whole["created_at"].is_monotonic_increasing
    other_seed = generate(start, end, seed=8)
    assert not whole["created_at"].equals(other_seed["created_at"])
    assert not set(whole["id"]) & set(other_seed["id"])


def test_columns_hold_what_the_payments_table_expects() -> None:
    frame = generate(MONDAY, MONDAY + timedelta(days=1))
    assert list(frame.columns) == [
        "id",
        "created_at",
        "gateway",
        "status",
        "error_code",
        "amount",
        "currency",
        "method",
        "country",
        "latency_ms",
    ]
    assert frame["created_at"].dt.tz is None
    assert frame["created_at"].min() >= MONDAY
    assert frame["created_at"].max() < MONDAY + timedelta(days=1)
    assert set(frame["status"]) == {"succeeded", "failed", "pending"}
    assert frame.loc[frame["status"] == "failed", "error_code"].notna().all()
    assert frame.loc[frame["status"] != "failed", "error_code"].isna().all()
    assert 0.001 < (frame["status"] == "pending").mean() < 0.004
    assert set(frame["currency"]) == {"USD", "EUR", "GBP", "BRL", "INR"}
    assert set(frame["method"]) == {"card", "wallet", "bank_transfer"}
    assert set(frame["country"]) == {"US", "GB", "DE", "BR", "IN", "FR"}
    assert (frame["amount"] > 0).all()
    assert (frame["amount"].round(2) == frame["amount"]).all()
    assert frame["id"].str.len().max() <= 40
    assert frame.loc[frame["status"] == "pending", "latency_ms"].isna().all()
    assert (frame.loc[frame["status"] != "pending", "latency_ms"] > 0).all()


def test_default_gateways_stay_below_the_sla_with_their_own_error_codes() -> None:
    frame = generate(MONDAY, MONDAY + timedelta(days=1))
    for profile in DEFAULT_GATEWAYS:
        rows = frame[frame["gateway"] == profile.name]
        assert _failure_rate(rows) < 0.02, profile.name
        codes = set(rows["error_code"].dropna())
        assert codes <= {code for code, _ in profile.error_codes}, profile.name


def test_volume_over_a_weekday_matches_per_minute() -> None:
    frame = generate(MONDAY, MONDAY + timedelta(days=1))
    for profile in DEFAULT_GATEWAYS:
        expected = profile.per_minute * 1440
        observed = int((frame["gateway"] == profile.name).sum())
        # Big gateways within 3%; the small ones within four Poisson standard deviations.
        assert abs(observed - expected) < max(0.03 * expected, 4 * expected**0.5), profile.name


def test_weekends_carry_less_traffic() -> None:
    weekday = len(generate(MONDAY, MONDAY + timedelta(days=1), [BIG]))
    saturday = len(generate(SATURDAY, SATURDAY + timedelta(days=1), [BIG]))
    assert saturday / weekday == pytest.approx(0.8, abs=0.02)


def test_nights_are_quiet_and_evenings_busy() -> None:
    frame = generate(MONDAY, MONDAY + timedelta(days=1), gateways=[BIG])
    night = len(_between(frame, MONDAY + timedelta(hours=3), MONDAY + timedelta(hours=5))) / 120
    evening = len(_between(frame, MONDAY + timedelta(hours=18), MONDAY + timedelta(hours=21)))
    evening_rate = evening / 180
    assert 0.10 * BIG.per_minute < night < 0.20 * BIG.per_minute
    assert BIG.per_minute * 1.50 < evening_rate < BIG.per_minute * 1.90


def test_dispersion_makes_failure_counts_overdispersed() -> None:
    def phi(rho: float) -> float:
        profile = GatewayProfile("bursty", per_minute=250.0, failure_rate=0.02, dispersion_rho=rho)
        frame = generate(MONDAY + timedelta(hours=10), MONDAY + timedelta(hours=16), [profile])
        counts = _per_minute(frame, "bursty")
        n, k = counts["payments"].to_numpy(), counts["failures"].to_numpy()
        p = k.sum() / n.sum()
        # Quasi-binomial dispersion: Pearson chi-square per degree of freedom.
        return float(((k - n * p) ** 2 / (n * p * (1 - p))).sum() / (len(n) - 1))

    assert phi(0.005) > 1.5
    assert phi(0.0) < 1.3


# --- incidents -------------------------------------------------------------------------------


def test_a_failure_incident_raises_the_rate_only_inside_its_interval() -> None:
    start, end = MONDAY + timedelta(hours=12), MONDAY + timedelta(hours=14)
    incident = Incident("big", start, end - start, failure_rate=0.12)
    frame = generate(MONDAY, MONDAY + timedelta(days=1), [BIG], [incident])
    inside = _between(frame, start, end)
    outside = frame[(frame["created_at"] < start) | (frame["created_at"] >= end)]
    assert _failure_rate(inside) == pytest.approx(0.12, abs=0.01)
    assert _failure_rate(outside) == pytest.approx(0.01, abs=0.002)
    codes = inside["error_code"].value_counts(normalize=True)
    assert codes.idxmax() == "gateway_timeout"
    assert codes["gateway_timeout"] > 0.8
    assert "gateway_timeout" not in set(outside["error_code"].dropna())


def test_a_silence_incident_leaves_no_payments_from_that_gateway() -> None:
    start, duration = MONDAY + timedelta(hours=9, minutes=30), timedelta(minutes=45)
    incident = Incident("adyen", start, duration, volume_factor=0.0)
    frame = generate(
        MONDAY + timedelta(hours=9), MONDAY + timedelta(hours=11), incidents=[incident]
    )
    silent = _between(frame, start, start + duration)
    assert not (silent["gateway"] == "adyen").any()
    assert (silent["gateway"] == "stripe").sum() > 1000
    assert (_between(frame, start - timedelta(minutes=5), start)["gateway"] == "adyen").any()
    after = _between(frame, start + duration, start + duration + timedelta(minutes=5))
    assert (after["gateway"] == "adyen").any()


def test_a_volume_drop_incident_leaves_the_given_share() -> None:
    start, end = MONDAY + timedelta(hours=12), MONDAY + timedelta(hours=14)
    incident = Incident("big", start, end - start, volume_factor=0.2)
    dropped = generate(start, end, [BIG], [incident])
    usual = generate(start, end, [BIG])
    assert len(dropped) / len(usual) == pytest.approx(0.2, abs=0.02)
    assert _failure_rate(dropped) == pytest.approx(0.01, abs=0.005)


def test_incidents_must_name_a_simulated_gateway() -> None:
    incident = Incident("worldpay", MONDAY, timedelta(hours=1), failure_rate=1.0)
    with pytest.raises(ValueError, match="worldpay, which are not simulated"):
        generate(MONDAY, MONDAY + timedelta(hours=1), incidents=[incident])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "adyen:2026-11-20T14:00:45m:failure_rate=0.12",
            Incident("adyen", datetime(2026, 11, 20, 14), timedelta(minutes=45), 0.12),
        ),
        (
            "stripe:2026-11-20T14:00:30:2h:outage",
            Incident("stripe", datetime(2026, 11, 20, 14, 0, 30), timedelta(hours=2), 1.0),
        ),
        (
            "paypal:2026-11-20T15:00+01:00:1d:silence",
            Incident("paypal", datetime(2026, 11, 20, 14), timedelta(days=1), volume_factor=0.0),
        ),
        (
            "braintree:+5d14h:1h30m:volume_factor=0.2",
            Incident(
                "braintree", MONDAY + timedelta(days=5, hours=14), timedelta(minutes=90), None, 0.2
            ),
        ),
        (
            "razorpay:+90m:30m:failure_rate=0.3,volume_factor=0.5",
            Incident("razorpay", MONDAY + timedelta(minutes=90), timedelta(minutes=30), 0.3, 0.5),
        ),
    ],
)
def test_incident_text_forms_are_understood(text: str, expected: Incident) -> None:
    assert Incident.parse(text, default_start=MONDAY) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("adyen", "does not read as GATEWAY:START:DURATION:EFFECT"),
        ("adyen:+1d:45m", "does not read as GATEWAY:START:DURATION:EFFECT"),
        (":+1d:45m:outage", "does not read as GATEWAY:START:DURATION:EFFECT"),
        ("adyen:tomorrow:45m:outage", "start 'tomorrow' is neither an ISO date-time"),
        ("adyen:+1day:45m:outage", "start offset '\\+1day' is not a span"),
        ("adyen:+1d:45q:outage", "duration '45q' is not a span"),
        ("adyen:+1d:0m:outage", "the duration must be positive"),
        ("adyen:+1d:45m:explode", "effect 'explode' is not one of"),
        ("adyen:+1d:45m:failure_rate=high", "failure_rate needs a number, not 'high'"),
        ("adyen:+1d:45m:failure_rate=12", "failure_rate must be between 0 and 1"),
        ("adyen:+1d:45m:volume_factor=-1", "volume_factor must be zero or more"),
        ("adyen:+1d:45m:outage,failure_rate=0.5", "failure_rate is given twice"),
        ("adyen:+1d:45m:decline_rate=1.5", "decline_rate must be between 0 and 1"),
    ],
)
def test_bad_incident_text_is_rejected_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Incident.parse(text, default_start=MONDAY)


def test_incident_times_are_naive_utc() -> None:
    aware = datetime(2026, 11, 20, 15, tzinfo=timezone(timedelta(hours=1)))
    incident = Incident("stripe", aware, timedelta(minutes=5), failure_rate=1.0)
    assert incident.start == datetime(2026, 11, 20, 14)
    assert incident.end == datetime(2026, 11, 20, 14, 5)


# --- the database ----------------------------------------------------------------------------


def _rows(engine: sa.Engine, table: sa.Table) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        return {row.id: row._asdict() for row in connection.execute(sa.select(table))}


def _assert_round_trip(frame: pd.DataFrame, stored: dict[str, dict[str, Any]]) -> None:
    assert len(stored) == len(frame)
    for record in frame.sample(20, random_state=0).to_dict("records"):
        row = stored[record["id"]]
        assert row["created_at"] == record["created_at"].to_pydatetime()
        assert row["amount"] == Decimal(str(record["amount"])).quantize(Decimal("0.01"))
        for column in ("gateway", "status", "currency", "method", "country"):
            assert row[column] == record[column]
        assert row["error_code"] == (
            None if pd.isna(record["error_code"]) else record["error_code"]
        )


def test_write_round_trips_rows_into_sqlite(tmp_path: Any) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'payments.db'}")
    table = create_schema(engine)
    frame = generate(MONDAY + timedelta(hours=18), MONDAY + timedelta(hours=19), seed=3)
    failed = frame[frame["status"] == "failed"]
    assert write(engine, frame, chunk_rows=1234) == len(frame)
    stored = _rows(engine, table)
    _assert_round_trip(frame, stored)
    assert stored[failed["id"].iloc[0]]["error_code"] == failed["error_code"].iloc[0]
    # Timestamps are stored as SQLAlchemy stores them, so its comparisons see every row.
    half = MONDAY + timedelta(hours=18, minutes=30)
    with engine.connect() as connection:
        later = connection.execute(
            sa.select(sa.func.count()).select_from(table).where(table.c.created_at >= half)
        ).scalar_one()
    assert later == (frame["created_at"] >= half).sum()
    engine.dispose()


def test_simulate_fills_a_database_day_by_day(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    start = MONDAY + timedelta(hours=22)
    incident = Incident.parse("paypal:+1h:30m:outage", default_start=start)
    written = simulate(url, start, days=0.125, incidents=[incident], seed=5, table="demo")
    expected = generate(start, start + timedelta(hours=3), incidents=[incident], seed=5)
    assert written == len(expected)
    engine = sa.create_engine(url)
    indexes = {tuple(index["column_names"]) for index in sa.inspect(engine).get_indexes("demo")}
    assert {("created_at",), ("gateway", "created_at")} <= indexes
    with engine.connect() as connection:
        ids = set(connection.execute(sa.text("SELECT id FROM demo")).scalars())
    assert ids == set(expected["id"])
    engine.dispose()


@pytest.mark.database
@pytest.mark.parametrize("payments_db", ["postgresql", "mariadb"], indirect=True)
def test_create_schema_and_write_work_on_server_databases(payments_db: Any) -> None:
    table = create_schema(payments_db.engine, payments_db.table)
    frame = generate(MONDAY + timedelta(hours=18), MONDAY + timedelta(hours=18, minutes=20))
    assert write(payments_db.engine, frame, payments_db.table, chunk_rows=500) == len(frame)
    _assert_round_trip(frame, _rows(payments_db.engine, table))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="end of the simulated range comes before its start"):
        generate(MONDAY, MONDAY - timedelta(hours=1))
    with pytest.raises(ValueError, match="each with its own name"):
        generate(MONDAY, MONDAY + timedelta(hours=1), [BIG, replace(BIG, per_minute=1.0)])
    with pytest.raises(ValueError, match="failure_rate must be between 0 and 1"):
        GatewayProfile("x", per_minute=1.0, failure_rate=1.5)
    assert len(generate(MONDAY, MONDAY)) == 0
    assert generate(
        MONDAY.replace(tzinfo=UTC), MONDAY.replace(tzinfo=UTC) + timedelta(hours=1)
    ).equals(generate(MONDAY, MONDAY + timedelta(hours=1)))


# --- per-minute counts -----------------------------------------------------------------------


def test_minute_counts_are_the_counts_of_the_generated_payments() -> None:
    bursty = GatewayProfile("bursty", per_minute=30.0, failure_rate=0.02, dispersion_rho=0.005)
    gateways = [bursty, GatewayProfile("quiet", per_minute=0.5, failure_rate=0.01)]
    start, end = MONDAY + timedelta(hours=22), MONDAY + timedelta(hours=26)
    incidents = [
        Incident("bursty", MONDAY + timedelta(hours=23), timedelta(minutes=30), failure_rate=0.3),
        Incident("quiet", MONDAY + timedelta(hours=24), timedelta(minutes=20), volume_factor=0.0),
    ]
    counts = minute_counts(start, end, gateways, incidents, seed=4)
    frame = generate(start, end, gateways, incidents, seed=4)

    assert counts.gateways == ("bursty", "quiet")
    assert counts.start == start
    assert counts.payments.shape == (2, 240)
    for row, gateway in enumerate(counts.gateways):
        rows = frame[frame["gateway"] == gateway]
        minute = ((rows["created_at"] - start) // timedelta(minutes=1)).to_numpy()
        status = rows["status"].to_numpy()
        for name, matrix in (
            ("failed", counts.failures),
            ("pending", counts.pending),
        ):
            assert np.bincount(minute[status == name], minlength=240).tolist() == (
                matrix[row].tolist()
            )
        final = np.bincount(minute[status != "pending"], minlength=240)
        assert final.tolist() == counts.payments[row].tolist()
    # The incident shows in the counts: 30% failures, then a silent quiet gateway.
    assert counts.failures[0, 60:90].sum() / counts.payments[0, 60:90].sum() > 0.2
    assert counts.payments[1, 120:140].sum() + counts.pending[1, 120:140].sum() == 0


def test_minute_counts_become_the_rows_a_payments_source_returns() -> None:
    counts = minute_counts(MONDAY, MONDAY + timedelta(hours=2), seed=2)
    rows = counts.to_counts()
    first = int(MONDAY.replace(tzinfo=UTC).timestamp() // 60)
    assert rows.minute.min() >= first
    assert rows.minute.max() < first + 120
    assert (np.diff(rows.minute) >= 0).all()
    assert (rows.volume > 0).all()
    assert set(rows.gateway) == {g.name for g in DEFAULT_GATEWAYS}
    assert rows.failures.sum() == counts.failures.sum()
    assert rows.volume.sum() == counts.payments.sum() + counts.pending.sum()
    # Whole minutes either side: the range is cut the same way generate cuts it.
    assert minute_counts(MONDAY, MONDAY + timedelta(minutes=90), seed=2).payments.tolist() == (
        counts.payments[:, :90].tolist()
    )


# --- declines ---------------------------------------------------------------------------------

DECLINING = GatewayProfile(
    "declining",
    per_minute=60.0,
    failure_rate=0.02,
    error_codes=(("timeout", 1.0),),
    decline_rate=0.08,
)


def test_declines_are_failed_rows_with_a_decline_code_counted_apart() -> None:
    start, end = MONDAY, MONDAY + timedelta(hours=3)
    counts = minute_counts(start, end, [DECLINING], seed=6)
    frame = generate(start, end, [DECLINING], seed=6)
    minute = ((frame["created_at"] - start) // timedelta(minutes=1)).to_numpy()
    declined = frame["error_code"].isin([code for code, _ in DECLINING.decline_codes]).to_numpy()
    assert set(frame.loc[declined, "status"]) == {"failed"}
    assert np.bincount(minute[declined], minlength=180).tolist() == counts.declines[0].tolist()
    technical = (frame["status"] == "failed").to_numpy() & ~declined
    assert np.bincount(minute[technical], minlength=180).tolist() == counts.failures[0].tolist()
    assert set(frame.loc[technical, "error_code"]) == {"timeout"}
    rows = counts.to_counts()
    assert rows.declines.sum() == counts.declines.sum() > 0


def test_declines_swing_over_the_day_and_change_no_other_draw() -> None:
    start, end = MONDAY, MONDAY + timedelta(days=7)
    counts = minute_counts(start, end, [DECLINING], seed=8)
    plain = minute_counts(start, end, [replace(DECLINING, decline_rate=0.0)], seed=8)
    for name in ("payments", "failures", "pending"):
        assert getattr(counts, name).tolist() == getattr(plain, name).tolist()
    assert plain.declines.sum() == 0

    by_hour = counts.declines.reshape(7, 24, 60).sum(axis=(0, 2))
    share = by_hour / counts.payments.reshape(7, 24, 60).sum(axis=(0, 2))
    # 8% * (1 +- 0.5): highest around 03:00 UTC, lowest around 15:00.
    assert 0.11 < share[3] < 0.13
    assert 0.035 < share[15] < 0.045
    assert 0.075 < share.mean() < 0.085


def test_a_decline_rate_the_swing_pushes_past_one_is_refused() -> None:
    with pytest.raises(ValueError, match="decline_rate"):
        GatewayProfile("x", per_minute=1.0, failure_rate=0.01, decline_rate=0.8)


def test_a_decline_wave_sets_the_decline_share_only_inside_its_interval() -> None:
    wave = Incident.parse("declining:+12h:2h:decline_rate=0.3", MONDAY)
    counts = minute_counts(MONDAY, MONDAY + timedelta(days=1), [DECLINING], [wave], seed=9)
    plain = minute_counts(MONDAY, MONDAY + timedelta(days=1), [DECLINING], seed=9)

    def share(matrix: Any, lo: int, hi: int) -> float:
        return float(matrix.declines[0, lo:hi].sum() / matrix.payments[0, lo:hi].sum())

    assert 0.28 < share(counts, 720, 840) < 0.31
    assert counts.declines[0, :720].tolist() == plain.declines[0, :720].tolist()
    assert counts.declines[0, 840:].tolist() == plain.declines[0, 840:].tolist()
    assert counts.failures.tolist() == plain.failures.tolist()
