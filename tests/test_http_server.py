"""The HTTP port as clients meet it: methods, HEAD, idle and impolite connections.

Real HTTP on 127.0.0.1 against a daemon's server: in-process where the test ticks the
daemon itself, as a subprocess where stderr and signals are what is checked.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from detector.config import ConfigError, ServerConfig, parse_config
from detector.service.web import WebServer

from .conftest import T0, Clock, PaymentsDb, in_process_daemon
from .daemon_process import LISTEN, DaemonProcess, wait_until

ROUTES = ("/healthz", "/metrics", "/api/v1/gateways", "/")


@contextmanager
def _served(db: PaymentsDb, tmp_path: Path, settings: ServerConfig) -> Iterator[str]:
    """A daemon that has ticked once, served by a :class:`WebServer`; yields its base URL."""
    db.steady("stripe", T0 - timedelta(minutes=30), minutes=30, per_minute=5)
    config = parse_config({"source": {"url": db.url, "table": db.table}}, env={})
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with requests.Session() as session, in_process_daemon(config, state, Clock(T0), session) as d:
        d.tick()
        server = WebServer(("127.0.0.1", 0), d, settings).start()
        try:
            yield "http://{}:{}".format(*server.address)
        finally:
            server.stop()


def test_every_route_answers_get_and_head_and_refuses_other_methods_with_405(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    with _served(sqlite_db, tmp_path, ServerConfig()) as url:
        for path in ROUTES:
            got = requests.get(url + path, timeout=10)
            assert got.status_code == 200, path
            assert got.content, path
            head = requests.head(url + path, timeout=10)
            assert head.status_code == 200, path
            assert head.content == b"", path
            for header in ("Content-Type", "Cache-Control", "Content-Security-Policy"):
                assert head.headers[header] == got.headers[header], (path, header)
            assert head.headers["Content-Length"] == str(len(got.content)), path
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
                refused = requests.request(method, url + path, data=b"{}", timeout=10)
                assert refused.status_code == 405, (method, path)
                assert refused.headers["Allow"] == "GET, HEAD", (method, path)
                assert f"{path} answers GET, HEAD" in refused.text
        assert requests.get(url + "/nope", timeout=10).status_code == 404
        assert requests.post(url + "/nope", timeout=10).status_code == 404
        page = requests.get(url + "/", timeout=10)
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert requests.get(url + "/api/v1/gateways?pretty", timeout=10).json()["version"] == "1"


def test_idle_connections_hold_no_worker_and_are_closed_after_the_idle_timeout(
    sqlite_db: PaymentsDb, tmp_path: Path
) -> None:
    # Two workers and 50 idle connections plus 10 that stop halfway through a request line:
    # a server with a thread per connection would have none left for the GET.
    settings = ServerConfig(threads=2, idle_timeout=timedelta(seconds=1))
    with _served(sqlite_db, tmp_path, settings) as url, ExitStack() as stack:
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        idle = [stack.enter_context(socket.create_connection(address)) for _ in range(50)]
        for _ in range(10):
            halfway = stack.enter_context(socket.create_connection(address))
            halfway.sendall(b"GET /api/v1/gat")
            idle.append(halfway)
        answer = requests.get(url + "/api/v1/gateways", timeout=20)
        assert answer.status_code == 200
        assert [g["gateway"] for g in answer.json()["gateways"]] == ["stripe"]

        # The server hangs up on each of them once it has been idle for idle_timeout.
        for connection in idle:
            connection.settimeout(20)
            assert connection.recv(1) == b""


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("threads", 0, "server.threads"),
        ("backlog", 0, "server.backlog"),
        ("connection_limit", -1, "server.connection_limit"),
        ("idle_timeout", "0s", "server.idle_timeout: the idle timeout must be at least 1s"),
    ],
)
def test_server_limits_are_checked_naming_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"server": {key: value}}, env={})


def _reset(address: tuple[str, int], request: bytes) -> None:
    """Send ``request`` and hang up with a TCP reset before reading any answer."""
    with socket.create_connection(address) as client:
        client.sendall(request)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _hang_up(address: tuple[str, int], request: bytes) -> None:
    with socket.create_connection(address) as client:
        client.sendall(request)


@pytest.mark.slow
def test_clients_that_hang_up_early_leave_only_json_lines_on_stderr(
    sqlite_db: PaymentsDb, start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    config = tmp_path / "alerts.yaml"
    config.write_text(
        f"source: {{url: '{sqlite_db.url}', table: {sqlite_db.table}}}\n"
        f"state: {{url: 'sqlite:///{tmp_path / 'state.db'}'}}\n"
        "schedule: {interval: 1s}\n"
        f"server: {{listen: '{LISTEN}'}}\n"
    )
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    sqlite_db.steady("stripe", now - timedelta(minutes=30), minutes=30, per_minute=5)
    service = start_daemon(config, tmp_path / "service.log", json_logs=True)
    host, port = service.url.removeprefix("http://").split(":")
    address = (host, int(port))
    wait_until(lambda: service.get("/healthz").json()["status"] == "ok", "a tick")

    for path in ROUTES:
        full = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        for _ in range(10):
            _reset(address, full)
            _hang_up(address, full)
            _hang_up(address, full[:9])
            _hang_up(address, b"")
    # An idle keep-alive connection open at SIGTERM does not hold up the stop.
    with socket.create_connection(address) as lingering:
        lingering.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        lingering.recv(1)
        assert service.get("/api/v1/gateways").status_code == 200
        assert service.terminate() == 0

    lines = service.log.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert not [e for e in entries if "exception" in e]
    http = [e for e in entries if e["logger"].startswith(("waitress", "detector.service.web"))]
    assert not [e for e in http if e["level"] in ("warning", "error")]
    assert entries[-1]["message"] == "detector stopped"
