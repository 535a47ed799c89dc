"""The service's one HTTP port: /healthz, /metrics, /api/v1/gateways, its OpenAPI document
and the status page.

:class:`WebApp` is the WSGI application; :class:`WebServer` serves it with waitress from a
background thread of the daemon: one event loop holds every connection (idle ones cost a
socket, not a thread) and a fixed pool of threads answers requests. Routes only read the
immutable :class:`~detector.service.snapshot.Snapshot` the daemon publishes after each
tick, so a slow client never holds up a tick and never sees a half-updated window.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CONTENT_TYPE_LATEST
from waitress import wasyncore
from waitress.server import TcpWSGIServer, create_server

from detector.config import ServerConfig
from detector.errors import DetectorError
from detector.service.gateways_api import GatewaysAnswers
from detector.service.health import STATUSES
from detector.service.openapi import openapi_json
from detector.service.snapshot import Snapshot
from detector.service.status_page import render
from detector.service.volumes_page import render_volumes

__all__ = ["Provider", "WebApp", "WebServer"]

log = logging.getLogger(__name__)

# Nothing on the status page may come from elsewhere; a browser enforces it.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"
_ALLOW = "GET, HEAD"
_TEXT = "text/plain; charset=utf-8"
_REFRESHING = "/?refresh=1"  # a route key no request path can be
Query = dict[str, str]  # the query string's parameters, the last value of each


class Provider(Protocol):
    def exposition(self) -> bytes: ...

    def snapshot(self) -> Snapshot: ...

    def healthz(self) -> tuple[int, dict[str, Any]]: ...


class WebApp:
    """The WSGI application: every route answers GET and HEAD, other methods get 405."""

    def __init__(self, provider: Provider):
        self.provider = provider
        self._routes: dict[str, Callable[[Query], tuple[int, str, bytes]]] = {
            "/healthz": self._healthz,
            "/metrics": self._metrics,
            "/api/v1/gateways": self._gateways,
            "/api/v1/openapi.json": self._openapi,
            "/": self._status_page,
            _REFRESHING: self._refreshing_status_page,
            "/volumes": self._volumes_page,
        }
        self._rendered: dict[str, tuple[Snapshot, bytes]] = {}
        self._answers: tuple[Snapshot, GatewaysAnswers] | None = None
        # One lock per view, so a router polling the JSON never waits for a page render.
        self._locks = {
            name: threading.Lock() for name in ("page", "refreshing", "gateways", "volumes")
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if path == "/" and query.get("refresh") == "1":
            path = _REFRESHING  # the status page that reloads itself, asked for by the reader
        status, content_type, body = self._answer(method, path, query)
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", _CSP),
        ]
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            headers.append(("Allow", _ALLOW))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        log.debug("http: %s %s %d", method, path, status)
        return [b"" if method == "HEAD" else body]

    def _answer(self, method: str, path: str, query: Query) -> tuple[int, str, bytes]:
        route = self._routes.get(path)
        if route is None:
            return 404, _TEXT, b"not found\n"
        if method not in ("GET", "HEAD"):
            return 405, _TEXT, f"method not allowed: {path} answers {_ALLOW}\n".encode()
        try:
            return route(query)
        except Exception:  # a rendering bug must not take the endpoint down
            log.exception("%s %s failed", method, path)
            return 500, _TEXT, b"internal error\n"

    def _json(self, status: int, document: dict[str, Any]) -> tuple[int, str, bytes]:
        return status, "application/json", (json.dumps(document, indent=1) + "\n").encode()

    def _healthz(self, query: Query) -> tuple[int, str, bytes]:
        return self._json(*self.provider.healthz())

    def _metrics(self, query: Query) -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, self.provider.exposition()

    def _gateways(self, query: Query) -> tuple[int, str, bytes]:
        statuses = [s for s in query.get("status", "").split(",") if s]
        if unknown := sorted(set(statuses) - set(STATUSES)):
            wrong = ", ".join(unknown)
            return self._json(400, {"error": f"unknown status {wrong}: one of {STATUSES}"})
        limit = query.get("limit")
        if limit is not None and not (limit.isdigit() and int(limit) > 0):
            return self._json(400, {"error": f"limit {limit!r}: a whole number from 1"})
        answers = self._gateways_answers()
        body = answers.answer(
            statuses,
            query.get("gateway"),
            int(limit) if limit is not None else None,
            query.get("after"),
        )
        return 200, "application/json", body

    def _gateways_answers(self) -> GatewaysAnswers:
        """The latest snapshot's answers, written on the first request after a tick."""
        snapshot = self.provider.snapshot()
        with self._locks["gateways"]:
            if self._answers is None or self._answers[0] is not snapshot:
                self._answers = (snapshot, GatewaysAnswers(snapshot))
            return self._answers[1]

    def _openapi(self, query: Query) -> tuple[int, str, bytes]:
        return 200, "application/json", openapi_json()

    def _status_page(self, query: Query, refresh: bool = False) -> tuple[int, str, bytes]:
        text, page = query.get("q", "").strip(), query.get("page", "1")
        if not text and page == "1":  # the page most readers open: rendered once a tick
            view = functools.partial(render, refresh=refresh)
            body = self.rendered("refreshing" if refresh else "page", view)
        else:
            number = int(page) if page.isdigit() else 1
            snapshot = self.provider.snapshot()
            body = render(snapshot, refresh=refresh, page=number, query=text).encode()
        return 200, "text/html; charset=utf-8", body

    def _refreshing_status_page(self, query: Query) -> tuple[int, str, bytes]:
        return self._status_page(query, refresh=True)

    def _volumes_page(self, query: Query) -> tuple[int, str, bytes]:
        return 200, "text/html; charset=utf-8", self.rendered("volumes", render_volumes)

    def rendered(self, name: str, render: Callable[[Snapshot], str]) -> bytes:
        """A view of the latest snapshot, rendered on the first request after a tick and
        served from memory until the next one, however many clients ask."""
        snapshot = self.provider.snapshot()
        with self._locks[name]:
            cached = self._rendered.get(name)
            if cached is None or cached[0] is not snapshot:
                cached = self._rendered[name] = (snapshot, render(snapshot).encode())
            return cached[1]


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bound, as the daemon must fail at start-up on a taken port; waitress listens on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener


class WebServer:
    """Serves ``provider`` on ``address`` from a background thread until :meth:`stop`.

    ``settings`` gives the worker threads, the listen backlog, the connection limit and the
    idle timeout (``server.*``; the address comes apart so tests can ask for port 0).
    """

    def __init__(
        self, address: tuple[str, int], provider: Provider, settings: ServerConfig | None = None
    ):
        settings = settings or ServerConfig()
        try:
            listener = _listening_socket(*address)
        except OSError as exc:
            raise DetectorError(
                f"server.listen: cannot listen on {address[0]}:{address[1]}: {exc.strerror}"
            ) from exc
        self.address: tuple[str, int] = listener.getsockname()[:2]
        idle = settings.idle_timeout.total_seconds()
        self._map: dict[int, Any] = {}
        server = create_server(
            WebApp(provider),
            map=self._map,
            sockets=[listener],
            threads=settings.threads,
            backlog=settings.backlog,
            connection_limit=settings.connection_limit,
            channel_timeout=idle,
            cleanup_interval=min(idle, 30),
            # A client that hangs up early is its own business: no traceback for it.
            log_socket_errors=False,
            ident="payment-failure-detector",
        )
        assert isinstance(server, TcpWSGIServer)  # one socket makes one server
        self._server = server
        # Each time the worker pool is busy waitress warns of its queue depth; a burst of
        # pollers would flood the log with it.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="detector-http", daemon=True)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            wasyncore.loop(timeout=1.0, map=self._map, use_poll=True, count=1)
        # Requests in flight finish (bounded by waitress), then every connection closes.
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._map)

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        # Wakes the event loop at once; a loop that woke on its own and saw the flag has
        # closed the trigger already.
        with contextlib.suppress(OSError):
            self._server.pull_trigger()
        self._thread.join()
