"""The machine-readable contracts: the OpenAPI document checked against the live answers of a
running daemon, and the JSON Schema of alerts.yaml against what ``detector validate`` says."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from detector.cli import main
from detector.config import ConfigError, parse_config
from detector.config.schema import config_schema, config_schema_text
from detector.service.daemon import Daemon
from detector.service.openapi import openapi_document
from detector.service.web import WebServer

from .conftest import T0, Clock, PaymentsDb, in_process_daemon
from .http_recorder import HttpRecorder

REPO = Path(__file__).resolve().parents[1]


def _strict(schema: Any) -> Any:
    """The schema with every documented object closed: a key the service sends but the
    document does not describe fails the check (clients may still ignore unknown keys)."""
    if isinstance(schema, dict):
        closed = {k: _strict(v) for k, v in schema.items()}
        if "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


class _Contract:
    def __init__(self, document: dict[str, Any]):
        self.document = document
        self.components = _strict(copy.deepcopy(document["components"]))

    def check(self, path: str, response: requests.Response) -> Any:
        """The response is one the document lists for ``path``, in a documented shape."""
        answers = self.document["paths"][path.split("?")[0]]["get"]["responses"]
        assert str(response.status_code) in answers, (path, response.status_code)
        content = answers[str(response.status_code)]["content"]
        media = response.headers["Content-Type"].split(";")[0]
        assert media in content, (path, media)
        if media != "application/json":
            return response.text
        body = response.json()
        schema = {**content[media]["schema"], "components": self.components}
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(body)]
        assert errors == [], (path, errors)
        return body


@pytest.fixture
def served(sqlite_db: PaymentsDb, tmp_path: Path) -> Iterator[tuple[Daemon, Clock, str]]:
    """A daemon serving HTTP on 127.0.0.1, ticked by the test: stripe failing, adyen fine."""
    sqlite_db.steady("stripe", T0 - timedelta(minutes=40), minutes=30, per_minute=10)
    sqlite_db.steady("stripe", T0 - timedelta(minutes=10), minutes=10, per_minute=10, failed=10)
    sqlite_db.steady("adyen", T0 - timedelta(minutes=40), minutes=40, per_minute=10, failed=1)
    with HttpRecorder() as hook:
        config = parse_config(
            {
                "source": {"url": sqlite_db.url, "table": sqlite_db.table},
                "detection": {"outage": {"for": "0s"}},
                "gateways": {"stripe": {"backup": "adyen"}, "adyen": {"sla": 0.2}},
                "receivers": {"hook": {"type": "webhook", "url": hook.url_for("/hook")}},
                "route": {"receivers": ["hook"]},
            },
            env={},
        )
        clock = Clock(T0)
        with (
            requests.Session() as session,
            in_process_daemon(config, f"sqlite:///{tmp_path / 'state.db'}", clock, session) as d,
        ):
            server = WebServer(("127.0.0.1", 0), d).start()
            try:
                host, port = server.address
                yield d, clock, f"http://{host}:{port}"
            finally:
                server.stop()


def test_the_openapi_document_is_valid_and_served_as_shipped(
    served: tuple[Daemon, Clock, str],
) -> None:
    _, _, url = served
    document = openapi_document()
    validate_openapi(document)  # raises on an invalid OpenAPI 3.1 document
    response = requests.get(f"{url}/api/v1/openapi.json", timeout=10)
    assert _Contract(document).check("/api/v1/openapi.json", response) == document
    assert json.loads((REPO / "detector/service/openapi.json").read_text()) == document


def test_every_answer_of_a_live_daemon_matches_the_openapi_document(
    served: tuple[Daemon, Clock, str],
) -> None:
    daemon, clock, url = served
    contract = _Contract(openapi_document())

    def get(path: str) -> Any:
        return contract.check(path, requests.get(url + path, timeout=10))

    starting = get("/healthz"), get("/api/v1/gateways")
    daemon.tick()
    ticking = get("/healthz"), get("/api/v1/gateways")
    for path in ("/metrics", "/", "/?q=str&page=2"):
        get(path)
    failing = get("/api/v1/gateways?status=down,degraded")
    assert [g["gateway"] for g in failing["gateways"]] == ["stripe"]
    assert get("/api/v1/gateways?gateway=adyen")["gateways"][0]["gateway"] == "adyen"
    paged = get("/api/v1/gateways?limit=1")
    assert ([g["gateway"] for g in paged["gateways"]], paged["next"]) == (["adyen"], "adyen")
    assert get("/api/v1/gateways?limit=1&after=adyen")["next"] is None
    assert "whole number" in get("/api/v1/gateways?limit=0")["error"]
    assert "unknown status sideways" in get("/api/v1/gateways?status=sideways")["error"]
    clock.now += timedelta(minutes=10)  # no tick since: stale verdicts, unhealthy
    stale = get("/healthz"), get("/api/v1/gateways")

    assert (starting[0]["status"], starting[1]["gateways"]) == ("starting", [])
    health, gateways = ticking
    assert health["status"] == "ok"
    by_name = {g["gateway"]: g for g in gateways["gateways"]}
    assert (by_name["stripe"]["status"], by_name["stripe"]["backup_status"]) == ("down", "healthy")
    assert "outage" in {a["rule"] for a in by_name["stripe"]["alerts"]}
    assert stale[0]["status"] == "unhealthy"
    assert {g["status"] for g in stale[1]["gateways"]} == {"unknown"}
    # Every documented path answers, and nothing else does.
    assert requests.get(f"{url}/api/v1/nothing", timeout=10).status_code == 404


# --- alerts.yaml -------------------------------------------------------------------------------


def test_the_committed_schema_is_the_generated_one_and_detector_schema_prints_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert (REPO / "docs/alerts.schema.json").read_text() == config_schema_text()
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == config_schema()
    assert main(["schema", "--openapi", "--output", str(tmp_path / "api.json")]) == 0
    assert json.loads((tmp_path / "api.json").read_text()) == openapi_document()


def _validator() -> Draft202012Validator:
    schema = config_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_the_schema_accepts_the_shipped_alerts_yaml_and_what_the_loader_reads() -> None:
    validator = _validator()
    shipped = yaml.safe_load((REPO / "alerts.yaml").read_text())
    assert [e.message for e in validator.iter_errors(shipped)] == []
    # Durations and budgets in every form the loader reads.
    accepted = {
        "schedule": {"interval": 90, "shutdown_grace": "1.5m"},
        "detection": {
            "false_alerts": "2 per 30d",
            "sla_breach": {"rates": ["3x", 0.2], "history": "1w"},
            "outage": {"window": "90s"},
        },
    }
    parse_config(accepted, env={})
    assert [e.message for e in validator.iter_errors(accepted)] == []


@pytest.mark.parametrize(
    "document",
    [
        {"detection": {"outage": {"windw": "5m"}}},  # a misspelt key
        {"schedule": {"interval": "5 minutes"}},  # not a duration the loader reads
        {"schedule": {"interval": -5}},
        {"detection": {"false_alerts": "often"}},
        {"detection": {"sla_breach": {"rates": [1.5]}}},  # a rate above 1
        {"gateways": {"stripe": {"sla": "high"}}},
        {"server": {"threads": "many"}},
    ],
    ids=["unknown-key", "duration", "negative", "budget", "rate", "sla", "threads"],
)
def test_the_schema_rejects_what_validate_rejects(document: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_config(document, env={})
    assert list(_validator().iter_errors(document)) != []
