"""The JSON Schema of alerts.yaml, generated from the pydantic models that load it.

Editors (e.g. the YAML language server) use it to complete keys and flag mistakes while
typing; ``detector validate`` stays the authority: it also checks what a schema cannot say
(a route naming an unknown receiver, environment variables, regular expressions).
"""

from __future__ import annotations

import json
from typing import Any

from detector.config.document import Config

__all__ = ["SCHEMA_DIALECT", "config_schema", "config_schema_text"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict[str, Any]:
    """alerts.yaml's JSON Schema (draft 2020-12), keys as written in the file."""
    schema = Config.model_json_schema(mode="validation", by_alias=True)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "alerts.yaml of the payment-failure detector",
        **schema,
    }


def config_schema_text() -> str:
    """The schema as ``detector schema`` prints it and docs/alerts.schema.json holds it."""
    return json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"
