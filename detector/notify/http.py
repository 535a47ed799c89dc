"""The one HTTP request every HTTP receiver (and the heartbeat) makes, with failures mapped
to :class:`DeliveryError`.

URLs of incoming webhooks are credentials (anyone holding a Slack webhook URL can post to the
channel), so messages name only the scheme and host of a URL, never its path or query, and
the exceptions of ``requests`` (whose text includes the full URL) are never quoted. An error
body is quoted only with the receiver's secrets masked (:mod:`detector.notify.redact`).

``timeout`` is a deadline for the whole request (:mod:`detector.notify.deadline`): a server
that trickles its answer is cut off when it has used it up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from detector.notify.base import DeliveryError
from detector.notify.deadline import Deadline
from detector.notify.redact import redact

__all__ = [
    "BODY_EXCERPT",
    "MAX_RETRY_AFTER",
    "post",
    "redact_url",
    "request",
    "retry_after_delay",
]

log = logging.getLogger(__name__)

# Enough of an error body to see what the server objected to, not a whole HTML page.
BODY_EXCERPT = 300


def redact_url(url: str) -> str:
    """Scheme and host (and port) of ``url``, which is what may be logged.

    >>> redact_url("https://hooks.slack.com/services/T0/B0/secret?x=1")
    'https://hooks.slack.com'
    >>> redact_url("http://user:pw@127.0.0.1:8080/hook")
    'http://127.0.0.1:8080'
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _root_cause(exc: BaseException) -> str:
    """The innermost OS-level reason (e.g. ``ConnectionRefusedError``), without any URL."""
    seen: set[int] = set()
    found: OSError | None = None
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        module = type(current).__module__
        if isinstance(current, OSError) and not module.startswith(("requests", "urllib3")):
            found = current
        for attr in ("__cause__", "__context__", "reason"):
            nested = getattr(current, attr, None)
            if isinstance(nested, BaseException):
                stack.append(nested)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
    if found is None:
        return type(exc).__name__
    name = type(found).__name__
    return f"{name}: {found.strerror}" if found.strerror else name


def _excerpt(response: requests.Response, url: str, secrets: Iterable[str]) -> str:
    try:
        body = response.text
    except (requests.RequestException, UnicodeDecodeError, LookupError):
        return "<unreadable body>"
    # Some servers echo the request in error pages ("/services/T0/B0/secret not found",
    # the Authorization header): masked before the excerpt is cut, so no prefix survives.
    parts = urlsplit(url)
    body = redact(body, [*secrets, *(part for part in (parts.path, parts.query) if len(part) > 1)])
    body = " ".join(body.split())
    if len(body) > BODY_EXCERPT:
        body = body[:BODY_EXCERPT] + "…"
    return body or "<empty body>"


def _failure(
    exc: requests.RequestException, where: str, timeout: float, *, expired: bool
) -> DeliveryError:
    """What a request that raised ``exc`` tells the dispatcher (the text holds no URL path);
    ``where`` is the method and the redacted URL."""
    if expired or isinstance(exc, requests.Timeout):
        # An expired deadline shut the socket down, whatever requests made of that.
        return DeliveryError(f"{where}: no complete response within {timeout:g}s", retryable=True)
    if isinstance(exc, requests.ConnectionError):
        reason = _root_cause(exc)
        return DeliveryError(f"{where}: cannot connect ({reason})", retryable=True)
    # Malformed URL, unsupported scheme and the like: only the config can fix these.
    return DeliveryError(f"{where}: request failed ({type(exc).__name__})", retryable=False)


# A destination may ask for a pause, but not park the alerts it is sent for hours.
MAX_RETRY_AFTER = timedelta(hours=1)


def retry_after_delay(value: str | None, now: datetime) -> timedelta | None:
    """How long a ``Retry-After`` header (seconds, or an HTTP date) asks to wait, at most
    :data:`MAX_RETRY_AFTER`; ``None`` when absent or unreadable.

    >>> now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    >>> retry_after_delay("30", now), retry_after_delay("Mon, 07 Dec 2026 10:02:00 GMT", now)
    (datetime.timedelta(seconds=30), datetime.timedelta(seconds=120))
    >>> retry_after_delay("86400", now), retry_after_delay("soon", now)
    (datetime.timedelta(seconds=3600), None)
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        wait = timedelta(seconds=int(text))
    else:
        try:
            wait = parsedate_to_datetime(text) - now
        except (TypeError, ValueError):
            return None
    return min(max(wait, timedelta(0)), MAX_RETRY_AFTER)


def post(
    session: requests.Session,
    url: str,
    *,
    json_body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float,
    secrets: Iterable[str] = (),
) -> requests.Response:
    """POST and return the 2xx response, or raise :class:`DeliveryError` (see :func:`request`)."""
    return request(
        session,
        "POST",
        url,
        json_body=json_body,
        data=data,
        headers=headers,
        timeout=timeout,
        secrets=secrets,
    )


def request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float,
    secrets: Iterable[str] = (),
) -> requests.Response:
    """Send ``method`` and return the 2xx response, or raise :class:`DeliveryError`.

    ``timeout`` bounds the whole request when ``session`` went through
    :func:`~detector.notify.deadline.use_deadlines` (every receiver's session does);
    ``secrets`` are masked in a quoted error body.

    Retryable: timeouts, connection failures, HTTP 408, 429 and 5xx. Not retryable: other
    statuses (the request itself is wrong, so resending it cannot help) and bad URLs.
    Redirects are not followed: a webhook that moved is a configuration error.
    """
    where = f"{method} {redact_url(url)}"
    # Errors are raised after the except blocks so that they carry no __context__: the
    # requests exception's text holds the full URL and tracebacks end up in logs.
    failure: DeliveryError | None = None
    deadline = Deadline(timeout)
    try:
        with deadline:
            response = session.request(
                method,
                url,
                json=json_body,
                data=data,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            )
    except requests.RequestException as exc:
        failure = _failure(exc, where, timeout, expired=deadline.expired)
    else:
        if deadline.expired:
            # The shut-down socket read as the end of the answer: a status line cut short
            # of its headers and body is no answer.
            response.close()
            failure = DeliveryError(
                f"{where}: no complete response within {timeout:g}s", retryable=True
            )
    if failure is not None:
        raise failure

    status = response.status_code
    if 200 <= status < 300:
        return response
    described = f"HTTP {status} {response.reason or ''}".rstrip()
    body = _excerpt(response, url, secrets)
    response.close()
    if status in (408, 429) or status >= 500:
        retry_after = response.headers.get("Retry-After")
        hint = f" (Retry-After: {retry_after})" if retry_after else ""
        raise DeliveryError(
            f"{where}: {described}{hint}: {body}",
            retryable=True,
            retry_after=retry_after_delay(retry_after, datetime.now(UTC)),
        )
    if 300 <= status < 400:
        location = response.headers.get("Location")
        target = redact_url(urljoin(url, location)) if location else "an unknown location"
        raise DeliveryError(
            f"{where}: {described} redirect to {target}; configure the final URL",
            retryable=False,
        )
    raise DeliveryError(f"{where}: {described}: {body}", retryable=False)
