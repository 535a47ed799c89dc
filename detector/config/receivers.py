"""Where notifications go: the ``receivers:`` section, one model per receiver type, and the
message templates they share."""

from __future__ import annotations

import string
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, field_validator

from detector.config.base import Duration, FrozenModel, HttpUrl, positive

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


class _Receiver(FrozenModel):
    send_resolved: bool = True
    timeout: Duration = timedelta(seconds=10)
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
    # HMAC-SHA256 key for the X-Detector-Signature header (README: verifying a webhook).
    signing_secret: SecretStr | None = None


class SlackReceiver(_Receiver):
    type: Literal["slack"]
    url: SecretStr
    channel: str | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("the Slack incoming-webhook url must start with https://")
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
