"""``detector init`` writes the commented example alerts.yaml shipped in the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.cli import main
from detector.cli.scaffold import example_config
from detector.config import load_config

REPOSITORY = Path(__file__).resolve().parents[1]


def test_the_shipped_example_is_the_repositorys_alerts_yaml() -> None:
    assert example_config() == (REPOSITORY / "alerts.yaml").read_text(encoding="utf-8")


def test_init_writes_a_valid_example_and_refuses_to_overwrite_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    written = (tmp_path / "alerts.yaml").read_text()
    assert written == example_config()
    assert "# Every key is described in docs/configuration.md." in written
    assert load_config(tmp_path / "alerts.yaml", env={}).gateways["stripe"].backup == "adyen"
    assert main(["validate"]) == 0

    (tmp_path / "alerts.yaml").write_text("gateways: {mine: {}}\n")
    assert main(["init"]) == 2
    assert "alerts.yaml exists; pass --force to overwrite it" in capsys.readouterr().err
    assert (tmp_path / "alerts.yaml").read_text() == "gateways: {mine: {}}\n"

    assert main(["init", "--force"]) == 0
    assert (tmp_path / "alerts.yaml").read_text() == example_config()


def test_init_writes_to_a_given_path_or_folder(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "prod.yaml")]) == 0
    assert (tmp_path / "prod.yaml").read_text() == example_config()
    (tmp_path / "conf").mkdir()
    assert main(["init", str(tmp_path / "conf")]) == 0
    assert (tmp_path / "conf" / "alerts.yaml").read_text() == example_config()
