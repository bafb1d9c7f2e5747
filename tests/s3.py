"""An S3 API server on loopback for tests: moto's ThreadedMotoServer, in this process.

``s3_server`` (session) starts it. ``bucket`` creates a fresh bucket per test and, for that
test only, points the standard AWS environment at the server (``AWS_ENDPOINT_URL``,
``AWS_ALLOW_HTTP``, fake keys, ``AWS_REGION``), so obstore, the CLI in a subprocess and GDAL
all find it; it is restored at the test's teardown, so no later test (a CLI run that logs
where its credentials came from) sees fake credentials. Every request the server answers is
recorded (method, path) from its werkzeug access log, so a test can count requests per object.
``remote`` uploads the session's built stores (``built``) to the test's bucket.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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

    @property
    def env(self) -> dict[str, str]:
        """The AWS environment that points a client at this server."""
        return {**ENV, "AWS_ENDPOINT_URL": self.endpoint}

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
    handler = Requests()
    log = logging.getLogger("werkzeug")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield S3(f"http://{host}:{port}", handler)
    log.removeHandler(handler)
    log.setLevel(level)
    srv.stop()


@pytest.fixture
def bucket(s3_server) -> Iterator[str]:
    """A new empty bucket; its name. The AWS environment points at the server until the
    test ends (a patch of its own, which a test's ``monkeypatch.undo()`` leaves alone)."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in s3_server.env.items():
            mp.setenv(k, v)
        name = f"t{uuid.uuid4().hex[:12]}"
        s3_server.client().create_bucket(Bucket=name)
        yield name


@pytest.fixture
def remote(built, s3_server, bucket) -> str:
    """``built`` (the local stores) uploaded to a fresh bucket: ``s3://bucket/stores``; the
    request log cleared after the upload."""
    client = s3_server.client()
    for dirpath, _, files in os.walk(built):  # symlinks to versions are local-only
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                client.upload_file(str(path), bucket, f"stores/{path.relative_to(built)}")
    s3_server.requests.clear()
    return f"s3://{bucket}/stores"
