"""Prometheus Alertmanager (Debian's ``prometheus-alertmanager``) on 127.0.0.1 for a test.

Usage::

    with AlertmanagerServer(tmp_path) as am:
        ... POST to am.url + "/api/v2/alerts" ...
        assert am.alerts()[0]["labels"]["gateway"] == "stripe"

Started with clustering off and its storage in the test's temporary folder. Skips the
test when the package is not installed (``.ci/run`` installs it, and there a missing
binary fails instead).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from .local_server import LocalServer

__all__ = ["AlertmanagerServer"]

BINARIES = ("prometheus-alertmanager", "alertmanager")

CONFIG = """\
route:
  receiver: nobody
receivers:
  - name: nobody
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class AlertmanagerServer(LocalServer):
    def __init__(self, folder: Path):
        binary = next((found for name in BINARIES if (found := shutil.which(name))), None)
        if binary is None:
            message = "prometheus-alertmanager is not installed (apt-get install it)"
            if os.environ.get("DETECTOR_REQUIRE_DATABASES") == "1":
                pytest.fail(message)
            pytest.skip(message)
        self.binary = binary
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> AlertmanagerServer:
        config = self.folder / "alertmanager.yml"
        config.write_text(CONFIG)
        log = (self.folder / "alertmanager.log").open("wb")
        with log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.path={self.folder / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    "Alertmanager did not start:\n" + (self.folder / "alertmanager.log").read_text()
                )
            time.sleep(0.1)

    def alerts(self) -> list[dict[str, Any]]:
        """What ``GET /api/v2/alerts`` lists: alerts that have not ended."""
        response = requests.get(self.url + "/api/v2/alerts", timeout=5)
        response.raise_for_status()
        return list(response.json())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
