"""A real S3 API over HTTP on 127.0.0.1 for tests: moto's server, in a thread.

- :class:`S3Server`: moto's ``ThreadedMotoServer`` on a free port; ``require_auth()``
  switches on credential checks (moto's ``/moto-api/reset-auth``), so wrong credentials
  are refused the way S3 refuses them.
- :class:`FlakyProxy`: an HTTP proxy in front of it that answers the first N requests
  with ``503 SlowDown`` (S3's throttling reply), to see retries happen over the wire.
- fixtures ``moto_server`` (one per test module) and ``s3`` (a fresh bucket, boto3
  pointed at the server through AWS_ENDPOINT_URL_S3 and test credentials).

Import the fixtures into a test module:
``from s3_server import moto_server_fixture, s3_fixture`` (they are named ``moto_server``
and ``s3``).
"""

from __future__ import annotations

import http.client
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

REGION = "us-east-1"
ACCESS_KEY = "AKIAOTELAITESTKEY000"
SECRET_KEY = "otel-ai-test-secret"


class S3Server:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> S3Server:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def _moto_api(self, path: str, body: bytes) -> None:
        request = urllib.request.Request(
            self.endpoint + path, data=body, method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def require_auth(self, on: bool = True) -> None:
        """Check credentials from the next request on (off again with ``on=False``)."""
        self._moto_api("/moto-api/reset-auth", b"0" if on else b"inf")

    def reset(self) -> None:
        self._moto_api("/moto-api/reset", b"")


@dataclass
class S3Env:
    server: S3Server
    bucket: str
    client: Any

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def get(self, key: str) -> tuple[bytes, dict[str, Any]]:
        response = self.client.get_object(Bucket=self.bucket, Key=key)
        return response["Body"].read(), response

    def object_keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))


@pytest.fixture(scope="module", name="moto_server")
def moto_server_fixture() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(name="s3")
def s3_fixture(moto_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Env]:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server.endpoint)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    client = boto3.session.Session().client("s3", endpoint_url=moto_server.endpoint, region_name=REGION)
    bucket = f"otel-ai-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    yield S3Env(moto_server, bucket, client)
    moto_server.require_auth(False)


class FlakyProxy:
    """Forwards HTTP to ``target``; the first ``failures`` requests whose method is in
    ``methods`` get ``503 SlowDown`` instead."""

    def __init__(self, target: str, failures: int, methods: tuple[str, ...] = ("PUT", "POST")) -> None:
        self.target = target.removeprefix("http://")
        self.failures = failures
        self.methods = methods
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    fail = self.command in proxy.methods and proxy.failures > 0
                    if fail:
                        proxy.failures -= 1
                if fail:
                    payload = (
                        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                        b"<Message>Please reduce your request rate.</Message></Error>"
                    )
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    proxy.requests.append((self.command, self.path, 503))
                    return
                connection = http.client.HTTPConnection(proxy.target, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in (
                        "transfer-encoding",
                        "connection",
                        "content-length",
                        "server",
                        "date",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                connection.close()
                proxy.requests.append((self.command, self.path, response.status))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="flaky-proxy", daemon=True)

    def __enter__(self) -> FlakyProxy:  # noqa: PYI034 - as the model's context managers
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
