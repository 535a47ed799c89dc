"""Keeping the secrets of alerts.yaml out of what is logged and stored.

A receiver that fails may answer with the request it got (an echo in an error page, a
debugging proxy): the bearer token, the routing key, the webhook URL. Every error text
passes through :func:`redact` with the secrets of every configured receiver before it is
logged, stored in the outbox or printed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, SecretStr

__all__ = ["MASK", "redact", "secrets_of"]

MASK = "<redacted>"

# Shorter values would turn ordinary words of a message into masks and protect nothing.
MIN_SECRET_LENGTH = 4


def secrets_of(config: BaseModel) -> frozenset[str]:
    """Every secret value in a receiver's config, in the forms a server may echo it in.

    Secrets are the ``SecretStr`` values (header values, keys, passwords, the Slack URL)
    and the path and query of every URL (the part of a webhook URL that grants access).
    A value such as ``Bearer abc...`` also counts by its token alone.

    >>> from detector.config import WebhookReceiver
    >>> hook = WebhookReceiver.model_validate({"type": "webhook",
    ...     "url": "https://hooks.example/in/T0?token=abcd",
    ...     "headers": {"Authorization": "Bearer s3cr3t-t0ken"}})
    >>> sorted(secrets_of(hook))  # doctest: +NORMALIZE_WHITESPACE
    ['/in/T0', 'Bearer s3cr3t-t0ken', 'Bearer%20s3cr3t-t0ken', 's3cr3t-t0ken',
     'token%3Dabcd', 'token=abcd']
    """
    found: set[str] = set()
    for name, value in _values(config):
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(value, SecretStr):
            found.add(plain)
            found.update(word for word in plain.split() if len(word) >= 8)
        if name == "url" or plain.startswith(("http://", "https://")):
            found.update(_url_secrets(plain))
    return frozenset(
        form for secret in found for form in _forms(secret) if len(form) >= MIN_SECRET_LENGTH
    )


def _values(model: BaseModel) -> Iterable[tuple[str, str | SecretStr]]:
    """(field name, value) of every text in ``model``, nested models and mappings too."""
    for name in type(model).model_fields:
        yield from _texts(name, getattr(model, name))


def _texts(name: str, value: Any) -> Iterable[tuple[str, str | SecretStr]]:
    if isinstance(value, str | SecretStr):
        yield name, value
    elif isinstance(value, BaseModel):
        yield from _values(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(name, item)
    elif isinstance(value, tuple):
        for item in value:
            yield from _texts(name, item)


def _url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    return [part for part in (parts.path, parts.query) if len(part) > 1]


def _forms(secret: str) -> set[str]:
    """The secret as written, as JSON escapes it and as URL-encoding does."""
    return {secret, json.dumps(secret)[1:-1], quote(secret, safe="/")}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``<redacted>``, longest secrets first.

    >>> redact("echo: Authorization: Bearer abcdefgh", {"Bearer abcdefgh", "abcdefgh"})
    'echo: Authorization: <redacted>'
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
