"""Web Mercator tile arithmetic: where a tile's pixels are on the ground and which store
level matches them. Pure functions, no I/O.

Tiles are the OGC ``WebMercatorQuad`` matrix set (the XYZ scheme of web maps: 256 px,
x east, y south, z = 0 one tile for the world), with bounds from morecantile. Web Mercator
is separable: a pixel column has one longitude and a pixel row one latitude, so a tile's
ground points are two 1-D arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import morecantile
import numpy as np
from pyproj import Transformer

TILE_PX = 256
#: WGS84 equatorial radius: Web Mercator's sphere (EPSG:3857).
EARTH_RADIUS_M = 6_378_137.0
MAX_ZOOM = 24
TMS = morecantile.tms.get("WebMercatorQuad")


@lru_cache(maxsize=1)
def _from_mercator() -> Transformer:
    return Transformer.from_crs(3857, 4326, always_xy=True)


def check_tile(z: int, x: int, y: int) -> None:
    """ValueError unless (z, x, y) is a tile of the matrix set (0 ≤ x, y < 2^z, z ≤ 24)."""
    if not (0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
        raise ValueError(f"no tile z={z} x={x} y={y}: need 0 <= z <= {MAX_ZOOM} and "
                         f"0 <= x, y < 2^z")


def pixel_centres(z: int, x: int, y: int, size: int = TILE_PX) -> tuple[np.ndarray, np.ndarray]:
    """(lon of each pixel column, lat of each pixel row) of tile (z, x, y), at pixel centres,
    west to east and north to south; ``size`` pixels a side."""
    check_tile(z, x, y)
    b = TMS.xy_bounds(x, y, z)
    step_x, step_y = (b.right - b.left) / size, (b.top - b.bottom) / size
    mx = b.left + (np.arange(size) + 0.5) * step_x
    my = b.top - (np.arange(size) + 0.5) * step_y
    lon, _ = _from_mercator().transform(mx, np.zeros(size))
    _, lat = _from_mercator().transform(np.zeros(size), my)
    return np.asarray(lon), np.asarray(lat)


def lonlat_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a tile in degrees."""
    check_tile(z, x, y)
    b = TMS.bounds(x, y, z)
    return b.left, b.bottom, b.right, b.top


def ground_resolution(z: int, lat: float, size: int = TILE_PX) -> float:
    """Metres on the ground per tile pixel at latitude ``lat`` (Web Mercator's scale
    factor is 1 / cos(lat))."""
    return 2 * math.pi * EARTH_RADIUS_M / (size * 2**z) * math.cos(math.radians(lat))


def zoom_for_resolution(metres: float, lat: float = 0.0) -> int:
    """The zoom whose ground resolution at ``lat`` is closest to ``metres`` (in log scale),
    clamped to 0..24."""
    z0 = ground_resolution(0, lat)
    return min(max(round(math.log2(z0 / metres)), 0), MAX_ZOOM)


def nearest_level(pixel_sizes: Sequence[float], resolution: float) -> int:
    """Index of the pixel size closest to ``resolution`` in log scale (each level halves the
    resolution, so this is the level a zoom "matches"); a tie goes to the finer level."""
    if not pixel_sizes:
        raise ValueError("no levels")
    err = [abs(math.log2(p / resolution)) for p in pixel_sizes]
    best = min(err)
    ties = [i for i, e in enumerate(err) if e <= best + 1e-12]
    return min(ties, key=lambda i: pixel_sizes[i])


def utm_zones(lon: np.ndarray) -> np.ndarray:
    """UTM zone of each longitude, ⌊(lon + 180) / 6⌋ + 1 clamped to 1..60 (vectorised
    ``tiles.utm_zone``)."""
    return np.clip(np.floor((np.asarray(lon, np.float64) + 180.0) / 6.0).astype(np.int64) + 1,
                   1, 60)


def tiles_covering(bbox: tuple[float, float, float, float], zoom: int
                   ) -> list[tuple[int, int, int]]:
    """(z, x, y) of every tile at ``zoom`` that intersects the WGS84 ``bbox``."""
    west, south, east, north = bbox
    return [(t.z, t.x, t.y) for t in TMS.tiles(west, south, east, north, [zoom])]
