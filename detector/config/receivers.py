"""Where notifications go: the ``receivers:`` section, one model per receiver type, and the
message templates they share."""

from __future__ import annotations

import base64
import binascii
import string
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from detector.config.base import (
    Duration,
    FrozenModel,
    HttpUrl,
    at_most,
    check_http_url,
    positive,
)

__all__ = [
    "RECEIVER_TYPES",
    "TEMPLATE_FIELDS",
    "AlertmanagerReceiver",
    "ConsoleReceiver",
    "EmailReceiver",
    "PagerDutyReceiver",
    "ReceiverConfig",
    "SlackReceiver",
    "Templates",
    "WebhookReceiver",
    "standard_webhooks_key",
]


# What a message template may use: $title and $text are the standard wording.
TEMPLATE_FIELDS = (
    "title",
    "text",
    "summary",
    "event",
    "rule",
    "gateway",
    "severity",
    "at",
    "since",
    "failure_rate",
    "counts",
    "backup_gateway",
    "links",
    "labels",
    "fingerprint",
    "attribution",
    "revenue_at_risk",
)


def _check_template(value: Any) -> str:
    text = str(value)
    try:
        string.Template(text).substitute(dict.fromkeys(TEMPLATE_FIELDS, ""))
    except KeyError as exc:
        fields = ", ".join(f"${name}" for name in TEMPLATE_FIELDS)
        raise ValueError(f"unknown field ${exc.args[0]}; the fields are {fields}") from None
    except ValueError:
        raise ValueError(
            "a $ must start a field such as $gateway or ${gateway}; write $$ for a dollar sign"
        ) from None
    return text


MessageTemplate = Annotated[str, BeforeValidator(_check_template)]


def _check_one_line(value: str | None) -> str | None:
    if value is not None and ("\n" in value or "\r" in value):
        raise ValueError(
            "the title is one line (a mail subject, a Slack header, a PagerDuty summary); "
            "remove the line break, or put the rest in templates.text"
        )
    return value


class Templates(FrozenModel):
    """Overrides of a receiver's wording (Python string.Template: ``$gateway``, ``${rule}``)."""

    # The mail subject, the Slack header, the PagerDuty summary: one line.
    title: Annotated[MessageTemplate | None, AfterValidator(_check_one_line)] = None
    text: MessageTemplate | None = None  # the body


# A delivery pass waits for each request: a longer deadline would stall every other
# receiver's alerts behind one that does not answer.
MAX_TIMEOUT = timedelta(minutes=5)


def _one_or_two_secrets(value: Any) -> Any:
    """One secret, or a list of two while receivers switch from the first to the second."""
    if value is None:
        return None
    secrets = list(value) if isinstance(value, list | tuple) else [value]
    if not 1 <= len(secrets) <= 2 or any(not str(secret) for secret in secrets):
        raise ValueError(
            "give one secret, or a list of two while switching (the old and the new): "
            "requests are then signed with both"
        )
    return tuple(str(secret) for secret in secrets)


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>``.

    >>> standard_webhooks_key("whsec_c2VjcmV0")
    b'secret'
    """
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "a Standard Webhooks secret is whsec_ and base64, e.g. whsec_"
            + base64.b64encode(b"24 random bytes or more").decode()
        ) from None


class _Receiver(FrozenModel):
    send_resolved: bool = True
    timeout: Annotated[
        Duration,
        positive("the timeout must be positive, e.g. 10s"),
        at_most(MAX_TIMEOUT, "the timeout may be at most 5m"),
    ] = timedelta(seconds=10)
    templates: Templates = Templates()


class ConsoleReceiver(_Receiver):
    type: Literal["console"]


class WebhookReceiver(_Receiver):
    type: Literal["webhook"]
    url: HttpUrl
    headers: dict[str, SecretStr] = {}
    # "detector": our versioned document per alert; "alertmanager": Alertmanager's webhook
    # format (version 4), one document per group, for receivers written for Alertmanager.
    format: Literal["detector", "alertmanager"] = "detector"
    # "detector": X-Detector-Timestamp and X-Detector-Signature; "standard-webhooks": the
    # Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature), whose
    # secrets are written whsec_<base64>.
    signature: Literal["detector", "standard-webhooks"] = "detector"
    # HMAC-SHA256 key(s) for the signature headers (docs/receivers.md: verifying a webhook);
    # two during a rotation: every request is then signed with both.
    signing_secret: Annotated[
        tuple[SecretStr, ...] | None, BeforeValidator(_one_or_two_secrets)
    ] = None

    @field_validator("signing_secret")
    @classmethod
    def _standard_secrets(
        cls, value: tuple[SecretStr, ...] | None, info: ValidationInfo
    ) -> tuple[SecretStr, ...] | None:
        if info.data.get("signature") == "standard-webhooks":
            for secret in value or ():
                standard_webhooks_key(secret.get_secret_value())
        return value


class SlackReceiver(_Receiver):
    type: Literal["slack"]
    url: SecretStr
    channel: str | None = None

    @field_validator("url")
    @classmethod
    def _https(cls, value: SecretStr) -> SecretStr:
        # The URL is the credential: sent in clear it could be read and reused by anyone.
        check_http_url(value.get_secret_value(), https=True)
        return value


class EmailReceiver(_Receiver):
    type: Literal["email"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from")
    to: tuple[str, ...] = Field(min_length=1)


class PagerDutyReceiver(_Receiver):
    """PagerDuty Events API v2: one event per alert, deduplicated by the alert's fingerprint."""

    type: Literal["pagerduty"]
    routing_key: SecretStr
    url: HttpUrl = "https://events.pagerduty.com/v2/enqueue"
    source: str = "payment-failure-detector"


class AlertmanagerReceiver(_Receiver):
    """Posts to Prometheus Alertmanager's ``/api/v2/alerts``, which groups and routes itself."""

    type: Literal["alertmanager"]
    url: HttpUrl  # Alertmanager's base URL, e.g. http://alertmanager:9093
    # Alertmanager resolves an alert nobody re-posts by its endsAt; firing alerts are
    # re-posted this often with endsAt four intervals ahead, as Prometheus does.
    resend_interval: Annotated[Duration, positive("the resend interval must be positive")] = (
        timedelta(minutes=1)
    )
    generator_url: str | None = None


ReceiverConfig = Annotated[
    ConsoleReceiver
    | WebhookReceiver
    | SlackReceiver
    | EmailReceiver
    | PagerDutyReceiver
    | AlertmanagerReceiver,
    Field(discriminator="type"),
]
RECEIVER_TYPES = ("console", "webhook", "slack", "email", "pagerduty", "alertmanager")
