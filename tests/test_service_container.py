"""The container files, checked statically (no Docker engine on the development machines):
the compose file's replicas run the shipped alerts.yaml as the image expects them to."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.cli.common import load

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()
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
