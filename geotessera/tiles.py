"""Tile naming, archive paths and each tile's UTM grid. Pure: opens no files.

The grid follows the landmask convention of the real archive: project the four corners of
the 0.1° cell to the tile's UTM zone, take the raw upper-left corner (not snapped) and
``round()`` the sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pyproj import Transformer

from geotessera.types import TileGrid, TileKey

EMBEDDINGS_DIR = "global_0.1_degree_representation"
LANDMASKS_DIR = "global_0.1_degree_tiff_all"
TILE_NAME_RE = re.compile(r"^grid_(-?\d+\.\d+)_(-?\d+\.\d+)$")
YEAR_RE = re.compile(r"^\d{4}$")
HALF_CELL = 0.05


def parse_tile_name(name: str) -> TileKey | None:
    """``grid_0.15_52.25`` → TileKey(lat_i=5225, lon_i=15); None if the name does not parse.

    The key is returned even when the centre is not at .x5; check ``TileKey.is_centred``.
    """
    m = TILE_NAME_RE.fullmatch(name)  # not match: '$' would accept a trailing newline
    if not m:
        return None
    lon, lat = float(m.group(1)), float(m.group(2))
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        return None
    return TileKey(lat_i=round(lat * 100), lon_i=round(lon * 100))


def utm_zone(lon: float) -> int:
    """UTM zone of a longitude: ⌊(lon + 180) / 6⌋ + 1, clamped to 1..60 (no Norway rules)."""
    return min(max(int((lon + 180.0) // 6.0) + 1, 1), 60)


def tile_epsg(key: TileKey) -> int:
    """EPSG code of the tile's native CRS: 326ZZ north of the equator, 327ZZ south."""
    zone = utm_zone(key.lon)
    return (32600 if key.lat_i >= 0 else 32700) + zone


@lru_cache(maxsize=256)
def _to_utm(epsg: int) -> Transformer:
    return Transformer.from_crs(4326, epsg, always_xy=True)


def tile_grid(key: TileKey, pixel_size: float) -> TileGrid:
    """The tile's expected grid, as the archive's landmask GeoTIFF records it.

    Guarantees: ``left = min(UL_e, LL_e)``, ``top = max(UL_n, UR_n)``; width and height are
    ``round()`` of the projected extent over the pixel size.
    """
    epsg = tile_epsg(key)
    lon, lat = key.lon, key.lat
    xs = [lon - HALF_CELL, lon + HALF_CELL, lon - HALF_CELL, lon + HALF_CELL]
    ys = [lat + HALF_CELL, lat + HALF_CELL, lat - HALF_CELL, lat - HALF_CELL]
    (ul_e, ur_e, ll_e, lr_e), (ul_n, ur_n, ll_n, lr_n) = _to_utm(epsg).transform(xs, ys)
    left = min(ul_e, ll_e)
    top = max(ul_n, ur_n)
    width = round((max(ur_e, lr_e) - left) / pixel_size)
    height = round((top - min(ll_n, lr_n)) / pixel_size)
    return TileGrid(epsg, float(pixel_size), float(left), float(top), int(height), int(width))


@dataclass(frozen=True, slots=True)
class TilePaths:
    """The three files of one tile and year in the archive layout."""

    embeddings: Path
    scales: Path
    landmask: Path


def tile_paths(base: Path, year: int, name: str) -> TilePaths:
    """Paths under ``base`` for the tile directory ``name`` (as spelled on disk) and year."""
    emb, sc, lm = tile_keys(year, name)
    return TilePaths(embeddings=base / emb, scales=base / sc, landmask=base / lm)


def tile_keys(year: int, name: str) -> tuple[str, str, str]:
    """Relative ``/``-separated keys (embeddings, scales, landmask) of a tile-year below the
    archive root. Raises ValueError unless ``name`` is a tile name (``grid_LON_LAT``), so the
    keys can never leave the archive root."""
    if TILE_NAME_RE.fullmatch(name) is None or not YEAR_RE.fullmatch(str(year)):
        raise ValueError(f"not a tile name and year: {name!r}, {year!r}")
    tile_dir = f"{EMBEDDINGS_DIR}/{year}/{name}"
    return f"{tile_dir}/{name}.npy", f"{tile_dir}/{name}_scales.npy", f"{LANDMASKS_DIR}/{name}.tiff"
