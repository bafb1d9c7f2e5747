"""``serve``: the map page, Web Mercator tiles, point look-ups and the stores' own files.

Routes (GET and HEAD; OPTIONS answers CORS preflights):

- ``/``, ``/app.js``, … the page bundle (``static/``);
- ``/tiles/{year}/{z}/{x}/{y}.png[?bands=R,G,B]`` a 256 px WebMercatorQuad tile; the
  ``X-GeoTessera-Level`` header names the level used (``X-GeoTessera-Zones`` per store);
- ``/point?lon=…&lat=…&year=…`` the JSON document of ``sample --json`` for one point;
- ``/stores.json`` the years, stores, levels, outlines and stretch the page needs;
- ``/data/…`` the stores' files and the STAC catalog, read-only, with byte ranges;
  ``/stac`` redirects to the catalog under ``/data/``.

Anything else, any path outside the served trees (``..``, encoded or not, symlinks out)
and any directory is 404. Tiles render on a bounded thread pool behind an LRU cache, so
slow renders never hold up file requests (each request has its own thread).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import GeoTesseraError, SelectionError
from .cache import TileService
from .files import DataFiles, LocalFiles, list_static
from .ranges import RangeNotSatisfiable, parse_range
from .sources import Layout, Stretches, YearStores, layout_of, stores_document
from .tiles import RenderedTile, TileRenderer, TileRequest

log = logging.getLogger("geotessera.viewer")
STATIC = Path(__file__).parent / "static"
TILE_URL = "/tiles/{year}/{z}/{x}/{y}.png"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, If-None-Match, If-Modified-Since, Content-Type",
    "Access-Control-Expose-Headers": ("Content-Range, Content-Length, Accept-Ranges, ETag, "
                                      "X-GeoTessera-Level, X-GeoTessera-Zones, "
                                      "X-GeoTessera-Pixel-Size"),
    "Access-Control-Max-Age": "600",
}
MIME = {".json": "application/json", ".js": "text/javascript", ".mjs": "text/javascript",
        ".css": "text/css", ".html": "text/html; charset=utf-8", ".png": "image/png",
        ".map": "application/json"}


class BadRequest(ValueError):
    """A request parameter is missing or malformed (answer 400)."""


@dataclass
class Viewer:
    """Everything the handler serves, opened once."""

    layout: Layout
    files: DataFiles
    years: dict[int, YearStores]
    tiles: TileService
    document: dict[str, Any]
    static: dict[str, Path]
    point_lock: threading.Lock

    def close(self) -> None:
        self.tiles.close()


def open_viewer(source: str, *, workers: int = 2, cache_bytes: int = 64 * 2**20,
                files: DataFiles | None = None) -> Viewer:
    """Open every store of a local ``source`` (stores directory, store or catalog). Raises
    StoreError naming the source when it holds no usable store."""
    layout = layout_of(source)
    years = {y: YearStores(source, y) for y in layout.years}
    renderer = TileRenderer(years, Stretches())
    service = TileService(lambda req: _encode(renderer.render(req)), lambda t: len(t[0]),
                          workers=workers, max_bytes=cache_bytes)
    return Viewer(layout, files or LocalFiles(layout.root, layout.served), years, service,
                  stores_document(layout, years, TILE_URL), list_static(STATIC),
                  threading.Lock())


def _encode(tile: RenderedTile) -> tuple[bytes, dict[str, str]]:
    headers = {"X-GeoTessera-Level": tile.level, "X-GeoTessera-Zones": tile.zones or "none"}
    if tile.pixel_size is not None:
        headers["X-GeoTessera-Pixel-Size"] = f"{tile.pixel_size:g}"
    return tile.png(level=1), headers


class ViewerServer(ThreadingHTTPServer):
    """A threading HTTP server for one ``Viewer``; request threads are daemons."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, viewer: Viewer, host: str = "127.0.0.1", port: int = 8000,
                 handler: type[BaseHTTPRequestHandler] | None = None) -> None:
        self.viewer = viewer
        if ":" in host:  # an IPv6 address such as ::1
            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), handler or Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.viewer.close()


class Handler(BaseHTTPRequestHandler):
    """One request. Every answer carries CORS headers and a Content-Length."""

    protocol_version = "HTTP/1.1"
    #: Headers and body go out in separate writes; with Nagle's algorithm the body of a
    #: keep-alive answer waits for the client's delayed ACK (~40 ms per request).
    disable_nagle_algorithm = True
    server: ViewerServer
    server_version = "geotessera-serve"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
        self._send(HTTPStatus.NO_CONTENT, b"", {})

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._route(head=False)

    # --- routing -------------------------------------------------------------------------

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if path.startswith("/data/"):
                return self._data(path[len("/data/"):], head)
            if path.startswith("/tiles/"):
                return self._tile(path, query, head)
            if path == "/point":
                return self._json(self._point(query), head)
            if path == "/stores.json":
                return self._json(self.server.viewer.document, head)
            if path in ("/stac", "/stac/") and self.server.viewer.layout.catalog:
                return self._redirect("/data/" + self.server.viewer.layout.catalog)
            name = "index.html" if path == "/" else path[1:]
            if name in self.server.viewer.static:
                return self._static(self.server.viewer.static[name], head)
            self._error(HTTPStatus.NOT_FOUND, "not found", head)
        except (BadRequest, SelectionError) as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e), head)
        except GeoTesseraError as e:  # a store the server could not read: name it
            log.error("%s %s: %s", self.command, self.path, e)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(e), head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (e.g. a cancelled tile)
        except Exception as e:  # noqa: BLE001 - answer 500 and log it, never drop silently
            log.exception("%s %s failed", self.command, self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {e}", head)

    # --- routes --------------------------------------------------------------------------

    def _data(self, rel: str, head: bool) -> None:
        files = self.server.viewer.files
        info = files.stat(rel)
        if info is None:
            return self._error(HTTPStatus.NOT_FOUND, "not found", head)
        headers = {"Accept-Ranges": "bytes", "ETag": info.etag,
                   "Last-Modified": self.date_time_string(int(info.mtime)),
                   "Content-Type": MIME.get(Path(rel).suffix, "application/octet-stream")}
        try:
            rng = parse_range(self.headers.get("Range"), info.size)
        except RangeNotSatisfiable:
            headers["Content-Range"] = f"bytes */{info.size}"
            return self._send(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"", headers)
        start, stop, status = 0, info.size, HTTPStatus.OK
        if rng is not None:
            start, stop, status = rng.start, rng.stop, HTTPStatus.PARTIAL_CONTENT
            headers["Content-Range"] = rng.content_range
        self._head(status, stop - start, headers)
        if head:
            return
        try:
            for piece in files.read(rel, start, stop):
                self.wfile.write(piece)
        except OSError as e:  # headers are out: all we can do is end the connection
            if not isinstance(e, (BrokenPipeError, ConnectionResetError)):
                log.error("%s: %s", rel, e)
            self.close_connection = True

    def _tile(self, path: str, query: dict[str, str], head: bool) -> None:
        req = parse_tile_path(path, query.get("bands"))
        if req is None:
            return self._error(HTTPStatus.NOT_FOUND, "not a tile path "
                               "(/tiles/{year}/{z}/{x}/{y}.png)", head)
        if req.year not in self.server.viewer.years:
            return self._error(HTTPStatus.NOT_FOUND, f"no stores for year {req.year}", head)
        png, headers = self.server.viewer.tiles.get(req)
        self._send(HTTPStatus.OK, png, {"Content-Type": "image/png",
                                        "Cache-Control": "no-cache", **headers}, head)

    def _point(self, query: dict[str, str]) -> dict[str, Any]:
        lon, lat, year = _number(query, "lon"), _number(query, "lat"), _number(query, "year")
        if year != int(year) or int(year) not in self.server.viewer.years:
            raise BadRequest(f"year {query['year']}: the source has years "
                             f"{sorted(self.server.viewer.years)}")
        with self.server.viewer.point_lock:
            ys = self.server.viewer.years[int(year)]
            values = ys.reader.sample([(lon, lat)])
        return point_document(self.server.viewer.layout.source, int(year), [(lon, lat)], values)

    def _static(self, path: Path, head: bool) -> None:
        self._send(HTTPStatus.OK, path.read_bytes(),
                   {"Content-Type": MIME.get(path.suffix, "application/octet-stream"),
                    "Cache-Control": "no-cache"}, head)

    # --- answers -------------------------------------------------------------------------

    def _json(self, doc: dict[str, Any], head: bool) -> None:
        body = json.dumps(doc, indent=2).encode()
        self._send(HTTPStatus.OK, body, {"Content-Type": "application/json"}, head)

    def _error(self, status: HTTPStatus, message: str, head: bool) -> None:
        body = json.dumps({"status": "error", "error": message}).encode()
        self._send(status, body, {"Content-Type": "application/json"}, head)

    def _redirect(self, location: str) -> None:
        self._send(HTTPStatus.FOUND, b"", {"Location": location})

    def _head(self, status: HTTPStatus, length: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in {**CORS, **headers, "Content-Length": str(length)}.items():
            self.send_header(k, v)
        self.end_headers()

    def _send(self, status: HTTPStatus, body: bytes, headers: dict[str, str],
              head: bool = False) -> None:
        self._head(status, len(body), headers)
        if body and not head:
            self.wfile.write(body)


def parse_tile_path(path: str, bands: str | None) -> TileRequest | None:
    """``/tiles/{year}/{z}/{x}/{y}.png`` (and ``bands=R,G,B``) → TileRequest; None if the
    path is not a tile's; BadRequest for a tile outside the matrix set or bad bands."""
    parts = path.split("/")
    if len(parts) != 6 or parts[1] != "tiles" or not parts[5].endswith(".png"):
        return None
    fields = [*parts[2:5], parts[5][: -len(".png")]]
    if not all(f.isdigit() for f in fields):
        return None
    year, z, x, y = map(int, fields)
    chosen = None
    if bands is not None:
        try:
            chosen = tuple(int(b) for b in bands.split(","))
        except ValueError:
            raise BadRequest(f"bands={bands}: need three band numbers, e.g. bands=0,1,2")
        if len(chosen) != 3:
            raise BadRequest(f"bands={bands}: need exactly three band numbers")
    try:
        return TileRequest(year, z, x, y, chosen)
    except ValueError as e:
        raise BadRequest(str(e)) from e


def point_document(source: str, year: int, points, values) -> dict[str, Any]:
    """The JSON of ``geotessera-registry sample --json``: status, year, source and per point
    lon, lat and the vector (null where there is no data)."""
    return {"status": "ok", "year": year, "source": source,
            "points": [{"lon": x, "lat": y,
                        "vector": None if math.isnan(v[0]) else [float(f) for f in v]}
                       for (x, y), v in zip(points, values)]}


def _number(query: dict[str, str], name: str) -> float:
    if name not in query:
        raise BadRequest(f"missing ?{name}=")
    try:
        value = float(query[name])
    except ValueError:
        raise BadRequest(f"{name}={query[name]}: not a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name}={query[name]}: not a finite number")
    return value
