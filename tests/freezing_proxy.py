"""A TCP proxy on 127.0.0.1 between the detector and a database server, that can freeze."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

__all__ = ["FreezingProxy"]


class FreezingProxy:
    """A TCP proxy on 127.0.0.1 that stops relaying on :meth:`freeze` while keeping every
    connection open: the network fault no server-side timeout can end."""

    def __init__(self, port: int):
        self._upstream = port
        self._frozen = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._frozen.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._upstream))
            self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._relay, args=(a, b), daemon=True).start()

    def _relay(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self._frozen.is_set():
                    time.sleep(0.05)
                target.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        self._frozen.clear()
        for s in self._sockets:
            # shutdown() wakes a relay blocked in recv(); close() alone would leave the
            # connection open until that call returns.
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
