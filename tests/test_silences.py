"""``detector silence`` as a user runs it, on every state database the replicas may share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detector.cli import main
from detector.store import StateStore


@pytest.fixture(autouse=True)
def _in_a_folder_with_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alerts.yaml").write_text("gateways:\n  stripe: {}\n")


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines()[1:]}


def test_add_list_and_expire_a_silence(state_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    add = ["silence", "add", "--state", state_url, "--match", "gateway=stripe", "--for", "2h"]
    assert main([*add, "--comment", "vendor maintenance", "--author", "ana"]) == 0
    added = capsys.readouterr().out
    assert "gateway=stripe" in added
    assert "(vendor maintenance)" in added
    silence_id = added.split()[1]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    regex = ["--match-re", "gateway=stripe|adyen", "--match", "rule=sla_breach"]
    assert main([*add[:4], *regex, "--for", "1h", "--start", tomorrow, "--comment", "x"]) == 0
    scheduled_id = capsys.readouterr().out.split()[1]

    assert main(["silence", "list", "--state", state_url]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows[silence_id][1] == "active"
    assert rows[silence_id][-3:] == ["gateway=stripe", "vendor", "maintenance"]
    assert "ana" in rows[silence_id]
    assert rows[scheduled_id][1] == "scheduled"
    assert rows[scheduled_id][7:9] == ["rule=sla_breach,", "gateway=~stripe|adyen"]

    assert main(["silence", "expire", silence_id, "--state", state_url]) == 0
    assert capsys.readouterr().out == f"silence {silence_id} expired\n"
    assert main(["silence", "list", "--state", state_url]) == 0
    assert silence_id not in _rows(capsys.readouterr().out)
    assert main(["silence", "list", "--all", "--state", state_url]) == 0
    assert _rows(capsys.readouterr().out)[silence_id][1] == "expired"

    # Another replica reading the same database sees the same silences.
    store = StateStore.open(state_url)
    try:
        remaining = store.silences(not_ended_at=datetime.now(UTC))
    finally:
        store.engine.dispose()
    assert [(s.id, s.match_re) for s in remaining] == [(scheduled_id, {"gateway": "stripe|adyen"})]


def test_a_silence_with_negative_matchers_mutes_all_but_what_it_excludes(
    state_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    add = ["silence", "add", "--state", state_url, "--for", "2h", "--comment", "load test"]
    matchers = ["--matcher", 'gateway!="paypal"', "--matcher", "rule!~no_data|volume_.*"]
    assert main([*add, *matchers]) == 0
    assert 'gateway!="paypal", rule!~"no_data|volume_.*"' in capsys.readouterr().out

    store = StateStore.open(state_url)
    try:
        (silence,) = store.silences(not_ended_at=datetime.now(UTC))
    finally:
        store.engine.dispose()
    muted = {
        (rule, gateway): silence.matches({"rule": rule, "gateway": gateway})
        for rule in ("outage", "no_data")
        for gateway in ("stripe", "paypal")
    }
    assert muted == {
        ("outage", "stripe"): True,
        ("outage", "paypal"): False,
        ("no_data", "stripe"): False,
        ("no_data", "paypal"): False,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--match", "stripe"], "--match 'stripe': write LABEL=VALUE"),
        (["--match-re", "gateway=stripe("], "not a valid regular expression"),
        ([], "would mute every alert"),
        (["--matcher", "gateway~stripe"], "--matcher 'gateway~stripe' is not a matcher"),
        (["--matcher", "gateway=~("], "not a valid regular expression"),
    ],
)
def test_a_bad_silence_is_refused_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    state = f"sqlite:///{tmp_path / 'state.db'}"
    command = ["silence", "add", "--state", state, *args, "--for", "1h", "--comment", "x"]
    assert main(command) == 2
    assert message in capsys.readouterr().err


def test_expiring_an_unknown_silence_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = f"sqlite:///{tmp_path / 'state.db'}"
    assert main(["silence", "expire", "nope", "--state", state]) == 2
    assert "no silence 'nope'" in capsys.readouterr().err


def test_a_silence_on_a_label_no_alert_carries_is_added_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = f"sqlite:///{tmp_path / 'state.db'}"
    add = ["silence", "add", "--state", state, "--for", "1h", "--comment", "x"]
    assert main([*add, "--match", "gatway=stripe", "--matcher", "rule=outage"]) == 0
    out, err = capsys.readouterr()
    assert " added: gatway=stripe" in out
    [warning] = err.splitlines()  # rule is a label alerts carry: no word on it
    assert warning.startswith("warning: --match: label 'gatway' is carried by no alert")
    assert "gateway" in warning.split("alerts carry: ")[1]
    assert main([*add, "--match", "gateway=stripe"]) == 0
    assert capsys.readouterr().err == ""
    store = StateStore.open(state)
    try:
        assert len(store.silences(not_ended_at=datetime.now(UTC))) == 2
    finally:
        store.engine.dispose()
