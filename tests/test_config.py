"""alerts.yaml: what a user sees when it is right, and when it is wrong."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from detector.alerting import receivers_for
from detector.cli import main
from detector.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def _problems(data: object, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as raised:
        parse_config(data, env={} if env is None else env)
    return raised.value.problems


def test_the_shipped_alerts_yaml_is_valid() -> None:
    config = load_config(REPO / "alerts.yaml", env={})
    assert config.detection.sla == 0.02
    assert config.gateways["stripe"].backup == "adyen"
    assert config.sla_for("braintree") == 0.03
    assert config.sla_for("an-unlisted-gateway") == 0.02
    assert config.detection.sla_breach.keep_firing_for == timedelta(minutes=15)
    assert config.detection.sla_breach.post_change_rates(0.02) == [0.04, 0.15, 0.5]
    assert config.detection.false_alerts * 90 * 24 * 60 == pytest.approx(1.0)


def test_an_empty_file_means_every_default() -> None:
    config = parse_config(None, env={})
    assert config.schedule.interval == timedelta(minutes=1)
    assert receivers_for(config, {"rule": "outage"}) == ["console"]


def test_an_unknown_key_is_named_with_its_path() -> None:
    ((path, message),) = _problems({"detection": {"sla_breach": {"windw": "30m"}}})
    assert path == "detection.sla_breach.windw"
    assert message.startswith("unknown key")


def test_a_wrong_type_is_named_with_its_path() -> None:
    ((path, message),) = _problems({"schedule": {"interval": "often"}})
    assert path == "schedule.interval"
    assert "'often' is not a duration" in message


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems({"detection": {"sla": 2}, "source": {"table": "pay ments"}})
    assert {path for path, _ in problems} == {"detection.sla", "source.table"}


def test_a_column_name_that_is_not_an_identifier_is_refused() -> None:
    ((path, message),) = _problems({"source": {"columns": {"gateway": "gateway; DROP TABLE x"}}})
    assert path == "source.columns.gateway"
    assert "not a plain SQL identifier" in message


def test_dimension_columns_and_their_label_names_are_checked() -> None:
    ((path, message),) = _problems(
        {"source": {"columns": {"dimensions": {"country": "country; --"}}}}
    )
    assert path == "source.columns.dimensions.country"
    assert "not a plain SQL identifier" in message
    ((path, message),) = _problems({"source": {"columns": {"dimensions": {"gateway": "gw"}}}})
    assert path == "source.columns.dimensions"
    assert "'gateway' is a label the detector sets itself" in message


def test_a_missing_secret_names_the_receiver_and_the_variable() -> None:
    data = {
        "receivers": {"payments-slack": {"type": "slack", "url": "${SLACK_WEBHOOK_URL}"}},
        "route": {"receivers": ["payments-slack"]},
    }
    assert _problems(data) == [
        ("receivers.payments-slack.url", "environment variable SLACK_WEBHOOK_URL is not set")
    ]
    config = parse_config(data, env={"SLACK_WEBHOOK_URL": "https://hooks.slack.test/T0/B0/secret"})
    # The secret is masked wherever the config is printed.
    assert "secret" not in repr(config)


def test_a_route_to_an_unknown_receiver_is_refused() -> None:
    route = {"receivers": ["console"], "routes": [{"receivers": ["pagerdoot"]}]}
    ((path, message),) = _problems({"route": route})
    assert path == "route.routes[0].receivers"
    assert "unknown receiver 'pagerdoot'" in message
    ((path, message),) = _problems({"route": {"group_wait": "30s"}})
    assert path == "route.receivers"
    assert "the root route needs receivers" in message


def test_routes_pick_receivers_by_severity() -> None:
    config = parse_config(
        {
            "receivers": {
                "console": {"type": "console"},
                "hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
            },
            "route": {
                "receivers": ["console"],
                "routes": [
                    {"match": {"severity": "critical"}, "receivers": ["hook"], "continue": True},
                    {"receivers": ["console"]},
                ],
            },
        },
        env={},
    )
    assert receivers_for(config, {"severity": "critical", "gateway": "stripe"}) == [
        "hook",
        "console",
    ]
    assert receivers_for(config, {"severity": "warning", "gateway": "stripe"}) == ["console"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(text)
    return path


def test_validate_prints_problems_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "detection:\n  outage:\n    failure_rate: lots\nsorce: {}\n")
    assert main(["validate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "detection.outage.failure_rate" in err
    assert "sorce: unknown key" in err


def test_validate_reports_broken_yaml_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "source:\n  table: [payments\n")
    assert main(["validate", "--config", str(path)]) == 2
    assert "line 3" in capsys.readouterr().err


def test_run_with_a_broken_config_exits_2_before_starting(tmp_path: Path) -> None:
    path = _write(tmp_path, "schedule:\n  interval: -5\n")
    finished = subprocess.run(
        [sys.executable, "-m", "detector.cli", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert "schedule.interval" in finished.stderr


def test_insert_and_update_time_columns_are_identifiers_and_an_update_needs_a_pending_status() -> (
    None
):
    ((path, message),) = _problems({"source": {"columns": {"inserted_at": "written at"}}})
    assert path == "source.columns.inserted_at"
    assert "not a plain SQL identifier" in message

    ((path, message),) = _problems(
        {"source": {"columns": {"updated_at": "settled_at"}, "statuses": {"pending": []}}}
    )
    assert "source.columns.updated_at: a row not updated yet was pending" in f"{path}: {message}"
    assert "source.statuses.pending" in message
