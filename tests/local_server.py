"""What every real server the tests start on 127.0.0.1 shares: start/stop as a context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["LocalServer"]


class LocalServer:
    """Subclasses implement ``start()`` (returning self) and ``stop()``."""

    def start(self) -> Self:
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def stop(self) -> None:
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
