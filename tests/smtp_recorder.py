"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it receives.

Usage::

    with SmtpRecorder(credentials={"alerts": "s3cret"}) as smtp:
        ... send to smtp.host:smtp.port ...
        message = smtp.messages[0]              # email.message.EmailMessage
        assert smtp.logins == [("alerts", "s3cret")]

``respond_with(["451 4.3.0 Try again later"])`` scripts the replies to the next DATA
commands; ``refuse_recipient(address, reply)`` rejects one address at RCPT TO.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from .local_server import LocalServer

__all__ = ["RecordedEnvelope", "SmtpRecorder"]


@dataclass(frozen=True)
class RecordedEnvelope:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes


class _Controller(Controller):
    """aiosmtpd's Controller with port 0: reads back the port the OS picked."""

    def _trigger_server(self) -> None:
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _Handler:
    def __init__(self, recorder: SmtpRecorder) -> None:
        self.recorder = recorder

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self.recorder._refused.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        recorder = self.recorder
        with recorder._lock:
            if recorder._replies:
                return recorder._replies.popleft()
            data = bytes(envelope.original_content or envelope.content)
            recorder.envelopes.append(
                RecordedEnvelope(envelope.mail_from, tuple(envelope.rcpt_tos), data)
            )
            recorder.messages.append(message_from_bytes(data, policy=policy.default))
        return "250 Message accepted for delivery"


class SmtpRecorder(LocalServer):
    """Records every mail sent to a real local SMTP server; see the module docstring.

    Parameters
    ----------
    credentials
        username -> password accepted by AUTH (PLAIN and LOGIN, without TLS). None turns
        AUTH off entirely.
    """

    def __init__(
        self, *, credentials: Mapping[str, str] | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self.credentials = dict(credentials) if credentials is not None else None
        self.messages: list[EmailMessage] = []
        self.envelopes: list[RecordedEnvelope] = []
        self.logins: list[tuple[str, str]] = []  # every AUTH attempt, right or wrong
        self._replies: deque[str] = deque()
        self._refused: dict[str, str] = {}
        self._lock = threading.Lock()
        self._controller: _Controller | None = None

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("the server is not running; call start() first")
        return int(self._controller.port)

    def respond_with(self, replies: Iterable[str]) -> None:
        """Reply to the next DATA commands with these SMTP replies, e.g. ``"554 5.6.0 no"``."""
        with self._lock:
            self._replies.extend(replies)

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        self._refused[address] = reply

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode("utf-8")
        password = auth_data.password.decode("utf-8")
        with self._lock:
            self.logins.append((username, password))
        return AuthResult(success=self.credentials.get(username) == password, handled=False)

    def start(self) -> SmtpRecorder:
        if self._controller is not None:
            raise RuntimeError("already started")
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            # Plain-text AUTH is fine on loopback; production servers get STARTTLS.
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": False}
        controller = _Controller(
            _Handler(self),
            hostname=self.host,
            port=0,
            server_hostname="localhost",  # skips a reverse DNS lookup of this host
            ready_timeout=5.0,
            **kwargs,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
