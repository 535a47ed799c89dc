"""The container files, checked statically (no Docker engine on the development machines):
the compose file's replicas run the shipped alerts.yaml as the image expects them to."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from detector.cli.common import load

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = (REPO / "requirements.lock").read_text()
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
# What the operator exports before `docker compose up` (the README's example).
OPERATOR_ENV = {"DETECTOR_DB_URL": "postgresql+psycopg://reader@payments-db/payments"}
_COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _compose_value(value: str) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}."""

    def substitute(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if name in OPERATOR_ENV:
            return OPERATOR_ENV[name]
        assert kind != "?", f"compose refuses to start without {name}: {rest}"
        return rest if kind == "-" else ""

    return _COMPOSE_VARIABLE.sub(substitute, value)


def _replicas() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in COMPOSE["services"].items()
        if service.get("image") == "payment-failure-detector"
    }


def _container_port() -> int:
    (port,) = re.findall(r"^EXPOSE (\d+)$", DOCKERFILE, re.MULTILINE)
    (checked,) = re.findall(r"http://127\.0\.0\.1:(\d+)/healthz", DOCKERFILE)
    assert checked == port, "the health check requests another port than the image exposes"
    return int(port)


def test_the_compose_file_runs_two_replicas_of_the_image_with_their_own_ids() -> None:
    replicas = _replicas()
    assert sorted(replicas) == ["detector-a", "detector-b"]
    ids = {service["environment"]["DETECTOR_REPLICA_ID"] for service in replicas.values()}
    assert ids == set(replicas)
    published = [service["ports"][0].split(":")[0:2] for service in replicas.values()]
    assert published == [["127.0.0.1", "8081"], ["127.0.0.1", "8082"]]


@pytest.mark.parametrize("replica", ["detector-a", "detector-b"])
def test_each_replica_reads_the_shipped_config_with_its_environment(
    replica: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _replicas()[replica]
    (mount,) = service["volumes"]
    source, target, mode = mount.split(":")
    assert (REPO / source).resolve() == REPO / "alerts.yaml"
    assert mode == "ro"
    # The image's command reads the file where the compose file mounts it.
    assert f'"--config", "{target}"' in DOCKERFILE
    environment = {key: _compose_value(str(v)) for key, v in service["environment"].items()}
    for key, value in environment.items():
        monkeypatch.setenv(key, value)

    config = load(argparse.Namespace(config=REPO / "alerts.yaml"))

    # Other containers reach the port the compose file publishes and the health check asks.
    assert config.server.address == ("0.0.0.0", _container_port())
    assert service["ports"][0].endswith(f":{_container_port()}")
    assert config.source.url == OPERATOR_ENV["DETECTOR_DB_URL"]
    # Both replicas share the PostgreSQL state database the compose file runs.
    assert config.state.url.startswith("postgresql+psycopg://detector:detector@state-db/")
    assert service["depends_on"]["state-db"]["condition"] == "service_healthy"
    # SIGTERM's grace: the outbox flush must fit in the time compose waits before SIGKILL.
    grace = int(service["stop_grace_period"].rstrip("s"))
    assert config.schedule.shutdown_grace.total_seconds() < grace


def _locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: each package's pinned version and the hashes its files may have."""
    locked = {}
    for entry in re.split(r"\n(?=[A-Za-z])", LOCK.strip()):
        if entry.startswith("#"):
            continue
        pin = re.match(r"([A-Za-z0-9._-]+)==(\S+)", entry)
        assert pin, f"requirements.lock: not a pinned package: {entry.splitlines()[0]}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)
        locked[canonicalize_name(pin[1])] = (pin[2], hashes)
    return locked


def test_the_image_installs_what_the_lock_pins_for_every_dependency_and_the_build() -> None:
    # pip install --require-hashes refuses a package the lock leaves out; a dependency added to
    # pyproject.toml without re-locking would break the image build, so it fails here first.
    assert re.search(r"pip install .*--require-hashes -r requirements\.lock", DOCKERFILE)
    assert re.search(r"pip install .*--no-deps --no-build-isolation \.", DOCKERFILE)
    locked = _locked()
    needed = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]
    for text in needed:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"requirements.lock pins no {name}: re-lock (docs/operations.md)"
        version, hashes = locked[name]
        assert requirement.specifier.contains(version), f"{name}=={version} is not {text}"
        assert hashes, f"requirements.lock has no hash for {name}"
    assert "psycopg-binary" in locked  # the extra of psycopg[binary] is locked too


def test_the_base_image_is_a_build_argument_of_the_lock_s_python() -> None:
    (base,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", DOCKERFILE, re.MULTILINE)
    (locked_with,) = re.findall(r"autogenerated by pip-compile with Python (\d+\.\d+)", LOCK)
    assert base.startswith(f"python:{locked_with}-")
