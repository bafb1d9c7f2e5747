"""Reading tile files from anywhere a ``Location`` points: headers and byte ranges.

Local tiles are opened as files (and memory-mapped by ``build.assemble``); remote tiles
(``s3://``, ``http(s)://``) are read with range requests through obstore, and landmasks through
GDAL's ``/vsis3/`` or ``/vsicurl/`` configured from the same AWS environment
(``gdal_options``). Remote reads retry transient errors with backoff (obstore's retry
configuration, GDAL's ``GDAL_HTTP_MAX_RETRY``) and then raise ``ArchiveError`` naming the URL.

Guarantee: every name given here is joined with ``Location.child``, so a tile file can only be
read from below the archive root the user named.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
import rasterio

from geotessera.errors import ArchiveError, LocationError
from geotessera.store.location import Location

#: Bytes fetched for a ``.npy`` header; longer headers cost a second request.
NPY_HEAD_BYTES = 4096
#: GDAL retries of transient HTTP errors and the first delay between them (seconds).
GDAL_MAX_RETRY = 4
GDAL_RETRY_DELAY = 0.25


@dataclass(frozen=True, slots=True)
class NpyHeader:
    """A ``.npy`` header: the array starts at byte ``offset`` of the file."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (first axis) of a C-order array."""
        return math.prod(self.shape[1:]) * self.dtype.itemsize


def parse_npy_header(head: bytes) -> NpyHeader:
    """The header at the start of ``head`` (numpy's own reader); ValueError if malformed,
    EOFError-like ValueError if ``head`` is too short to hold it."""
    f = io.BytesIO(head)
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
        else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    return NpyHeader(tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran), f.tell())


def npy_header_length(head: bytes) -> int:
    """Total header length promised by the preamble (magic + length field + header)."""
    if len(head) < 10:
        raise ValueError("file too short for a .npy header")
    major = head[6]
    if major == 1:
        return 10 + int.from_bytes(head[8:10], "little")
    return 12 + int.from_bytes(head[8:12], "little")


def read_npy_header(root: Location, key: str, size: int | None = None) -> NpyHeader:
    """The header of the ``.npy`` object ``key`` below ``root`` with one range request (two
    for a header longer than ``NPY_HEAD_BYTES``). ``size``, when known, bounds the request."""
    end = NPY_HEAD_BYTES if size is None else min(NPY_HEAD_BYTES, size)
    head = read_bytes(root, key, 0, end)
    try:
        need = npy_header_length(head)
        if need > len(head):
            head = read_bytes(root, key, 0, need)
        return parse_npy_header(head)
    except ValueError as e:
        raise ArchiveError(root.child(key), f"unreadable .npy header: {e}") from e


def read_bytes(root: Location, key: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of the object ``key`` below ``root`` in one request; ArchiveError
    naming the URL when it is missing or the server keeps failing after obstore's retries."""
    if end <= start:
        return b""
    try:
        data = root.read_range(key, start, end)
    except LocationError as e:
        raise ArchiveError(root.child(key), e.problem) from e
    except Exception as e:  # obstore's errors share no base class: name the URL and re-raise
        raise ArchiveError(root.child(key), f"cannot read bytes {start}-{end}: {_short(e)}") from e
    if len(data) != end - start:
        raise ArchiveError(root.child(key),
                           f"short read: {len(data)} of {end - start} bytes at {start}")
    return data


def head_stat(root: Location, key: str) -> tuple[int | None, int | None]:
    """(size, mtime ns) of the object ``key`` below ``root`` by one HEAD; (None, None) when
    it does not exist."""
    try:
        meta = root.head(key)
    except LocationError as e:
        raise ArchiveError(root.child(key), e.problem) from e
    except Exception as e:  # obstore's errors share no base class: name the URL and re-raise
        raise ArchiveError(root.child(key), f"cannot HEAD: {_short(e)}") from e
    return (None, None) if meta is None else meta


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def gdal_name(loc: Location) -> str:
    """The name GDAL opens for ``loc``: a local path, ``/vsis3/bucket/key`` or
    ``/vsicurl/URL``. Built from the Location only (never from registry text)."""
    if loc.is_local:
        return str(loc.path)
    if loc.scheme == "s3":
        parts = urlsplit(loc.url)
        return f"/vsis3/{parts.netloc}{parts.path}"
    return f"/vsicurl/{loc.url}"


def gdal_options(loc: Location) -> dict[str, str]:
    """GDAL configuration for reading ``loc``, from the standard AWS environment and the
    location's storage options (which win): endpoint as ``AWS_S3_ENDPOINT`` (host:port),
    ``AWS_HTTPS=NO`` for http endpoints or ``AWS_ALLOW_HTTP``, path-style addressing when an
    endpoint is given, and bounded retries. Empty for local locations."""
    if loc.is_local:
        return {}
    opts = {k.lower(): v for k, v in loc.options}
    env = os.environ
    out = {
        "GDAL_HTTP_MAX_RETRY": str(GDAL_MAX_RETRY),
        "GDAL_HTTP_RETRY_DELAY": str(GDAL_RETRY_DELAY),
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
    }
    if loc.scheme != "s3":
        return out
    endpoint = (opts.get("endpoint") or opts.get("aws_endpoint") or opts.get("endpoint_url")
                or opts.get("aws_endpoint_url") or env.get("AWS_ENDPOINT_URL_S3")
                or env.get("AWS_ENDPOINT_URL"))
    allow_http = opts.get("allow_http", env.get("AWS_ALLOW_HTTP", "")).lower() in (
        "1", "true", "yes")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        out["AWS_S3_ENDPOINT"] = parts.netloc
        out["AWS_VIRTUAL_HOSTING"] = "FALSE"
        if parts.scheme == "http":
            allow_http = True
    if allow_http:
        out["AWS_HTTPS"] = "NO"
    for key, names in (("AWS_ACCESS_KEY_ID", ("access_key_id", "aws_access_key_id")),
                       ("AWS_SECRET_ACCESS_KEY", ("secret_access_key",
                                                  "aws_secret_access_key")),
                       ("AWS_SESSION_TOKEN", ("session_token", "aws_session_token", "token")),
                       ("AWS_REGION", ("region", "aws_region"))):
        value = next((opts[n] for n in names if n in opts), None)
        if value is not None:
            out[key] = value
    if "AWS_REGION" not in out and not env.get("AWS_REGION") and env.get("AWS_DEFAULT_REGION"):
        out["AWS_REGION"] = env["AWS_DEFAULT_REGION"]
    return out


@contextmanager
def open_raster(loc: Location) -> Iterator[rasterio.io.DatasetReader]:
    """The raster at ``loc`` opened by rasterio with ``gdal_options(loc)`` in force."""
    with rasterio.Env(**gdal_options(loc)), rasterio.open(gdal_name(loc)) as src:
        yield src


class RemoteNpy:
    """A C-order ``.npy`` object read by whole rows: each run of consecutive rows is one range
    request, fetched once per object and kept for the life of this reader (a shard task), so
    the core window and the halo pixels next to it share the bytes. Columns outside the
    requested window are the only bytes fetched and not needed; ``fetched`` counts them all."""

    def __init__(self, root: Location, key: str, header: NpyHeader) -> None:
        self.root, self.key, self.header = root, key, header
        self.shape, self.dtype = header.shape, header.dtype
        self.ndim = len(header.shape)
        self.fetched = 0
        self._rows: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, root: Location, key: str) -> RemoteNpy:
        return cls(root, key, read_npy_header(root, key))

    def _ensure(self, rows: np.ndarray) -> None:
        missing = sorted({int(r) for r in rows} - self._rows.keys())
        runs: list[list[int]] = []
        for r in missing:
            if runs and r == runs[-1][1]:
                runs[-1][1] = r + 1
            else:
                runs.append([r, r + 1])
        h = self.header
        for r0, r1 in runs:
            start = h.offset + r0 * h.row_bytes
            data = read_bytes(self.root, self.key, start, start + (r1 - r0) * h.row_bytes)
            self.fetched += len(data)
            block = np.frombuffer(data, dtype=h.dtype).reshape((r1 - r0, *h.shape[1:]))
            for i in range(r1 - r0):
                self._rows[r0 + i] = block[i]

    def window(self, rows: slice, cols: slice) -> np.ndarray:
        """``array[rows, cols]`` as a new array (rows fetched whole, once)."""
        r = np.arange(rows.start, rows.stop)
        self._ensure(r)
        if len(r) == 0:
            return np.empty((0, 0, *self.shape[2:]), dtype=self.dtype)
        return np.stack([self._rows[int(i)][cols] for i in r])

    def gather(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``array[rows, cols]`` for scattered pixels (their rows fetched whole, once)."""
        self._ensure(rows)
        if len(rows) == 0:
            return np.empty((0, *self.shape[2:]), dtype=self.dtype)
        return np.stack([self._rows[int(r)][int(c)] for r, c in zip(rows, cols, strict=True)])
