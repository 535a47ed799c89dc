"""Bad input as a user types it: each command exits 2 with the key path or option that
holds the mistake and what to write instead, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

import detector
from detector.cli import main
from detector.db import connect


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    config: str = "gateways:\n  stripe: {}\n"
    env: tuple[tuple[str, str], ...] = ()
    names: str = ""  # the key path or option the message must name
    suggests: str = ""  # what the message must say to write instead


CASES = [
    Case(
        "postgres scheme",
        ("check", "--db", "postgres://alice:s3cret@127.0.0.1/test"),
        names="--db: ",
        suggests="write postgresql+psycopg:// instead",
    ),
    Case(
        "mysql without a driver",
        ("run", "--db", "mysql://root@127.0.0.1/test"),
        names="--db: ",
        suggests="write mysql+pymysql:// instead",
    ),
    Case(
        "a path for a URL",
        ("check", "--db", "payments.db"),
        names="--db: ",
        suggests="write sqlite:///payments.db",
    ),
    Case(
        "unknown dialect",
        ("check", "--db", "nosuchdialect://host/db"),
        names="--db: ",
        suggests="postgresql+psycopg://USER@HOST/DATABASE",
    ),
    Case(
        "state option not a URL",
        ("run", "--state", "not-a-url"),
        names="--state: ",
        suggests="sqlite:///not-a-url",
    ),
    Case(
        "state key not a URL",
        ("validate",),
        config="state:\n  url: not-a-url\n",
        names="  state.url: ",
        suggests="sqlite:///not-a-url",
    ),
    Case(
        "state key not a URL at run time",
        ("run",),
        config="state:\n  url: not-a-url\n",
        names="  state.url: ",
        suggests="sqlite:///not-a-url",
    ),
    Case(
        "source key postgres scheme",
        ("validate",),
        config="source:\n  url: postgres://alice:s3cret@127.0.0.1/test\n",
        names="  source.url: ",
        suggests="write postgresql+psycopg:// instead",
    ),
    Case(
        "source key mysql without a driver",
        ("check",),
        config="source:\n  url: mysql://root@127.0.0.1/test\n",
        names="  source.url: ",
        suggests="write mysql+pymysql:// instead",
    ),
    Case(
        "environment variable",
        ("check",),
        env=(("DETECTOR_DB_URL", "payments.db"),),
        names="DETECTOR_DB_URL: ",
        suggests="write sqlite:///payments.db",
    ),
    Case(
        "missing SQLite source",
        ("check", "--db", "sqlite:///missing.db"),
        names="--db: ",
        suggests="the SQLite file missing.db does not exist",
    ),
    Case(
        "missing SQLite source in the config",
        ("run",),
        config="source:\n  url: sqlite:///missing.db\n",
        names="source.url: ",
        suggests="the SQLite file missing.db does not exist",
    ),
    Case(
        "duplicate keys",
        ("validate",),
        config="gateways:\n  stripe: {}\n  adyen: {sla: 0.02}\n  adyen: {sla: 0.5}\n"
        "receivers:\n  ops:\n    type: webhook\n    url: http://127.0.0.1:9/a\n"
        "    url: http://127.0.0.1:9/b\n",
        names="  gateways.adyen: key given twice (lines 3 and 4); keep one",
        suggests="  receivers.ops.url: key given twice (lines 8 and 9); keep one",
    ),
    Case(
        "a receiver timeout of zero",
        ("run",),
        config="receivers:\n  hook: {type: webhook, url: 'http://127.0.0.1:9/h', timeout: 0s}\n"
        "route: {receivers: [hook]}\n",
        names="  receivers.hook.timeout: ",
        suggests="the timeout must be positive",
    ),
    Case(
        "a receiver timeout longer than a delivery may wait",
        ("validate",),
        config="receivers:\n  hook: {type: webhook, url: 'http://127.0.0.1:9/h', timeout: 2h}\n",
        names="  receivers.hook.timeout: ",
        suggests="at most 5m",
    ),
    Case(
        "a url without a host",
        ("run",),
        config="receivers:\n  hook: {type: webhook, url: 'http://'}\nroute: {receivers: [hook]}\n",
        names="  receivers.hook.url: ",
        suggests="no host name after http://",
    ),
    Case(
        "a url with a space",
        ("check", "--db", "sqlite:///missing.db"),
        config="receivers:\n  pd: {type: pagerduty, routing_key: k, url: 'https://pd.test/v 2'}\n",
        names="  receivers.pd.url: ",
        suggests="write a space as %20",
    ),
    Case(
        "an external url without a host",
        ("validate",),
        config="server: {external_url: 'https://'}\n",
        names="  server.external_url: ",
        suggests="no host name after https://",
    ),
    Case(
        "an interval of a million weeks",
        ("run",),
        config="schedule: {interval: 1000000w}\n",
        names="  schedule.interval: ",
        suggests="at most 3650d",
    ),
    Case(
        "an interval longer than an hour",
        ("run",),
        config="schedule: {interval: 2d}\n",
        names="  schedule.interval: ",
        suggests="at most 1h",
    ),
    Case(
        "a number of seconds too large for a date",
        ("check", "--db", "sqlite:///missing.db"),
        config="source: {warmup: 1.0e+300}\n",
        names="  source.warmup: ",
        suggests="at most 3650d",
    ),
    Case(
        "an outage window of zero",
        ("check", "--db", "sqlite:///missing.db"),
        config="detection: {outage: {window: 0s}}\n",
        names="  detection.outage.window: ",
        suggests="at least 1m",
    ),
    Case(
        "a no_data silence of zero",
        ("validate",),
        config="detection: {no_data: {silence: 0s}}\n",
        names="  detection.no_data.silence: ",
        suggests="at least 1m",
    ),
    Case(
        "a volume_drop window of a year",
        ("validate",),
        config="detection: {volume_drop: {window: 365d}}\n",
        names="  detection.volume_drop.window: ",
        suggests="at most 1d",
    ),
    Case(
        "a state query timeout of a week",
        ("validate",),
        config="state: {query_timeout: 1w}\n",
        names="  state.query_timeout: ",
        suggests="at most 1h",
    ),
    Case(
        "a repeat interval of zero",
        ("validate",),
        config="route: {receivers: [console], routes: [{receivers: [console], "
        "repeat_interval: 0s}]}\n",
        names="  route.routes[0].repeat_interval: ",
        suggests="must be positive",
    ),
    Case(
        "a Slack url over plain http",
        ("run",),
        config="receivers:\n  chat: {type: slack, url: 'http://hooks.slack.com/services/T0/B0/s3cret'}\n"
        "route: {receivers: [chat]}\n",
        names="  receivers.chat.url: ",
        suggests="https is required",
    ),
    Case(
        "a backup configured nowhere",
        ("run",),
        config="gateways:\n  stripe: {backup: adyn}\n  adyen: {}\n",
        names="  gateways.stripe.backup: 'adyn' is not listed under gateways:",
        suggests="correct the name, or list it (adyn: {})",
    ),
    Case(
        "duplicate keys in a flow mapping",
        ("check", "--db", "sqlite:///missing.db"),
        config="gateways: {stripe: {sla: 0.02, sla: 0.5}}\n",
        names="  gateways.stripe.sla: ",
        suggests="key given twice (line 1); keep one",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_exits_2_naming_where_and_what_to_write(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for variable in ("DETECTOR_DB_URL", "DETECTOR_STATE_URL"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in case.env:
        monkeypatch.setenv(variable, value)
    (tmp_path / "alerts.yaml").write_text(case.config)

    assert main(list(case.argv)) == 2

    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert case.names in captured.err
    assert case.suggests in captured.err
    assert "Traceback" not in output
    assert "s3cret" not in output  # a URL's password is never repeated
    # Neither a mistyped source nor the state store of a command that failed was created.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.yaml"]


def test_the_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "alerts.yaml").write_text("gateways:\n  stripe: {}\n")
    done = subprocess.run(
        [sys.executable, "-m", "detector", "check", "--db", "postgres://127.0.0.1/test"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "error: --db: postgres:// cannot be opened (no such database or driver installed); "
        "write postgresql+psycopg:// instead\n"
    )


def test_a_sqlite_source_with_odd_characters_in_its_path_is_read_but_never_written(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'pay ments%.db'}"
    with sa.create_engine(url).begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        connection.execute(sa.text("INSERT INTO t VALUES (1)"))
    engine = connect(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT x FROM t")).scalar_one() == 1
            with pytest.raises(sa.exc.OperationalError, match="readonly database"):
                connection.execute(sa.text("INSERT INTO t VALUES (2)"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("text", ["", "# only comments\n\n# here\n"])
def test_an_empty_config_runs_but_warns_naming_the_file(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "empty-alerts.yaml"
    config.write_text(text)
    assert main(["validate", "--config", str(config)]) == 0
    warning = next(line for line in capsys.readouterr().err.splitlines() if "WARNING" in line)
    assert str(config) in warning
    assert "console receiver only" in warning


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"detector {detector.__version__}\n"
