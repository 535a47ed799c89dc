"""``detector run`` as a subprocess, as operators start it, for the tests that need a real
process (signals, kills, several replicas).

The daemon is ready once its HTTP server answers ``/healthz``; the tests then wait for what
they need (ticks, notifications, a status) by asking the process, with deadlines that only
bound how long a failure takes to show.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["LISTEN", "DaemonProcess", "unused_port", "wait_until"]

# server.listen for a config the daemon runs from: each process gets its own free port.
LISTEN = "${DETECTOR_TEST_LISTEN}"


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    """Poll ``condition`` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (until someone takes it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DaemonProcess:
    """``detector run --config CONFIG`` in a subprocess, its stderr appended to ``log``.

    The config's ``server.listen`` must be :data:`LISTEN`. Starting returns at once, so
    that several replicas can start together; :meth:`wait_ready` waits for the server.
    """

    def __init__(
        self,
        config: Path,
        log: Path,
        *,
        json_logs: bool = False,
        replica: str = "",
        log_level: str = "INFO",
    ):
        self.config = config
        self.log = log
        self.replica = replica
        port = unused_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DETECTOR_TEST_LISTEN": f"127.0.0.1:{port}",
        }
        if replica:
            env["DETECTOR_REPLICA_ID"] = replica
        options = ["--log-level", log_level, *(["--log-format", "json"] if json_logs else [])]
        with log.open("a") as stderr:  # the child keeps its own copy of the handle
            self.process = subprocess.Popen(
                [sys.executable, "-m", "detector", *options, "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
                cwd=config.parent,
            )
        self.http = requests.Session()

    def wait_ready(self, timeout: float = 30) -> DaemonProcess:
        """Block until ``/healthz`` answers, whatever it says; fail if the process exits."""

        def answers() -> bool:
            assert self.process.poll() is None, self.log.read_text()
            try:
                self.http.get(self.url + "/healthz", timeout=1)
            except requests.ConnectionError:
                return False
            return True

        wait_until(answers, f"the HTTP server of {self.log}", timeout)
        return self

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url + path, timeout=10)

    def gateways(self) -> dict[str, dict[str, Any]]:
        return {g["gateway"]: g for g in self.get("/api/v1/gateways").json()["gateways"]}

    def role(self) -> str | None:
        try:
            return str(self.get("/healthz").json()["role"])
        except requests.ConnectionError:
            return None

    def ticks(self) -> int:
        """Ticks this process has finished, as its ``detector_ticks_total`` counts them."""
        return int(
            sum(
                sample.value
                for family in text_string_to_metric_families(self.get("/metrics").text)
                for sample in family.samples
                if sample.name == "detector_ticks_total"
            )
        )

    def wait_ticks(self, count: int, timeout: float = 30) -> None:
        """Block until ``count`` more ticks have finished."""
        start = self.ticks()

        def ticked() -> bool:
            assert self.process.poll() is None, self.log.read_text()
            return self.ticks() >= start + count

        wait_until(ticked, f"{count} more ticks in {self.log}", timeout)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def close(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
