"""An S3 API server on loopback for tests: moto's ThreadedMotoServer, in this process.

``s3_server`` (session) starts it and points the standard AWS environment at it
(``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``, fake keys, ``AWS_REGION``), so obstore, the CLI
in a subprocess and GDAL all find it. ``bucket`` creates a fresh bucket per test. Every
request the server answers is recorded (method, path) from its werkzeug access log, so a
test can count requests per object.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from dataclasses import dataclass

import pytest

ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}

_LINE = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/[\d.]+" (\d+)')
_ANSI = re.compile(r"\x1b\[[\d;]*m")


class Requests(logging.Handler):
    """Requests seen by the server: (method, path without query, status)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = _LINE.search(_ANSI.sub("", record.getMessage()))  # werkzeug colours 206 and 4xx
        if m:
            self.seen.append((m.group(1), m.group(2).split("?")[0], int(m.group(3))))

    def clear(self) -> None:
        self.seen.clear()

    def to(self, path_part: str) -> list[tuple[str, str, int]]:
        return [r for r in self.seen if path_part in r[1]]


@dataclass(frozen=True)
class S3:
    endpoint: str
    requests: Requests

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **{
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
            "region_name": "us-east-1"})


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=True)
    srv.start()
    host, port = srv.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in [*ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(ENV, AWS_ENDPOINT_URL=endpoint)
    handler = Requests()
    log = logging.getLogger("werkzeug")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield S3(endpoint, handler)
    log.removeHandler(handler)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    srv.stop()


@pytest.fixture
def bucket(s3_server) -> str:
    """A new empty bucket; its name."""
    name = f"t{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name
