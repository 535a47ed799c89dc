"""The service's one HTTP port: /healthz, /metrics, /api/v1/gateways and the status page.

Served by a stdlib threading HTTP server from a background thread of the daemon. Handlers
only read the immutable :class:`~detector.service.snapshot.Snapshot` the daemon publishes
after each tick, so a slow client never holds up a tick and never sees a half-updated window.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST

from detector.errors import DetectorError
from detector.service.health import gateways_document
from detector.service.snapshot import Snapshot
from detector.service.status_page import render

__all__ = ["Provider", "WebServer", "gateways_json"]

log = logging.getLogger(__name__)

# Nothing on the status page may come from elsewhere; a browser enforces it.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"


class Provider(Protocol):
    def exposition(self) -> bytes: ...

    def snapshot(self) -> Snapshot: ...

    def healthz(self) -> tuple[int, dict[str, Any]]: ...


def gateways_json(snapshot: Snapshot) -> str:
    """``/api/v1/gateways`` (compact: with ``indent`` the json module drops its C encoder)."""
    document = gateways_document(snapshot.health, snapshot.at, snapshot.role)
    return json.dumps(document, separators=(",", ":")) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        route: Callable[[], tuple[int, str, bytes]] | None = {
            "/healthz": self._healthz,
            "/metrics": self._metrics,
            "/api/v1/gateways": self._gateways,
            "/": self._status_page,
        }.get(path)
        if route is None:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        try:
            status, content_type, body = route()
        except Exception:  # a rendering bug must not take the endpoint down
            log.exception("GET %s failed", path)
            status, content_type, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        self._send(status, content_type, body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", _CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, document: dict[str, Any]) -> tuple[int, str, bytes]:
        return status, "application/json", (json.dumps(document, indent=1) + "\n").encode()

    def _healthz(self) -> tuple[int, str, bytes]:
        return self._json(*self.server.provider.healthz())

    def _metrics(self) -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, self.server.provider.exposition()

    def _gateways(self) -> tuple[int, str, bytes]:
        return 200, "application/json", self.server.rendered("gateways", gateways_json)

    def _status_page(self) -> tuple[int, str, bytes]:
        return 200, "text/html; charset=utf-8", self.server.rendered("page", render)

    def log_message(self, template: str, *args: Any) -> None:
        # The stdlib's access log line, under our logger (JSON formatted) at DEBUG.
        log.debug("http: %s", template % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], provider: Provider):
        super().__init__(address, _Handler)
        self.provider = provider
        self._rendered: dict[str, tuple[Snapshot, bytes]] = {}
        # One lock per view, so a router polling the JSON never waits for a page render.
        self._locks = {"page": threading.Lock(), "gateways": threading.Lock()}

    def rendered(self, name: str, render: Callable[[Snapshot], str]) -> bytes:
        """A view of the latest snapshot, rendered on the first request after a tick and
        served from memory until the next one, however many clients ask."""
        snapshot = self.provider.snapshot()
        with self._locks[name]:
            cached = self._rendered.get(name)
            if cached is None or cached[0] is not snapshot:
                cached = self._rendered[name] = (snapshot, render(snapshot).encode())
            return cached[1]


class WebServer:
    """Serves ``provider`` on ``address`` from a background thread until :meth:`stop`."""

    def __init__(self, address: tuple[str, int], provider: Provider):
        try:
            self._server = _Server(address, provider)
        except OSError as exc:
            raise DetectorError(
                f"server.listen: cannot listen on {address[0]}:{address[1]}: {exc.strerror}"
            ) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="detector-http", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
