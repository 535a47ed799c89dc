"""Revenue at risk and trace links: the money an incident puts at risk and links to each
sample payment's logs, as they arrive in Slack, the webhook, a mail and the status page."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from detector import config as cfg
from detector.cli import main
from detector.config import Config, ConfigError, parse_config
from detector.notify import PagerDutyReceiver
from detector.service.web import WebServer
from detector.simulate import create_schema
from detector.source import SchemaError, SqlSource
from detector.stats.revenue import Loss

from .conftest import T0, Clock, PaymentsDb, in_process_daemon
from .http_recorder import HttpRecorder
from .smtp_recorder import SmtpRecorder
from .test_notify import firing

TRACE = "https://logs.example.com/search?q=${payment_id}"


def _config(
    db: PaymentsDb,
    http: HttpRecorder,
    smtp_port: int | None = None,
    currency: str | None = "currency",
    **source: Any,
) -> Config:
    receivers: dict[str, Any] = {
        "slack": {"type": "slack", "url": http.url_for("/slack")},
        "hook": {"type": "webhook", "url": http.url_for("/hook")},
    }
    if smtp_port is not None:
        receivers["mail"] = {
            "type": "email",
            "host": "127.0.0.1",
            "port": smtp_port,
            "starttls": False,
            "from": "alerts@example.com",
            "to": ["oncall@example.com"],
        }
    columns: dict[str, Any] = {"amount": "amount"}
    if currency:
        columns["currency"] = currency
    return parse_config(
        {
            "source": {"url": db.url, "table": db.table, "columns": columns, **source},
            "receivers": receivers,
            "route": {"receivers": list(receivers)},
        },
        env={},
    )


def _insert(db: PaymentsDb, rows: list[dict[str, Any]]) -> None:
    with db.engine.begin() as connection:
        connection.execute(create_schema(db.engine, db.table).insert(), rows)


def _row(pid: str, at: datetime, status: str, amount: Decimal, currency: str) -> dict[str, Any]:
    return {
        "id": pid,
        "created_at": at.astimezone(UTC).replace(tzinfo=None),
        "gateway": "stripe",
        "status": status,
        "error_code": "gateway_timeout" if status == "failed" else None,
        "amount": amount,
        "currency": currency,
        "method": "card",
        "country": "DE",
    }


def _incident(db: PaymentsDb) -> list[dict[str, Any]]:
    """An hour of healthy payments of varied amounts in EUR and USD, then from T0 one EUR
    and one USD payment of the 20 a minute fail. Returns every row."""
    rows = []
    for minute in range(-60, 12):
        start = T0 + timedelta(minutes=minute)
        for j in range(20):
            at = start + timedelta(seconds=j * 2.9)
            currency = "USD" if j % 5 == 0 else "EUR"
            failed = minute >= 0 and j in (3, 10)
            # Ids a log search must have URL-encoded: a space and an ampersand.
            pid = f"pay {minute + 60}&{j}" if failed else f"pay_{minute + 60}_{j}"
            amount = Decimal(f"{10 + (7 * j + minute) % 23}.{(13 * j) % 100:02d}")
            rows.append(_row(pid, at, "failed" if failed else "succeeded", amount, currency))
    _insert(db, rows)
    return rows


def _expected(rows: list[dict[str, Any]], since: str, at: str, sla: float) -> dict[str, Any]:
    """The money above the SLA per currency, summed here from the rows themselves."""
    start = datetime.fromisoformat(since).replace(tzinfo=None)
    end = datetime.fromisoformat(at).replace(tzinfo=None)
    out: dict[str, Any] = {}
    for currency in ("EUR", "USD"):
        mine = [r for r in rows if r["currency"] == currency and start <= r["created_at"] < end]
        failed = [r for r in mine if r["status"] == "failed"]
        amount = sum(r["amount"] for r in failed) - Decimal(str(sla)) * sum(
            r["amount"] for r in mine
        )
        out[currency] = (
            round(float(amount), 2),
            round(len(failed) - sla * len(mine)),
        )
    return out


def _tick(config: Config, tmp_path: Path, minutes: int, start: datetime = T0) -> str:
    """Tick and deliver a daemon minute by minute; the status page as the last tick left it."""
    clock = Clock(start)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, clock, session) as d:
        server = WebServer(("127.0.0.1", 0), d).start()
        try:
            for _ in range(minutes):
                clock.now += timedelta(minutes=1)
                d.tick()
                d.deliver()
            host, port = server.address
            return session.get(f"http://{host}:{port}/", timeout=10).text
        finally:
            server.stop()


def _slack_text(message: dict[str, Any]) -> str:
    texts = []
    for block in message["blocks"]:
        texts.append(block.get("text", {}).get("text", ""))
        texts += [field["text"] for field in block.get("fields", [])]
    return "\n".join(texts)


def _money(amount: float) -> str:
    return f"{amount:,.0f}" if amount == round(amount) else f"{amount:,.2f}"


def test_slack_and_the_webhook_say_the_exact_money_failed_above_the_sla(
    payments_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    rows = _incident(payments_db)
    _tick(_config(payments_db, http), tmp_path, minutes=10)

    hooks = [r.json() for r in http.requests if r.path == "/hook"]
    firing = [h for h in hooks if h["event"] == "firing" and h["rule"] == "sla_breach"]
    assert len(firing) == 1
    hook = firing[0]
    assert hook["since"] >= (T0 - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    expected = _expected(rows, hook["since"], hook["at"], 0.02)
    at_risk = hook["evidence"]["revenue_at_risk"]
    assert {loss["currency"]: (loss["amount"], loss["payments"]) for loss in at_risk} == expected
    # Most money first; both currencies failed well above the SLA.
    assert [loss["amount"] for loss in at_risk] == sorted(
        (amount for amount, _ in expected.values()), reverse=True
    )
    assert min(amount for amount, _ in expected.values()) > 50

    since = datetime.fromisoformat(hook["since"])
    parts = ", ".join(
        f"{loss['currency']} {_money(loss['amount'])} in {loss['payments']} failed payments"
        for loss in at_risk
    )
    line = f"{parts} above the 2.0% SLA since {since:%H:%M} UTC"
    assert f"Revenue at risk: {line}" in hook["text"]
    slack = [r.json() for r in http.requests if r.path == "/slack"]
    assert any(line in _slack_text(message) for message in slack)


def test_backtest_json_lines_carry_the_same_money_as_the_webhook(
    sqlite_db: PaymentsDb, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows = _incident(sqlite_db)
    config = tmp_path / "alerts.yaml"
    columns = {"amount": "amount", "currency": "currency"}
    config.write_text(
        json.dumps({"source": {"url": sqlite_db.url, "table": sqlite_db.table, "columns": columns}})
    )
    start, end = (T0 - timedelta(minutes=5)).isoformat(), (T0 + timedelta(minutes=10)).isoformat()
    args = ["backtest", "--config", str(config), "--start", start, "--end", end]
    assert main(args) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (breach,) = [r for r in records if r["rule"] == "sla_breach" and r["event"] == "firing"]
    expected = _expected(rows, breach["since"], breach["at"], 0.02)
    at_risk = {
        loss["currency"]: (loss["amount"], loss["payments"]) for loss in breach["revenue_at_risk"]
    }
    assert at_risk == expected
    assert min(amount for amount, _ in expected.values()) > 50


def test_trace_links_arrive_in_slack_the_webhook_a_mail_and_the_status_page(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    _incident(sqlite_db)
    with SmtpRecorder() as smtp:
        config = _config(sqlite_db, http, smtp.port, trace_url=TRACE)
        page = _tick(config, tmp_path, minutes=10)
        mails: list[EmailMessage] = list(smtp.messages)

    (hook,) = [r.json() for r in http.requests if r.path == "/hook"]
    samples = hook["evidence"]["samples"]
    assert len(samples) == 5
    assert [s["id"] for s in samples] == hook["evidence"]["sample_payment_ids"]
    for sample in samples:
        minute, j = sample["id"].removeprefix("pay ").split("&")
        assert sample["url"] == f"https://logs.example.com/search?q=pay%20{minute}%26{j}"
    first_id, first_url = samples[0]["id"], samples[0]["url"]

    (slack,) = [r.json() for r in http.requests if r.path == "/slack"]
    # mrkdwn: <url|label>, the label with Slack's & escaped.
    assert f"<{first_url}|{first_id.replace('&', '&amp;')}>" in _slack_text(slack)

    (mail,) = mails
    html_part, text_part = mail.get_body(("html",)), mail.get_body(("plain",))
    assert html_part is not None
    assert text_part is not None
    html_id = first_id.replace("&", "&amp;")
    assert f'<a href="{first_url}">{html_id}</a>' in html_part.get_content()
    assert f"{first_id} ({first_url})" in text_part.get_content()

    assert f'<a href="{first_url}">{html_id}</a>' in page


def test_one_unnamed_currency_without_a_currency_column(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    rows = _incident(sqlite_db)
    _tick(_config(sqlite_db, http, currency=None), tmp_path, minutes=10)
    (hook,) = [r.json() for r in http.requests if r.path == "/hook"]
    ((amount, payments),) = [
        (loss["amount"], loss["payments"])
        for loss in hook["evidence"]["revenue_at_risk"]
        if loss["currency"] == ""
    ]
    both = _expected(rows, hook["since"], hook["at"], 0.02)
    # One currency: the sums of all rows, computed apart per currency and added up.
    assert amount == pytest.approx(both["EUR"][0] + both["USD"][0], abs=0.011)
    assert f"Revenue at risk: {_money(amount)} in {payments} failed payments" in hook["text"]


def test_a_volume_drop_is_valued_at_the_usual_average_payment(
    sqlite_db: PaymentsDb, http: HttpRecorder, tmp_path: Path
) -> None:
    # Two hours of 30 payments a minute (EUR 20 and USD 50 in 2:1), then almost none.
    for minute in range(-120, 0):
        at = T0 + timedelta(minutes=minute)
        sqlite_db.add("stripe", at, succeeded=20, amount=20, currency="EUR")
        sqlite_db.add("stripe", at + timedelta(seconds=1), succeeded=10, amount=50, currency="USD")
    for minute in range(0, 40, 5):
        sqlite_db.add("stripe", T0 + timedelta(minutes=minute), succeeded=1, currency="EUR")
    _tick(_config(sqlite_db, http), tmp_path, minutes=30)

    hooks = [r.json() for r in http.requests if r.path == "/hook"]
    (drop,) = [h for h in hooks if h["rule"] == "volume_drop" and h["event"] == "firing"]
    evidence = drop["evidence"]
    missing = evidence["expected_payments"] - evidence["payments"]
    # The average payment of the day before the drop: (20 x 20 + 10 x 50) / 30 = 30.
    eur, usd = sorted(evidence["revenue_at_risk"], key=lambda loss: loss["currency"])
    assert (eur["currency"], usd["currency"]) == ("EUR", "USD")
    assert eur["amount"] == pytest.approx(round(missing * 400 / 30, 2), abs=0.011)
    assert usd["amount"] == pytest.approx(round(missing * 500 / 30, 2), abs=0.011)
    assert eur["payments"] == round(missing * 2 / 3)
    assert "payments short of the expected volume since" in drop["text"]


def _text_amounts(db: PaymentsDb) -> str:
    """A payments table whose amount column ``price`` holds text."""
    table = f"{db.table}_text"
    with db.engine.begin() as connection:
        connection.execute(
            sa.text(
                f"CREATE TABLE {table} (id VARCHAR(40), created_at TIMESTAMP, gateway "
                "VARCHAR(40), status VARCHAR(16), error_code VARCHAR(40), price VARCHAR(20))"
            )
        )
    return table


def test_a_text_amount_column_is_refused_naming_the_key(
    payments_db: PaymentsDb, open_source: Callable[[Config], SqlSource]
) -> None:
    table = _text_amounts(payments_db)
    try:
        columns = {"amount": "price"}
        config = parse_config(
            {"source": {"url": payments_db.url, "table": table, "columns": columns}}, env={}
        )
        with pytest.raises(SchemaError) as caught:
            open_source(config).check()
    finally:
        with payments_db.engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {table}"))
    assert str(caught.value).startswith("source.columns.amount: column 'price' is VARCHAR")
    assert "not a number" in str(caught.value)


def test_detector_check_stops_on_a_text_amount_column(
    sqlite_db: PaymentsDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _text_amounts(sqlite_db)
    path = tmp_path / "alerts.yaml"
    path.write_text(json.dumps({"source": {"table": table, "columns": {"amount": "price"}}}))
    assert main(["check", "--config", str(path), "--db", sqlite_db.url]) == 2
    assert "source.columns.amount: column 'price' is VARCHAR" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"trace_url": "https://logs.example.com/search"}, "put ${payment_id} where"),
        ({"trace_url": "javascript:alert('${payment_id}')"}, "http:// or https://"),
        ({"columns": {"currency": "currency"}}, "needs the amount column"),
    ],
)
def test_bad_revenue_and_trace_keys_are_refused_at_load(
    source: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"source": source}, env={})
    assert message in str(caught.value)
    assert "source." in str(caught.value)


def test_other_variables_in_the_trace_url_come_from_the_environment() -> None:
    source = {"trace_url": "https://${LOG_HOST}/search?q=${payment_id}"}
    config = parse_config({"source": source}, env={"LOG_HOST": "logs.internal"})
    assert config.source.trace_url == "https://logs.internal/search?q=${payment_id}"


def test_pagerduty_gets_the_revenue_line_and_a_link_per_sample_payment(
    http: HttpRecorder, session: requests.Session
) -> None:
    http.respond_with([(202, '{"status":"success"}')])
    evidence = replace(
        firing().evidence,
        sample_payment_ids=("pay 1", "pay_2"),
        sample_payment_urls=(
            "https://logs.example.com/search?q=pay%201",
            "https://logs.example.com/search?q=pay_2",
        ),
        revenue_at_risk=(Loss("EUR", 1234.5, 17),),
    )
    receiver_config = cfg.PagerDutyReceiver.model_validate(
        {"type": "pagerduty", "routing_key": "R0UTINGKEY", "url": http.url_for("/v2/enqueue")}
    )
    PagerDutyReceiver("pd", receiver_config, session).send(replace(firing(), evidence=evidence))
    (event,) = [r.json() for r in http.requests]
    assert event["payload"]["custom_details"]["revenue_at_risk"] == (
        "EUR 1,234.50 in 17 failed payments above the 2.0% SLA since 10:00 UTC"
    )
    assert {
        "href": "https://logs.example.com/search?q=pay%201",
        "text": "logs of payment pay 1",
    } in (event["links"])
    assert event["payload"]["custom_details"]["evidence"]["samples"][1] == {
        "id": "pay_2",
        "url": "https://logs.example.com/search?q=pay_2",
    }
