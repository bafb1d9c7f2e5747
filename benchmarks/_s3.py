"""moto's S3 server on loopback, in this process, for the benchmarks that read or write
``s3://``: every request it answers counted (method, path, status, body bytes sent), and
range GETs served from the requested bytes alone.

The standard AWS environment is pointed at the server (``AWS_ENDPOINT_URL``,
``AWS_ALLOW_HTTP``, fake keys, ``AWS_REGION``), so obstore, GDAL and CLI subprocesses all find
it, as in ``tests/s3.py``.

Why the range patch: moto answers a range GET by reading the whole object into memory and
slicing it, so each request costs in proportion to the object's size (measured: 93–109 ms
for 128 bytes of a 106 MB tile against 6–13 ms of a 1 MiB object). S3 does not, and a
benchmark of small reads from large objects would measure moto. ``serve_ranges`` makes a
well-formed single range (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) read only its bytes from
moto's buffer; every other answer, headers and status included, is moto's own.

``Moto.latency`` (seconds, default 0) holds every answer that long before moto computes it, in
the server's thread with the GIL released, so requests in flight together wait together: a
stand-in for a network round trip, which moto on loopback does not have.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
       "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
_RANGE = re.compile(r"bytes=(\d+-\d*|-\d+)")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query string
    status: int
    sent: int  # response body bytes
    range: str = ""  # the Range header, if any


@dataclass
class Requests:
    """Requests the server answered, in completion order (appended from its threads)."""

    seen: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, r: Request) -> None:
        with self._lock:
            self.seen.append(r)

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    def take(self) -> list[Request]:
        """The requests so far, and start counting afresh."""
        with self._lock:
            out, self.seen = self.seen, []
        return out


def by_method(requests: list[Request], prefix: str = "") -> Counter:
    """Requests per method on paths starting with ``prefix``."""
    return Counter(r.method for r in requests if r.path.startswith(prefix))


@dataclass
class Moto:
    server: object
    endpoint: str
    requests: Requests

    @property
    def latency(self) -> float:
        return _DELAY["s"]

    @latency.setter
    def latency(self, seconds: float) -> None:
        _DELAY["s"] = seconds

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)

    def stop(self) -> None:
        self.server.stop()


def start_moto(*buckets: str, ranges: bool = True) -> Moto:
    """Start the server on a free loopback port, point the AWS environment at it, count its
    requests, create ``buckets`` (``bench`` if none); ``ranges`` installs ``serve_ranges``."""
    import logging

    from moto.moto_server.threaded_moto_server import DomainDispatcherApplication
    from moto.server import ThreadedMotoServer

    requests = Requests()
    _count_requests(DomainDispatcherApplication, requests)
    if ranges:
        serve_ranges()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    moto = Moto(srv, f"http://{host}:{port}", requests)
    os.environ.update(ENV, AWS_ENDPOINT_URL=moto.endpoint)
    for b in buckets or ("bench",):
        moto.client().create_bucket(Bucket=b)
    requests.clear()
    return moto


_DELAY = {"s": 0.0}  # Moto.latency: one server per process


def _count_requests(app_class: type, requests: Requests) -> None:
    """Wrap the WSGI application's ``__call__`` so every answer is recorded, with its body's
    length, before it is sent (once per process: a second call only swaps the
    ``Requests``). Unlike werkzeug's access log, this sees coloured (4xx) lines too."""
    if hasattr(app_class, "_bench_requests"):
        app_class._bench_requests = requests
        return
    app_class._bench_requests = requests
    call = app_class.__call__

    def counted(self, environ, start_response):
        status = []

        def respond(s, headers, exc_info=None):
            status.append(int(s.split()[0]))
            return start_response(s, headers, exc_info)

        if _DELAY["s"]:
            time.sleep(_DELAY["s"])
        body = call(self, environ, respond)
        try:  # moto's bodies are in memory already: holding the chunks copies nothing
            chunks = list(body)
        finally:
            if hasattr(body, "close"):
                body.close()
        app_class._bench_requests.add(Request(  # before a byte is sent: no count races
            environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),  # the client's next step
            status[0] if status else 0, sum(len(c) for c in chunks),
            environ.get("HTTP_RANGE", "")))
        return chunks

    app_class.__call__ = counted


class _Ranged:
    """A moto key's value that reads only the bytes a slice asks for."""

    def __init__(self, key) -> None:
        self.key = key

    def __len__(self) -> int:
        return self.key.contentsize

    def __getitem__(self, s: slice) -> bytes:
        start, stop, _ = s.indices(len(self))
        with self.key.lock:
            self.key._value_buffer.seek(start)
            return self.key._value_buffer.read(max(0, stop - start))


_local = threading.local()


def serve_ranges() -> None:
    """Patch moto (once per process) so a GET with one well-formed byte range reads only
    that range of the object: while such a request is answered, ``FakeKey.value`` is a
    ``_Ranged`` view that moto's own range handling slices; any answer still holding the
    view (moto fell back to the whole object) gets the whole bytes."""
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    if getattr(S3Response, "_bench_ranges", False):
        return
    whole, answer = FakeKey.value, S3Response.key_response

    def value(self):
        return _Ranged(self) if getattr(_local, "ranged", False) else whole.fget(self)

    def key_response(self, request, full_url, headers):
        _local.ranged = (request.method == "GET"
                         and _RANGE.fullmatch(request.headers.get("range", "")) is not None)
        try:
            status, out_headers, body = answer(self, request, full_url, headers)
        finally:
            _local.ranged = False
        if isinstance(body, _Ranged):
            body = body[:]
        return status, out_headers, body

    FakeKey.value = property(value, whole.fset)
    S3Response.key_response = key_response
    S3Response._bench_ranges = True


def upload_tree(client, src: Path, bucket: str, prefix: str,
                suffixes: tuple[str, ...] | None = None) -> tuple[int, int]:
    """Upload every regular file below ``src`` (symlinks not followed, none uploaded) to
    ``bucket/prefix/<relative path>``; only names ending in ``suffixes`` when given.
    Returns (objects, bytes)."""
    n = nbytes = 0
    for dirpath, _, files in os.walk(src):
        for name in files:
            p = Path(dirpath) / name
            if p.is_symlink() or (suffixes and not name.endswith(suffixes)):
                continue
            key = f"{prefix}/{p.relative_to(src).as_posix()}"
            client.upload_file(str(p), bucket, key)
            n, nbytes = n + 1, nbytes + p.stat().st_size
    return n, nbytes
