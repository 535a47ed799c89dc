"""Several replicas sharing the gateways (``ha.partitions``), as real ``detector run``
processes on one machine with a PostgreSQL payments table and state database.

Writes ``--gateways`` gateways' payments (``--per-minute`` each a minute, from
``--history`` minutes ago to some minutes ahead, so that the rows keep arriving as the
wall clock moves), then, side by side in one run:

- one replica (``ha.partitions: 1``, the leader ticks every gateway), then three replicas
  (``ha.partitions: 3``) once their partitions are spread: over ``--seconds`` each, the
  ticks of each replica (from its log: gateways evaluated, seconds per tick) and the CPU
  time each process spent per tick (``/proc/PID/stat``). Throughput is gateways ticked per
  second of tick time; with three replicas, the sum over them. The replicas share this
  machine's cores (two here, shared with other work), so their wall-clock throughput is
  bounded by the cores, not by the replicas; the CPU time per tick is the work each does;
- the kill: ``--failing`` gateways (spread over the partitions) fail from now on; once a
  tick has seen it, the replica holding partition 1 is killed (SIGKILL, no release). A
  webhook recorder counts the notifications per gateway: each should fire once (none
  lost, none duplicated), the dead replica's gateways by the replica taking its partition
  over within the lease TTL plus one interval.

    .venv/bin/python benchmarks/replicas.py [--gateways 1200] [--seconds 90] [--interval 10]
        [--ttl 15] [--failing 30]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests
import sqlalchemy as sa

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector.partitions import partition_of
from detector.simulate.schema import payments_table
from detector.timeutil import naive_utc

__all__ = ["main"]

POSTGRES_URL = os.environ.get(
    "DETECTOR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PARTITIONS = 3
AHEAD = timedelta(minutes=30)  # rows written ahead of the clock: the run's future traffic
_TICK = re.compile(r"evaluated (\d+) gateways in ([0-9.]+)s")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the payments ---------------------------------------------------------------------------


def _names(gateways: int) -> list[str]:
    return [f"gw{i:05d}" for i in range(gateways)]


def _frame(
    names: list[str], first: datetime, minutes: int, per_minute: int, failed: bool
) -> pd.DataFrame:
    """``per_minute`` payments a minute per gateway: 2% failed, or all failed."""
    rng = np.random.default_rng(14)
    n = minutes * len(names) * per_minute
    minute = np.repeat(np.arange(minutes), len(names) * per_minute)
    at = np.datetime64(naive_utc(first), "us") + (
        minute * 60_000_000 + rng.integers(0, 60_000_000, n)
    ).astype("timedelta64[us]")
    status = np.where(rng.random(n) < (1.0 if failed else 0.02), "failed", "succeeded")
    return pd.DataFrame(
        {
            "id": [uuid.uuid4().hex for _ in range(n)],
            "created_at": at,
            "gateway": np.tile(np.array(names, dtype=object), minutes * per_minute),
            "status": status,
            "error_code": pd.Series(status).map({"failed": "timeout"}),
        }
    )


def _copy(engine: sa.Engine, name: str, frame: pd.DataFrame) -> None:
    text = io.StringIO()
    frame.to_csv(text, header=False, index=False, date_format="%Y-%m-%d %H:%M:%S.%f")
    columns = ", ".join(frame.columns)
    with engine.begin() as connection:
        dbapi: Any = connection.connection.dbapi_connection
        with (
            dbapi.cursor() as cursor,
            cursor.copy(f"COPY {name} ({columns}) FROM STDIN (FORMAT csv)") as copy,
        ):
            copy.write(text.getvalue())


@contextmanager
def _payments(gateways: int, history: int, per_minute: int) -> Iterator[tuple[sa.Engine, str]]:
    engine = sa.create_engine(POSTGRES_URL)
    name = f"bench_replicas_{uuid.uuid4().hex[:8]}"
    table = payments_table(name)
    table.create(engine)
    try:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        minutes = history + int(AHEAD.total_seconds() // 60)
        _copy(
            engine,
            name,
            _frame(
                _names(gateways),
                now - timedelta(minutes=history),
                minutes,
                per_minute,
                failed=False,
            ),
        )
        with engine.begin() as connection:
            connection.exec_driver_sql(f"ANALYZE {name}")
        yield engine, name
    finally:
        table.drop(engine)
        engine.dispose()


@contextmanager
def _state_database() -> Iterator[str]:
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"state_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


# --- the webhook recorder -------------------------------------------------------------------


class _Recorder(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: _Recorder

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return


# --- the replicas ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def ticks(self) -> list[tuple[int, float]]:
        """(gateways evaluated, seconds) of each tick logged so far."""
        found = _TICK.findall(self.log.read_text(errors="replace"))
        return [(int(g), float(s)) for g, s in found]

    def health(self) -> dict[str, Any]:
        try:
            body: dict[str, Any] = requests.get(self.url + "/healthz", timeout=5).json()
        except (requests.RequestException, ValueError):
            return {}
        return body


def _config(
    directory: Path, source: str, state: str, partitions: int, args: argparse.Namespace, hook: str
) -> Path:
    path = directory / f"alerts-{partitions}.yaml"
    path.write_text(
        json.dumps(
            {
                # The first start's reads of thousands of gateways outlast half an
                # interval (the default limit) on a loaded machine.
                "source": {
                    "url": source,
                    "table": args.table,
                    "query_timeout": f"{args.interval - 1}s",
                },
                "state": {"url": state},
                "schedule": {"interval": f"{args.interval}s"},
                "ha": {"partitions": partitions, "lease_ttl": f"{args.ttl}s"},
                "server": {"listen": "${BENCH_LISTEN}"},
                "detection": {
                    "outage": {"for": f"{2 * args.interval}s", "keep_firing_for": "0s"},
                    "sla_breach": {"enabled": False},
                },
                "receivers": {"hook": {"type": "webhook", "url": hook}},
                "route": {"receivers": ["hook"], "group_interval": "0s"},
            }
        )
    )
    return path


def _start(config: Path, name: str, directory: Path) -> Replica:
    port = _free_port()
    log = directory / f"{name}.log"
    env = {**os.environ, "BENCH_LISTEN": f"127.0.0.1:{port}", "DETECTOR_REPLICA_ID": name}
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "detector", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
    return Replica(name, process, f"http://127.0.0.1:{port}", log)


def _stop(replicas: list[Replica]) -> None:
    for replica in replicas:
        if replica.process.poll() is None:
            replica.process.send_signal(signal.SIGTERM)
    for replica in replicas:
        try:
            replica.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            replica.process.kill()


def _wait(condition: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


@dataclass
class Figures:
    ticks: int
    gateways: float  # per tick, median
    tick_seconds: float  # median
    cpu_per_tick: float

    @property
    def throughput(self) -> float:
        return self.gateways / self.tick_seconds


def _measure(replicas: list[Replica], seconds: float) -> list[Figures]:
    before = [(len(r.ticks()), r.cpu_seconds()) for r in replicas]
    time.sleep(seconds)
    figures = []
    for replica, (ticks_before, cpu_before) in zip(replicas, before, strict=True):
        ticks = replica.ticks()[ticks_before:]
        cpu = replica.cpu_seconds() - cpu_before
        figures.append(
            Figures(
                len(ticks),
                statistics.median(g for g, _ in ticks),
                statistics.median(s for _, s in ticks),
                cpu / max(1, len(ticks)),
            )
        )
    return figures


def _spread(replicas: list[Replica]) -> bool:
    held = [r.health().get("partitions", {}).get("held", []) for r in replicas]
    return all(held) and sorted(p for h in held for p in h) == list(range(PARTITIONS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=1200)
    parser.add_argument("--per-minute", type=int, default=1)
    parser.add_argument("--history", type=int, default=90, help="minutes of payments before now")
    parser.add_argument("--seconds", type=float, default=90, help="measured per phase")
    parser.add_argument("--interval", type=int, default=10, help="schedule.interval, seconds")
    # Well above the longest tick on a loaded machine, so no lease lapses while renewing.
    parser.add_argument("--ttl", type=int, default=15, help="ha.lease_ttl, seconds")
    parser.add_argument("--failing", type=int, default=30)
    args = parser.parse_args()

    recorder = _Recorder()
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    with (
        _payments(args.gateways, args.history, args.per_minute) as (payments, table),
        tempfile.TemporaryDirectory() as tmp,
    ):
        args.table = table
        directory = Path(tmp)
        source = POSTGRES_URL
        print(
            f"{args.gateways} gateways, {args.per_minute} payment(s) a minute each, tick every "
            f"{args.interval}s, lease TTL {args.ttl}s; PostgreSQL payments and state; "
            f"{os.cpu_count()} CPU(s) shared by every process of this machine"
        )
        with _state_database() as state:
            one = [
                _start(_config(directory, source, state, 1, args, recorder.url), "solo", directory)
            ]
            try:
                _wait(lambda: len(one[0].ticks()) >= 2, "the single replica's first ticks", 600)
                solo = _measure(one, args.seconds)
            finally:
                _stop(one)
        with _state_database() as state:
            config = _config(directory, source, state, PARTITIONS, args, recorder.url)
            replicas = [_start(config, f"r{i}", directory) for i in range(3)]
            try:
                _wait(
                    lambda: _spread(replicas) and all(len(r.ticks()) >= 2 for r in replicas),
                    "the partitions to spread",
                    600,
                )
                shared = _measure(replicas, args.seconds)
                _report(solo[0], shared, replicas)
                _kill(replicas, payments, table, recorder, args)
            finally:
                _stop(replicas)
    recorder.shutdown()


def _row(replicas: int, name: str, f: Figures) -> str:
    return (
        f"| {replicas} | {name} | {f.gateways:.0f} | {f.tick_seconds * 1000:.0f} ms "
        f"| {f.cpu_per_tick * 1000:.0f} ms | {f.throughput:,.0f} |"
    )


def _report(solo: Figures, shared: list[Figures], replicas: list[Replica]) -> None:
    print()
    print("| replicas | replica | gateways a tick | tick (median) | CPU a tick | gateways/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(_row(1, "solo", solo))
    for replica, figures in zip(replicas, shared, strict=True):
        print(_row(3, replica.name, figures))
    total = sum(f.throughput for f in shared)
    cpu = statistics.mean(f.cpu_per_tick for f in shared)
    # CPU a tick = fixed + per gateway x gateways, fitted over the four processes: what a
    # process spends whatever it ticks (delivery polls, lease renewals, the state commit,
    # the HTTP snapshot) against what each gateway adds.
    every = [solo, *shared]
    per_gateway, fixed = np.polyfit([f.gateways for f in every], [f.cpu_per_tick for f in every], 1)
    print()
    print(
        f"3 replicas / 1: gateways/s of tick time (summed) x{total / solo.throughput:.2f}; "
        f"CPU a tick per replica x{cpu / solo.cpu_per_tick:.2f} of the single replica's "
        "(tick times are wall clock on the shared cores)"
    )
    print(
        f"CPU a tick, fitted: {fixed * 1000:.0f} ms a process + {per_gateway * 1e6:.0f} us a "
        "gateway"
    )


def _kill(
    replicas: list[Replica],
    payments: sa.Engine,
    table: str,
    recorder: _Recorder,
    args: argparse.Namespace,
) -> None:
    names = _names(args.gateways)
    failing = names[:: max(1, len(names) // args.failing)][: args.failing]
    now = datetime.now(UTC)
    _copy(payments, table, _frame(failing, now - timedelta(minutes=1), 10, 20, failed=True))
    owners = {p: r for r in replicas for p in r.health().get("partitions", {}).get("held", [])}
    victim = owners[1]
    victim_gateways = [g for g in failing if partition_of(g, PARTITIONS) == 1]
    # A tick of the victim's sees the outage (pending: the rule's `for` is two intervals).
    seen = len(victim.ticks())
    _wait(lambda: len(victim.ticks()) > seen, "a tick of the victim", 60)
    victim.process.kill()
    killed = time.monotonic()
    survivors = [r for r in replicas if r is not victim]
    _wait(
        lambda: any(1 in r.health().get("partitions", {}).get("held", []) for r in survivors),
        "partition 1 to move",
        120,
    )
    moved = time.monotonic() - killed
    expected = set(failing)
    _wait(
        lambda: (
            {b["labels"]["gateway"] for b in list(recorder.bodies) if b["event"] == "firing"}
            >= expected
        ),
        "every failing gateway's alert",
        180,
    )
    time.sleep(3 * args.interval)  # a duplicate would arrive by now
    fired = Counter(b["labels"]["gateway"] for b in list(recorder.bodies) if b["event"] == "firing")
    duplicates = sum(n - 1 for g, n in fired.items() if g in expected and n > 1)
    lost = len(expected - set(fired))
    print()
    print(
        f"kill: {len(failing)} failing gateways ({len(victim_gateways)} in the killed replica's "
        f"partition 1); partition 1 moved {moved:.1f}s after the SIGKILL (TTL {args.ttl}s, "
        f"interval {args.interval}s); notifications: {sum(fired[g] for g in expected)} firing, "
        f"{duplicates} duplicate(s), {lost} lost"
    )


if __name__ == "__main__":
    main()
