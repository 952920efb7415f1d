"""Headless Chromium for the report tests, driven over the DevTools protocol.

Only the standard library: a minimal WebSocket client (RFC 6455, client side) and a CDP
session over it. Chromium runs with networking off:

- every host name resolves to nothing (``--host-resolver-rules``);
- every http(s) request, loopback included (``--proxy-bypass-list=<-loopback>``), goes to
  a *trap* proxy on 127.0.0.1 that records the request line and answers nothing;
- background services (updates, sync, safe browsing, metrics) are disabled.

The page's own requests are recorded from ``Network.requestWillBeSent``; a test asserts
both that the page asked for nothing but itself and that the trap saw no request.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Debian's package: the browser itself, behind the /usr/bin/chromium launcher script (which
# adds Google API keys and remote extensions, i.e. more background requests)
DEBIAN_BINARY = "/usr/lib/chromium/chromium"


def find_chromium() -> str | None:
    """Debian's chromium (CHROMIUM_BIN wins when set)."""
    explicit = os.environ.get("CHROMIUM_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    if os.access(DEBIAN_BINARY, os.X_OK):
        return DEBIAN_BINARY
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class TrapProxy:
    """An HTTP proxy on 127.0.0.1 that records what reaches it and forwards nothing."""

    def __init__(self) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = self._server.getsockname()[1]
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="trap-proxy", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            with connection:
                connection.settimeout(2.0)
                try:
                    head = connection.recv(4096)
                except OSError:
                    head = b""
                line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
                self.requests.append(line or "(connection without a request)")
                try:
                    connection.sendall(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._server.close()


class WebSocket:
    """Just enough of a WebSocket client for the DevTools protocol."""

    def __init__(self, host: str, port: int, path: str, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode("ascii"))
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            response += chunk
        head, _, self._buffer = response.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"WebSocket handshake refused: {head[:200]!r}")

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.sock.recv(max(65536, count - len(self._buffer)))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode("utf-8")
        header = bytearray([0x81])
        length = len(payload)
        if length < 126:
            header.append(0x80 | length)
        elif length < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack(">H", length)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", length)
        mask = os.urandom(4)
        header += mask
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + masked)

    def _send_control(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        self.sock.sendall(
            bytes([0x80 | opcode, 0x80 | len(payload)])
            + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        )

    def recv(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            opcode = first & 0x0F
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if second & 0x80 else None
            payload = self._read(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:  # ping
                self._send_control(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            message += payload
            if first & 0x80:
                return message.decode("utf-8")

    def close(self) -> None:
        try:
            self._send_control(0x8)
        except OSError:
            pass
        self.sock.close()


class Browser:
    """Chromium started with networking off, and one CDP connection to it."""

    def __init__(self, binary: str, workdir: Path, *, width: int = 1400, height: int = 1000) -> None:
        self.trap = TrapProxy()
        self.profile = workdir / "chromium-profile"
        self.profile.mkdir(parents=True, exist_ok=True)
        (self.profile / "DevToolsActivePort").unlink(missing_ok=True)  # a previous browser's
        self.log_path = workdir / "chromium.log"
        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--disable-breakpad",
            "--no-first-run",
            "--no-default-browser-check",
            "--no-pings",
            "--metrics-recording-only",
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,"
            "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,DialMediaRouteProvider",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--proxy-server=http://127.0.0.1:{self.trap.port}",
            "--proxy-bypass-list=<-loopback>",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        # its own process group: closing ends the browser and every helper process it started
        self.process = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        try:
            port, path = self._devtools_address(timeout=60.0)
            self.ws = WebSocket("127.0.0.1", port, path)
        except BaseException:
            self._kill()
            raise

    def _devtools_address(self, timeout: float) -> tuple[int, str]:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"chromium exited with {self.process.returncode}: {self.log_path.read_text(errors='replace')[-2000:]}"
                )
            try:
                lines = marker.read_text().split("\n")
                if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
                    return int(lines[0]), lines[1].strip()
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Call ``method`` and return its result; events received meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            self.ws.sock.settimeout(max(0.1, deadline - time.monotonic()))
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to {method}")

    def wait_for_event(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = json.loads(self.ws.recv())
            except TimeoutError:
                break
            if "method" in message:
                self.events.append(message)
                if predicate(message):
                    return message
        raise TimeoutError("the event did not come")

    def _kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        self._log.close()
        self.trap.close()

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5.0)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.ws.close()
        except OSError:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._kill()  # helpers (zygotes, crashpad) that outlive the browser process


class Page:
    """One tab of :class:`Browser`, with the network and the console recorded."""

    def __init__(self, browser: Browser, *, width: int = 1400, height: int = 1000) -> None:
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Network", "Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def events(self, method: str) -> list[dict[str, Any]]:
        return [
            e["params"]
            for e in self.browser.events
            if e.get("sessionId") == self.session and e.get("method") == method
        ]

    def open(self, url: str, *, ready: str, timeout: float = 120.0) -> None:
        """Navigate to ``url`` and wait until the JS expression ``ready`` is true."""
        self.call("Page.navigate", {"url": url})
        self.browser.wait_for_event(
            lambda e: e.get("sessionId") == self.session and e.get("method") == "Page.loadEventFired",
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while not self.evaluate(ready):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ready} never became true")
            time.sleep(0.1)

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, *, max_height: int = 8000) -> Path:
        """A PNG of the page from the top, at most ``max_height`` CSS pixels tall."""
        self.evaluate("window.scrollTo(0, 0)")  # sticky elements are drawn where the view is
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
        shot = self.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
            timeout=120.0,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def requested_urls(self) -> list[str]:
        return [e["request"]["url"] for e in self.events("Network.requestWillBeSent")]

    def problems(self) -> list[str]:
        """Uncaught exceptions, console errors and browser log errors (CSP violations
        among them) of this page."""
        found = [
            str(e.get("exceptionDetails", {}).get("exception", {}).get("description") or e)
            for e in self.events("Runtime.exceptionThrown")
        ]
        found += [
            " ".join(str(a.get("value", a.get("description", ""))) for a in e.get("args", []))
            for e in self.events("Runtime.consoleAPICalled")
            if e.get("type") in ("error", "assert")
        ]
        found += [
            e["entry"].get("text", "")
            for e in self.events("Log.entryAdded")
            if e["entry"].get("level") == "error"
        ]
        return found
