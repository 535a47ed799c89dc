"""How long one run of an action takes: the benchmarks' one stopwatch."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["seconds", "wall_and_cpu"]


def seconds(action: Callable[..., object], *args: Any) -> float:
    """Elapsed seconds of ``action(*args)``."""
    began = time.perf_counter()
    action(*args)
    return time.perf_counter() - began


def wall_and_cpu(action: Callable[[], object]) -> tuple[float, float]:
    """Elapsed and CPU seconds of one run of ``action``."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu
