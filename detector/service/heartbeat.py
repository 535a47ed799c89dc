"""Who watches the watcher: a ping to a dead-man's switch after each successful tick.

Services such as healthchecks.io or Cronitor alert when their ping stops arriving, which
covers what the detector cannot report itself: the process gone, every replica stuck, the
payments database unreadable for good. Only the leader pings, and only after a tick that
read the payments and saved its state, at most once per ``heartbeat.every``.

The request runs in a thread of its own with a deadline for the whole of it (as receivers
send), so a slow endpoint never holds a tick; a failed ping is logged with the URL cut to
its scheme and host (the path is the secret) and counted, and never stops anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

import requests

from detector.config import HeartbeatConfig
from detector.notify.base import DeliveryError
from detector.notify.deadline import use_deadlines
from detector.notify.http import redact_url, request
from detector.timeutil import iso_z

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    """Pings ``config.url`` when :meth:`beat` is called and a ping is due; no-op without
    a config. ``on_result`` gets ``"ok"`` or ``"failed"`` after each ping."""

    def __init__(
        self,
        config: HeartbeatConfig | None,
        on_result: Callable[[str], None],
        replica: str | None = None,
    ):
        self.config = config
        self.on_result = on_result
        self.replica = replica
        self.session = requests.Session()
        use_deadlines(self.session)
        self._last: datetime | None = None  # when the last ping was started (tick time)
        self._thread: threading.Thread | None = None

    def beat(self, now: datetime) -> bool:
        """Start a ping for the successful tick at ``now`` if one is due; whether it did.

        Not due: less than ``every`` since the last one started, or that one still running.
        """
        config = self.config
        if config is None or (self._last is not None and now - self._last < config.every):
            return False
        if self.in_flight:
            return False
        self._last = now
        self._thread = threading.Thread(
            target=self._ping, args=(config, now), name="heartbeat", daemon=True
        )
        self._thread.start()
        return True

    @property
    def in_flight(self) -> bool:
        """Whether a ping is being sent now."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Until the ping in flight, if any, has finished (its own deadline bounds it)."""
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self.wait()
        self.session.close()

    def _ping(self, config: HeartbeatConfig, at: datetime) -> None:
        url = config.url.get_secret_value()
        body = None
        if config.method == "POST":
            body = {"status": "ok", "tick_at": iso_z(at), "replica": self.replica}
        try:
            response = request(
                self.session,
                config.method,
                url,
                json_body=body,
                timeout=config.timeout.total_seconds(),
            )
            response.close()
        except DeliveryError as exc:  # its text names only the scheme and host
            log.warning("heartbeat failed: %s", exc)
            self.on_result("failed")
        except Exception:
            # A thread of its own: whatever else goes wrong is logged, never raised.
            log.exception("heartbeat to %s failed", redact_url(url))
            self.on_result("failed")
        else:
            log.debug("heartbeat sent to %s", redact_url(url))
            self.on_result("ok")
