"""A deadline for a whole HTTP request: connect, send and the complete response.

The ``timeout`` of ``requests`` bounds each socket operation, so a server that answers one
byte every few seconds keeps a request going for as long as it likes. Here a timer shuts
the request's socket down when the deadline passes, which ends the read in progress
wherever it is (status line, headers or body).

Usage::

    use_deadlines(session)               # once, when the session is shared out
    with Deadline(10.0) as deadline:
        session.post(url, timeout=10.0)  # the socket is shut down 10 s from now
    deadline.expired                     # True if that is what ended it
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection

__all__ = ["Deadline", "use_deadlines"]

# The deadline of the request the current thread is making, if any.
_current = threading.local()


class Deadline:
    """Shuts down the sockets this thread's requests use once ``seconds`` have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Self:
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        _current.deadline = None
        with self._lock:
            self._connections.clear()

    def watch(self, connection: HTTPConnection) -> None:
        """Shut ``connection`` down at the deadline (at once if it has passed)."""
        with self._lock:
            self._connections.append(connection)
            if self.expired:
                _shut_down(connection)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for connection in self._connections:
                _shut_down(connection)


def _shut_down(connection: HTTPConnection) -> None:
    sock = connection.sock
    if sock is None:
        return  # still connecting: the connect timeout ends that
    # The plain socket's shutdown, also under TLS: it wakes the thread blocked in a read,
    # where closing the TLS layer from this thread would race with that read. OSError: the
    # socket is closed already.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watched(connection: HTTPConnection) -> None:
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _watched(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        # Also a kept-alive connection taken from the pool, which does not connect again.
        _watched(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """TLS, watched the same way (the methods above run before HTTPSConnection's)."""


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def _watch_pools(manager: PoolManager) -> PoolManager:
    manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
    return manager


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with connections a :class:`Deadline` can shut down."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, PoolManager) and not proxy.lower().startswith("socks"):
            _watch_pools(manager)
        return manager


def use_deadlines(session: requests.Session) -> None:
    """Give ``session`` the adapter whose connections a :class:`Deadline` can end.

    Idempotent; an adapter it replaces is closed.
    """
    for prefix in ("http://", "https://"):
        current = session.adapters.get(prefix)
        if isinstance(current, _DeadlineAdapter):
            continue
        if current is not None:
            current.close()
        session.mount(prefix, _DeadlineAdapter())
