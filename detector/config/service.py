"""The detector as a service: the HTTP endpoint (``server:``), the leader lease (``ha:``) and
the dead-man's-switch ping (``heartbeat:``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator

from detector.config.base import Duration, FrozenModel, HttpUrl, at_least, positive

__all__ = ["HaConfig", "HeartbeatConfig", "ServerConfig"]


class ServerConfig(FrozenModel):
    """The HTTP endpoint: /healthz, /metrics, /api/v1/gateways and the status page."""

    enabled: bool = True
    listen: str = "127.0.0.1:8080"
    # Requests are answered by this many worker threads; idle and slow connections hold
    # none (they wait in the server's event loop).
    threads: int = Field(default=8, ge=1, le=256)
    # Connections the kernel queues before the server accepts them, so a burst of pollers
    # waits instead of retrying its SYN (capped by net.core.somaxconn).
    backlog: int = Field(default=1024, ge=1)
    # Open connections at most; past it new ones wait in the backlog until some close.
    connection_limit: int = Field(default=500, ge=1)
    # A connection with no request for this long is closed.
    idle_timeout: Annotated[
        Duration, at_least(timedelta(seconds=1), "the idle timeout must be at least 1s")
    ] = timedelta(seconds=30)
    # /healthz turns 503 once the last successful tick is this many intervals old.
    unhealthy_after: float = Field(default=3, gt=1)
    # /metrics shows the detector_series_* gauges (and the rule gauges of dimension series)
    # of this many series at most, the worst first: thousands of series would make every
    # scrape megabytes. 0: none.
    series_metrics_limit: int = Field(default=100, ge=0)
    # Where people reach the status page (behind a proxy, say); every message links to the
    # gateway's row there.
    external_url: HttpUrl | None = None

    def status_link(self, gateway: str | None) -> str | None:
        """``https://detector.example.com/#gw-stripe``, or None without ``external_url``."""
        if self.external_url is None:
            return None
        base = str(self.external_url).rstrip("/") + "/"
        return base + (f"#gw-{quote(gateway)}" if gateway else "")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r}: write HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
        return value

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class HaConfig(FrozenModel):
    """The leases that let replicas share the work: with one partition, the leader lease
    that lets exactly one replica evaluate and notify; with several, each replica ticks the
    gateways of the partitions it holds."""

    # A dead leader is replaced within this long; the leader renews every third of it.
    lease_ttl: Annotated[
        Duration, at_least(timedelta(seconds=2), "the lease TTL must be at least 2s")
    ] = timedelta(seconds=30)
    # The gateways are split into this many partitions by a hash of their name; each live
    # replica holds about partitions / replicas of them and ticks only their gateways. 1:
    # one leader ticks every gateway and the others wait to take over.
    partitions: int = Field(default=1, ge=1, le=256)
    # Identifies this replica in the lease row; default hostname:pid.
    replica_id: str | None = Field(default=None, min_length=1, max_length=200)


class HeartbeatConfig(FrozenModel):
    """A dead-man's switch (healthchecks.io, Cronitor, ...): the leader requests ``url``
    after a successful tick, at most once per ``every``, so the switch alerts when the
    detector itself stops."""

    # The ping URL grants the right to report the check healthy: a secret, like a webhook's
    # (write it as ${HEARTBEAT_URL}).
    url: SecretStr
    every: Annotated[Duration, positive("the heartbeat interval must be positive")] = timedelta(
        minutes=1
    )
    # GET by default; POST sends a small JSON document (the tick's time and the replica).
    method: Literal["GET", "POST"] = "GET"
    # The whole request, connect to last byte; it runs beside the ticks, never inside one.
    timeout: Annotated[Duration, positive("the heartbeat timeout must be positive")] = timedelta(
        seconds=10
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("the heartbeat url must start with http:// or https://")
        return value
