"""Concurrent polling of ``/api/v1/gateways``: the stdlib threading server vs waitress.

Both servers serve the same WSGI application (:class:`~detector.service.web.WebApp`) over
the same snapshot, so the difference is the server alone: ``stdlib`` is wsgiref's
``WSGIServer`` with ``ThreadingMixIn`` (a thread per connection, listen backlog 5, no idle
timeout: what ``http.server.ThreadingHTTPServer`` does), ``waitress`` is
:class:`~detector.service.web.WebServer` with the default ``server.*`` settings.

Polling: ``--clients`` clients start together, as routers do after a tick, and each sends
``--requests`` requests one after the other, each on a new connection, from a separate
process (asyncio, so the clients cost no thread each). Reported: median and p99 latency
(connect to last byte), the share over 1 s (a SYN dropped by a full listen queue is
retried after 1 s), the polls that failed and the polls answered per second of the whole
burst. Idle connections: ``--idle`` connections opened and left silent, then the threads
the server runs and the latency of one poll while they stay open.

Every request has a 10 s deadline, so a run ends by itself.

    .venv/bin/python benchmarks/http_concurrency.py [--clients 100] [--requests 5] [--idle 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.service_overhead import NOW, _counts
from detector.config import parse_config
from detector.engine import Engine
from detector.service.health import gateway_health
from detector.service.snapshot import Snapshot
from detector.service.web import WebApp, WebServer
from detector.source import FrameSource

__all__ = ["main"]

PATH = "/api/v1/gateways"
DEADLINE = 10.0  # seconds for one request, connect included


class _Published:
    """A daemon's published state, fixed: one tick over ``gateways`` simulated gateways."""

    def __init__(self, gateways: int):
        config = parse_config({}, env={})
        engine = Engine(config, FrameSource(_counts(gateways, 60, np.random.default_rng(1))))
        engine.tick(NOW)
        health = gateway_health(engine.window, [], config, None, engine.last_results)
        self._snapshot = Snapshot(NOW, "leader", config, health)

    def exposition(self) -> bytes:
        return b""

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def healthz(self) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "ok"}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


class _StdlibServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@contextlib.contextmanager
def _serving(kind: str, published: _Published) -> Iterator[tuple[str, int]]:
    if kind == "waitress":
        server = WebServer(("127.0.0.1", 0), published).start()
        try:
            yield server.address
        finally:
            server.stop()
        return
    stdlib = _StdlibServer(("127.0.0.1", 0), _QuietHandler)
    stdlib.set_app(WebApp(published))
    thread = threading.Thread(target=stdlib.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", stdlib.server_address[1]
    finally:
        stdlib.shutdown()
        stdlib.server_close()
        thread.join()


async def _get(host: str, port: int) -> float | None:
    """Seconds from connect to the last byte of one poll; None if it failed."""
    began = time.perf_counter()
    request = f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            return await reader.read()  # until the server closes
        finally:
            writer.close()

    try:
        answer = await asyncio.wait_for(exchange(), DEADLINE)
    except (OSError, TimeoutError):
        return None
    status = answer.split(b" ", 2)[1:2]
    return time.perf_counter() - began if status == [b"200"] else None


async def _poll_together(host: str, port: int, clients: int, requests: int) -> list[float | None]:
    async def client() -> list[float | None]:
        return [await _get(host, port) for _ in range(requests)]

    results = await asyncio.gather(*(client() for _ in range(clients)))
    return [latency for each in results for latency in each]


def _clients(host: str, port: int, clients: int, requests: int) -> list[float | None]:
    """Runs in a child process, so the clients do not share the server's interpreter."""
    return asyncio.run(_poll_together(host, port, clients, requests))


@dataclass(frozen=True)
class Measured:
    median: float
    p99: float
    over_1s: float
    failed: int
    polls_per_second: float
    idle_threads: int
    poll_while_idle: float | None


def _poll(
    pool: ProcessPoolExecutor, host: str, port: int, clients: int, requests: int
) -> list[float | None]:
    return pool.submit(_clients, host, port, clients, requests).result()


def measure(kind: str, published: _Published, args: argparse.Namespace) -> Measured:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        pool.submit(_clients, "127.0.0.1", 9, 0, 0).result()  # the child is up and imported
        before = threading.active_count()
        with _serving(kind, published) as (host, port):
            began = time.perf_counter()
            polled = _poll(pool, host, port, args.clients, args.requests)
            elapsed = time.perf_counter() - began
            with contextlib.ExitStack() as idle:
                for _ in range(args.idle):
                    idle.enter_context(socket.create_connection((host, port), timeout=DEADLINE))
                time.sleep(0.5)  # lets the server take them all in
                threads = threading.active_count() - before
                (alone,) = _poll(pool, host, port, 1, 1)
    latencies = np.array([s for s in polled if s is not None])
    return Measured(
        median=float(np.median(latencies)),
        p99=float(np.quantile(latencies, 0.99)),
        over_1s=float(np.mean(latencies > 1)),
        failed=len(polled) - latencies.size,
        polls_per_second=len(polled) / elapsed,
        idle_threads=threads,
        poll_while_idle=alone,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=5, help="per client")
    parser.add_argument("--idle", type=int, default=200, help="idle connections held open")
    parser.add_argument("--gateways", type=int, default=20)
    args = parser.parse_args()
    published = _Published(args.gateways)
    print(
        f"{args.clients} clients x {args.requests} polls of {PATH} ({args.gateways} gateways); "
        f"then {args.idle} idle connections"
    )
    print(
        f"{'server':>9} {'median ms':>10} {'p99 ms':>8} {'> 1 s':>6} {'failed':>7} {'polls/s':>8} "
        f"{'server threads while idle':>26} {'poll while idle ms':>19}"
    )
    for kind in ("stdlib", "waitress"):
        m = measure(kind, published, args)
        alone = "failed" if m.poll_while_idle is None else f"{m.poll_while_idle * 1e3:.1f}"
        print(
            f"{kind:>9} {m.median * 1e3:>10.1f} {m.p99 * 1e3:>8.1f} {m.over_1s:>6.1%} "
            f"{m.failed:>7} {m.polls_per_second:>8.0f} {m.idle_threads:>26} {alone:>19}"
        )


if __name__ == "__main__":
    main()
