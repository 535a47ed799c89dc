"""The HTTP API's OpenAPI 3.1 document (``openapi.json`` beside this module), served as
``/api/v1/openapi.json`` and printed by ``detector schema --openapi``."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

__all__ = ["openapi_document", "openapi_json"]


@functools.cache
def openapi_document() -> dict[str, Any]:
    text = resources.files("detector.service").joinpath("openapi.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@functools.cache
def openapi_json() -> bytes:
    return (json.dumps(openapi_document(), indent=1) + "\n").encode()
