"""Shared by the viewer tests: a previewed, catalogued copy of the session stores, a server
on a free loopback port, raw HTTP requests, and the tile arithmetic done independently
(plain formulas and pyproj, not the viewer's code)."""

from __future__ import annotations

import http.client
import math
import shutil
import subprocess
import threading
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
from pyproj import Transformer

from geotessera.catalog.stac import write_catalog
from geotessera.viewer.server import ViewerServer, open_viewer
from test_preview import previewed_stores

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"
R = 6_378_137.0
_SERVED: dict[str, Path] = {}


def served_stores(built: Path, factory) -> Path:
    """A private copy of the previewed session stores with its STAC catalog (once)."""
    if "stores" not in _SERVED:
        src, _ = previewed_stores(built, factory)
        dst = factory.mktemp("viewer") / "stores"
        shutil.copytree(src, dst)
        write_catalog(dst)
        _SERVED["stores"] = dst
    return _SERVED["stores"]


@contextmanager
def running(source, handler=None, **kw):
    """A ViewerServer on 127.0.0.1 and a free port, serving in a thread."""
    server = ViewerServer(open_viewer(str(source), **kw), "127.0.0.1", 0, handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def request(server: ViewerServer, path: str, method: str = "GET", headers=None):
    """(status, headers dict, body) of one raw request: the path is sent exactly as given
    (http.client does not normalise ``..`` or percent-escapes)."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def npm_ci() -> Path:
    """``web/node_modules``, installed from the lock file when missing or stale (the test
    setup step that ``make web-deps`` also runs)."""
    marker = WEB / "node_modules" / ".package-lock.json"
    lock = WEB / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True,
                       capture_output=True, timeout=300)
    return WEB / "node_modules"


# --- independent tile arithmetic ----------------------------------------------------------------


def tile_pixel_lonlat(z: int, x: int, y: int, i, j):
    """Ground point (lon, lat) of the centre of pixel (row i, col j) of tile (z, x, y):
    spherical Web Mercator by formula (numbers or arrays)."""
    n = 256 * 2**z
    px, py = x * 256 + np.asarray(j) + 0.5, y * 256 + np.asarray(i) + 0.5
    lon = px / n * 360.0 - 180.0
    lat = np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * py / n))))
    return lon, lat


def world_pixel(z: int, lon: float, lat: float) -> tuple[float, float]:
    """Global pixel coordinates (x, y) of a point at zoom z."""
    n = 256 * 2**z
    s = math.sin(math.radians(lat))
    return (lon + 180.0) / 360.0 * n, (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * n


@cache
def to_utm(epsg: int) -> Transformer:
    return Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)


def store_pixel(root, level: str, epsg: int, lon: float, lat: float):
    """(row, col) of the level pixel holding (lon, lat), from the level's own attributes."""
    a, _, c, _, e, f = root[level].attrs["spatial:transform"]
    x, y = to_utm(epsg).transform(lon, lat)
    return math.floor((y - f) / e), math.floor((x - c) / a)


def decode_png(data: bytes) -> np.ndarray:
    """(4, h, w) uint8 of PNG bytes, decoded by GDAL (rasterio)."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(data) as mem, mem.open() as src:
            return src.read()
