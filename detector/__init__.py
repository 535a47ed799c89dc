"""Payment-failure anomaly detector.

The library entry points, importable from here or from their modules::

    from detector import load_config, SqlSource, replay
    from detector.db import connect

Names are imported on first use, so ``import detector.rules`` (or any other part) does not
load the receivers, the database drivers or the service.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "Config": "detector.config",
    "ConfigError": "detector.config",
    "DetectorError": "detector.errors",
    "Engine": "detector.engine",
    "FrameSource": "detector.source",
    "SqlSource": "detector.source",
    "Source": "detector.source",
    "connect": "detector.db",
    "generate": "detector.simulate",
    "load_config": "detector.config",
    "minute_counts": "detector.simulate",
    "parse_config": "detector.config",
    "replay": "detector.backtest",
}

__all__ = [
    "Config",
    "ConfigError",
    "DetectorError",
    "Engine",
    "FrameSource",
    "Source",
    "SqlSource",
    "__version__",
    "connect",
    "generate",
    "load_config",
    "minute_counts",
    "parse_config",
    "replay",
]

if TYPE_CHECKING:
    from detector.backtest import replay
    from detector.config import Config, ConfigError, load_config, parse_config
    from detector.db import connect
    from detector.engine import Engine
    from detector.errors import DetectorError
    from detector.simulate import generate, minute_counts
    from detector.source import FrameSource, Source, SqlSource


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'detector' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
