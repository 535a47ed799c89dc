"""Prints notifications; the default receiver, and the one to try a config with."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from detector.config import ConsoleReceiver as ConsoleReceiverConfig
from detector.model import Notification
from detector.notify import messages
from detector.notify.base import Receiver

__all__ = ["ConsoleReceiver"]


class ConsoleReceiver(Receiver):
    """Writes the title and plain-text body of each notification to a stream.

    Parameters
    ----------
    name
        The receiver's name in alerts.yaml.
    config
        Its configuration.
    stream
        Where to write; None means whatever ``sys.stdout`` is at send time.
    """

    def __init__(
        self, name: str, config: ConsoleReceiverConfig, stream: TextIO | None = None
    ) -> None:
        self.name = name
        self.config = config
        self.send_resolved = config.send_resolved
        self.stream = stream

    def deliver(self, notifications: Sequence[Notification]) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        templates = self.config.templates
        title = messages.group_title(notifications, templates)
        stream.write(f"{title}\n{messages.group_text(notifications, templates)}\n")
        # Under a process supervisor stdout is a pipe and block-buffered; an alert that
        # sits in a buffer has not been delivered.
        stream.flush()
