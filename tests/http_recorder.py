"""A real HTTP server on 127.0.0.1 that records requests and replies as told.

Usage::

    with HttpRecorder() as server:
        server.respond_with([500, 200])          # first request 500, then 200
        ... POST to server.url + "/hook" ...
        assert server.requests[0].json()["event"] == "firing"

Each reply may be a status code, ``(status, body)`` or ``(status, body, headers)``; once
the scripted replies are used up every request gets ``200 ok``. Works in-process and, via
:attr:`HttpRecorder.url`, for a daemon running as a subprocess.

``server.echo = 500`` answers every request with that status and the request itself (line,
headers and body) as the body, as debugging proxies and some error pages do.
``server.trickle = 0.5`` makes it answer one byte every half second (each read well inside
a client's timeout), until the client hangs up or the server stops.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .local_server import LocalServer

__all__ = ["HttpRecorder", "RecordedRequest", "Reply"]

Reply = int | tuple[int, str | bytes] | tuple[int, str | bytes, Mapping[str, str]]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str  # including the query string
    headers: dict[str, str]  # as sent; use header() for a case-insensitive lookup
    body: bytes
    received_at: float = field(default_factory=time.monotonic)

    def header(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return default

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    # Join handler threads on close: nothing may still be writing when a test ends.
    daemon_threads = False
    block_on_close = True
    recorder: HttpRecorder

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) leaves a broken pipe; that is expected.
        return


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # A client that connects and never sends must not hang stop().
    timeout = 10

    def _handle(self) -> None:
        recorder = self.server.recorder
        body = self._read_body()
        with recorder._lock:
            recorder.requests.append(
                RecordedRequest(self.command, self.path, dict(self.headers.items()), body)
            )
            reply = recorder._replies.popleft() if recorder._replies else 200
            delay, trickle, echo = recorder.delay, recorder.trickle, recorder.echo
            recorder._arrived.notify_all()
        if delay:
            time.sleep(delay)
        if echo:
            reply = (echo, f"{self.requestline}\n{self.headers}\n".encode() + body)
        status, payload, headers = _normalise(reply)
        if trickle:
            self.wfile = _Trickle(self.wfile, trickle, recorder._stopping)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if not any(key.lower() == "content-type" for key in headers):
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, template: str, *args: Any) -> None:
        return  # keep test output clean


class _Trickle(io.RawIOBase):
    """Writes one byte per ``interval``; stops early when the server stops."""

    def __init__(self, out: Any, interval: float, stopping: threading.Event) -> None:
        self.out, self.interval, self.stopping = out, interval, stopping

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        for byte in bytes(data):
            if self.stopping.wait(self.interval):
                raise ConnectionAbortedError("the server is stopping")
            self.out.write(bytes([byte]))
            self.out.flush()
        return len(data)


def _normalise(reply: Reply) -> tuple[int, bytes, dict[str, str]]:
    if isinstance(reply, int):
        return reply, b"ok" if 200 <= reply < 300 else b"error", {}
    status, body, *rest = reply
    data = body.encode("utf-8") if isinstance(body, str) else body
    headers = dict(rest[0]) if rest else {}
    return status, data, headers


class HttpRecorder(LocalServer):
    """Records every request to a real local HTTP server; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests: list[RecordedRequest] = []
        self.delay = 0.0  # seconds to wait before replying, to provoke client timeouts
        self.trickle = 0.0  # seconds between the bytes of a reply, to provoke deadlines
        self.echo: int | None = None  # reply with this status and the request as the body
        self._stopping = threading.Event()
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + "/" + path.lstrip("/")

    def respond_with(self, replies: Iterable[Reply], *, replace: bool = False) -> None:
        """Queue replies for the next requests, in order (after any still queued, unless
        ``replace``)."""
        with self._lock:
            if replace:
                self._replies.clear()
            self._replies.extend(replies)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests arrived; for daemons posting async."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{len(self.requests)} of {count} requests in {timeout}s")
            return list(self.requests)

    def start(self) -> HttpRecorder:
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        server = _Server((self.host, 0), _Handler)
        server.recorder = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
