"""Reading alerts.yaml: ``${VAR}`` interpolation, validation, and problems explained by key path.

Secrets come from the environment: any string value may hold ``${VAR}`` or
``${VAR:-default}``. Every problem is reported with the key path that holds it, e.g.
``receivers.ops-slack.url: environment variable SLACK_WEBHOOK_URL is not set``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from detector.config.base import DEFAULT_CONFIG_PATH, ConfigError
from detector.config.document import Config
from detector.config.receivers import RECEIVER_TYPES

__all__ = ["load_config", "parse_config"]

log = logging.getLogger(__name__)


class _TextDatesLoader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text, so that pydantic parses them and a date that does
    not parse (``2026-13-45``) is reported with its key path."""


_TextDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _duplicate_keys(
    node: yaml.Node, path: str = "", visited: set[int] | None = None
) -> list[tuple[str, str]]:
    """Every key written twice in one mapping, by key path: YAML itself keeps the last one
    silently, so a setting would vanish without a word."""
    problems: list[tuple[str, str]] = []
    visited = set() if visited is None else visited
    if id(node) in visited:  # an alias: its node was checked where it was anchored
        return problems
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            where = f"{path}.{key.value}" if path else str(key.value)
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first_line:
                seen = first_line[key.tag, key.value]
                lines = f"line {line}" if seen == line else f"lines {seen} and {line}"
                problems.append((where, f"key given twice ({lines}); keep one"))
            else:
                first_line[key.tag, key.value] = line
            problems += _duplicate_keys(value, where, visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, f"{path}[{i}]", visited)
    return problems


def _read_yaml(text: str, source: str) -> Any:
    """The document of ``text``, refused with every duplicate key's path."""
    loader = _TextDatesLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        duplicates = _duplicate_keys(node)
        if duplicates:
            raise ConfigError(duplicates, source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# References that a key fills in itself rather than from the environment.
_PLACEHOLDERS = {"source.trace_url": ("payment_id",)}


def _interpolate(
    node: Any, path: str, env: Mapping[str, str], problems: list[tuple[str, str]]
) -> Any:
    """Replace ``${VAR}`` in every string, recording unset variables with their key path."""
    if isinstance(node, dict):
        return {
            key: _interpolate(value, f"{path}.{key}" if path else str(key), env, problems)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(item, f"{path}[{i}]", env, problems) for i, item in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in _PLACEHOLDERS.get(path, ()):
            return match.group(0)  # filled in later, per message
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append((path, f"environment variable {name} is not set"))
        return ""

    return _ENV_REF.sub(substitute, node)


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in RECEIVER_TYPES and path.startswith("receivers."):
            continue  # pydantic's discriminator tag, not a key the user wrote
        else:
            path += f".{part}" if path else str(part)
    return path


def _explain(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key; check its spelling against docs/configuration.md"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        kind = error["input"].get("type")
        return f"unknown receiver type {kind!r}; use {', '.join(RECEIVER_TYPES)}"
    if kind == "union_tag_not_found":
        return f"say which receiver this is with type: {', '.join(RECEIVER_TYPES)}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def parse_config(
    data: Any, env: Mapping[str, str] | None = None, source: str = DEFAULT_CONFIG_PATH
) -> Config:
    """Validate already-parsed YAML. Raises :class:`ConfigError` listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [("", "the file must hold a mapping of keys such as source:, receivers:")], source
        )
    problems: list[tuple[str, str]] = []
    data = _interpolate(data, "", os.environ if env is None else env, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        unset = {path for path, _ in problems}
        for error in exc.errors():
            message = _explain(error)
            path = _key_path(error["loc"])
            if path in unset:
                continue  # already reported as an unset environment variable
            if ": " in message and message.split(": ", 1)[0].startswith(
                ("route", "gateways.", "detection.", "source.")
            ):
                path, message = message.split(": ", 1)
            problems.append((path, message))
    if problems:
        raise ConfigError(problems, source)
    return config


def load_config(
    path: str | Path = DEFAULT_CONFIG_PATH, env: Mapping[str, str] | None = None
) -> Config:
    """Read and validate an alerts.yaml file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read the file: {exc.strerror}")], str(path)) from exc
    try:
        data = _read_yaml(text, str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(
            [("", f"{where}not valid YAML ({getattr(exc, 'problem', exc)})")], str(path)
        ) from exc
    if data is None:
        log.warning(
            "%s holds no settings (empty or only comments): no gateway is configured and "
            "alerts reach the console receiver only",
            path,
        )
    return parse_config(data, env, str(path))
