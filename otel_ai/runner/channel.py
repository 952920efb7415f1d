"""The wrapper's end of the channel its Python children report on (see
:mod:`otel_ai.propagation`): a local datagram socket, read by a daemon thread."""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable
from typing import Any

from ..propagation import MAX_DATAGRAM

logger = logging.getLogger("otel_ai.runner")


class ChannelServer:
    """Receives JSON datagrams and hands each decoded message to ``on_message``.

    The socket is bound at once (the command may be started with its path), and read
    from :meth:`start` on: what arrives before waits in the socket's buffer."""

    def __init__(self) -> None:
        self._on_message: Callable[[dict[str, Any]], None] = lambda message: None
        # AF_UNIX paths are limited to ~100 bytes: a short name in the temp directory
        self.path = os.path.join(tempfile.gettempdir(), f"otel-ai-{os.getpid()}-{uuid.uuid4().hex[:8]}.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass
        self._sock.bind(self.path)
        self._sock.settimeout(0.2)
        self._stopped = threading.Event()
        self.malformed = 0  # datagrams that were not a JSON object: ignored
        self._thread = threading.Thread(target=self._serve, name="otel_ai-channel", daemon=True)

    def start(self, on_message: Callable[[dict[str, Any]], None]) -> ChannelServer:
        self._on_message = on_message
        self._thread.start()
        return self

    def _wake(self) -> None:
        """An empty datagram to ourselves: the reading thread sees the stop at once."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(b"", self.path)
        except OSError:
            pass  # it sees the stop within its timeout

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                break
            if data:
                self._handle(data)

    def _handle(self, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self.malformed += 1
            return
        if not isinstance(message, dict):
            self.malformed += 1
            return
        try:
            self._on_message(message)
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the channel
            logger.debug("otel_ai: channel message not handled: %s", exc)

    def drain(self) -> None:
        """Handle what is already queued on the socket (at the end of the run)."""
        self._sock.setblocking(False)
        while True:
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, OSError):
                break
            if data:
                self._handle(data)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._wake()
            self._thread.join(1.0)
        self.drain()
        self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
