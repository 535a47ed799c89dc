"""Email over SMTP: one multipart/alternative message (plain text and HTML) per notification."""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from functools import cache

from detector import config as cfg
from detector.config import EmailReceiver as EmailReceiverConfig
from detector.model import Notification
from detector.notify import messages
from detector.notify.base import DeliveryError, Receiver
from detector.notify.redact import redact, secrets_of

__all__ = ["EmailReceiver", "build_message", "one_line"]

log = logging.getLogger(__name__)


@cache
def _local_hostname() -> str:
    # smtplib looks the FQDN up on every connection; with slow DNS that eats the timeout.
    return socket.getfqdn()


def _domain(address: str) -> str:
    domain = parseaddr(address)[1].rpartition("@")[2]
    return domain or "localhost"


def thread_id(n: Notification, domain: str) -> str:
    """The Message-ID of the mail that announced this alert's episode firing.

    Reminders, escalations and the resolution reply to it, so mail clients show one
    conversation per episode.
    """
    thread = re.sub(r"[^A-Za-z0-9._-]", "-", n.fingerprint)[:64] or "alert"
    episode = re.sub(r"[^0-9]", "", n.episode)
    return f"<alert-{thread}-{episode}@{domain}>"


def one_line(text: str) -> str:
    r"""``text`` for a mail header: every run of whitespace, line breaks too, as one space.

    A line break would end the header (and start another one, such as ``Bcc:``); the email
    package refuses it instead, which would lose the mail.

    >>> one_line("[FIRING critical] outage on stripe\r\nBcc: x@evil")
    '[FIRING critical] outage on stripe Bcc: x@evil'
    """
    return " ".join(text.split())


def build_message(
    ns: Sequence[Notification],
    sender: str,
    to: tuple[str, ...],
    templates: cfg.Templates | None = None,
) -> EmailMessage:
    """One mail for ``ns`` (usually one alert, or a group), worded by
    :mod:`detector.notify.messages`: text and HTML.

    ``templates`` change the Subject and the plain-text part; the HTML part keeps the
    standard table of figures.
    """
    domain = _domain(sender)
    msg = EmailMessage()
    # Gateway names and other label values come from the payments data.
    msg["Subject"] = one_line(messages.group_title(ns, templates))
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(usegmt=True)
    threads = list(dict.fromkeys(thread_id(n, domain) for n in ns))
    first = ns[0]
    if len(ns) == 1 and first.event == "firing" and first.at == first.episode:
        msg["Message-ID"] = threads[0]
    else:
        # make_msgid's default domain is this host's FQDN, which needs DNS; the sender's
        # domain is what a Message-ID should carry anyway.
        keys = "\n".join(n.idempotency_key for n in ns)
        digest = hashlib.sha256(keys.encode()).hexdigest()[:16]
        msg["Message-ID"] = make_msgid(idstring=digest, domain=domain)
        msg["In-Reply-To"] = threads[0]
        msg["References"] = " ".join(threads)
    # RFC 3834: stops vacation auto-replies from answering an alert.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Idempotency-Key"] = one_line(", ".join(n.idempotency_key for n in ns))
    msg.set_content(messages.group_text(ns, templates))
    msg.add_alternative(messages.group_html(ns), subtype="html")
    return msg


def _reply(code: int, error: bytes | str) -> str:
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return f"{code} {' '.join(text.split())}".strip()


class EmailReceiver(Receiver):
    """Sends each notification as an email through an SMTP server.

    Plain SMTP, STARTTLS (``starttls: true``) or implicit TLS (``ssl: true``, port 465),
    with AUTH when a username is configured. Transient failures (network, timeouts, 4xx
    replies) raise a retryable :class:`DeliveryError`; permanent 5xx replies (recipient
    refused, authentication failed) a non-retryable one.

    Parameters
    ----------
    name
        The receiver's name in alerts.yaml.
    config
        Its configuration.
    """

    def __init__(self, name: str, config: EmailReceiverConfig) -> None:
        self.name = name
        self.config = config
        self.send_resolved = config.send_resolved
        self.secrets = secrets_of(config)

    def deliver(self, notifications: Sequence[Notification]) -> None:
        config = self.config
        msg = build_message(notifications, config.sender, config.to, config.templates)
        try:
            refused = self._deliver(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            replies = "; ".join(
                f"{rcpt}: {_reply(code, error)}" for rcpt, (code, error) in exc.recipients.items()
            )
            # Retry only if every refusal was temporary: otherwise some got it already.
            temporary = all(400 <= code < 500 for code, _ in exc.recipients.values())
            raise self._error(f"all recipients refused ({replies})", temporary) from exc
        except smtplib.SMTPResponseException as exc:
            # Covers authentication, sender refused, data refused and connect replies.
            kind = type(exc).__name__.removeprefix("SMTP")
            temporary = not 500 <= exc.smtp_code < 600
            raise self._error(
                f"{kind}: {_reply(exc.smtp_code, exc.smtp_error)}", temporary
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise self._error(f"{exc} (check starttls/ssl/username in alerts.yaml)", False) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise self._error(f"server disconnected: {exc}", True) from exc
        except smtplib.SMTPException as exc:
            # E.g. "No suitable authentication method found": the setup, not the moment.
            raise self._error(str(exc), False) from exc
        except ssl.SSLCertVerificationError as exc:
            raise self._error(f"TLS certificate not trusted: {exc.verify_message}", False) from exc
        except (OSError, UnicodeError) as exc:
            # Refused, reset, unreachable, DNS failure, timeout: all may pass.
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            raise self._error(f"cannot reach the server ({detail})", True) from exc
        if refused:
            # Some recipients got the mail; a retry would send it to them twice.
            log.warning(
                "email receiver %s: %d recipient(s) refused: %s",
                self.name,
                len(refused),
                ", ".join(
                    f"{rcpt} ({_reply(code, error)})" for rcpt, (code, error) in refused.items()
                ),
            )

    def _deliver(self, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
        cfg = self.config
        timeout = cfg.timeout.total_seconds()
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if cfg.ssl:
            smtp = smtplib.SMTP_SSL(
                cfg.host,
                cfg.port,
                local_hostname=_local_hostname(),
                timeout=timeout,
                context=context,
            )
        else:
            smtp = smtplib.SMTP(
                cfg.host, cfg.port, local_hostname=_local_hostname(), timeout=timeout
            )
        with smtp:
            if cfg.starttls and not cfg.ssl:
                smtp.starttls(context=context)
            if cfg.username:
                password = cfg.password.get_secret_value() if cfg.password else ""
                smtp.login(cfg.username, password)
            return smtp.send_message(
                msg, from_addr=parseaddr(cfg.sender)[1] or cfg.sender, to_addrs=list(cfg.to)
            )

    def _error(self, detail: str, retryable: bool) -> DeliveryError:
        where = f"{self.config.host}:{self.config.port}"
        # Servers have been known to echo credentials in AUTH failure replies.
        message = redact(f"email via {where}: {detail}", self.secrets)
        return DeliveryError(message, retryable=retryable)
