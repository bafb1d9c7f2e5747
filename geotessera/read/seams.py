"""The zone-seam rule, in one place: which store a location reads near a UTM zone edge.

A location reads the store of its own UTM zone (the zone of its longitude), and another
zone's store only where its own has no data there. Each store holds data for all the ground
of its zone where its tiles exist, except a crack of under a pixel along the zone's edge
meridian; ``crack_pixels`` closes it with the owner tile's edge pixel, the rule the builder
uses for cracks inside a zone (format.md §4). No other value is filled in: NaN stays NaN.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from geotessera.read.project import transformer
from geotessera.tiles import parse_tile_name, tile_grid
from geotessera.types import Level, TileKey
from geotessera.zonegrid import HALO_PX, placement

if TYPE_CHECKING:
    from geotessera.read.reader import ZoneStore

M_PER_DEG = 111_320.0
#: A tile's raster reaches less than this beyond its zone's edge meridian (the slant of a
#: 0.1° cell in UTM adds under 600 m below 84° latitude; placement adds a pixel).
NEIGHBOUR_REACH_M = 2_000.0


def zone_edges(zone: Any) -> tuple[Any, Any]:
    """(west, east) longitudes of a UTM zone (or of an array of zones)."""
    west = -180.0 + 6.0 * (zone - 1)
    return west, west + 6.0


def edge_distance_m(lon: np.ndarray, lat: np.ndarray, zone: Any) -> np.ndarray:
    """Approximate metres (on the sphere) from each point to the nearer edge meridian of
    ``zone`` (one zone, or one per point)."""
    west, east = zone_edges(np.asarray(zone))
    deg = np.minimum(np.abs(lon - west), np.abs(east - lon))
    return deg * M_PER_DEG * np.cos(np.radians(lat))


# --- the crack at a zone edge ------------------------------------------------------------------
#
# A store gives a pixel a value by the owner rule of its centre (format.md §4). A pixel whose
# centre lies just beyond the zone's edge meridian belongs to the neighbouring zone, so it holds
# data only where one of this zone's rasters happens to cover it (step 4), never through the
# owner's one-pixel halo (step 5). Where the edge tile was placed toward the zone's inside, the
# ground between the meridian and the tile's first placed column therefore falls in an empty
# pixel of this store, though the tile's own raster covers it. ``crack_pixels`` applies the
# builder's halo rule to such a location on behalf of its owner tile.


@lru_cache(maxsize=16)
def _store_cells(tiles: tuple[str, ...]) -> frozenset[tuple[int, int]]:
    """The 0.1° cells of a store's tiles (its ``geotessera:tiles`` names)."""
    return frozenset(k.cell for name in tiles if (k := parse_tile_name(name)) is not None)


@lru_cache(maxsize=4096)
def _placed(cell: tuple[int, int], l0: Level) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) at L0 of the raster of the tile of ``cell`` as the builder
    placed it (its grid recomputed from the name, nearest-pixel placement)."""
    tile = tile_grid(TileKey(lat_i=10 * cell[1] + 5, lon_i=10 * cell[0] + 5), l0.pixel_size)
    w = placement(l0.grid, tile)
    return w.row0, w.row1, w.col0, w.col1


def _window_at(cell: tuple[int, int], l0: Level, k: int) -> tuple[int, int, int, int]:
    """``_placed`` in the pixels of a level ``k`` times coarser (same origin), outward."""
    r0, r1, c0, c1 = _placed(cell, l0)
    return r0 // k, -(-r1 // k), c0 // k, -(-c1 // k)


def crack_pixels(zs: ZoneStore, level: Level, rows: np.ndarray, cols: np.ndarray,
                 lon: np.ndarray, lat: np.ndarray):
    """The zone-edge crack rule for empty pixels (``rows``, ``cols``) of ``level``, looked up
    for locations (``lon``, ``lat``): returns (rows, cols, applies).

    The rule applies where all of these hold: the pixel's centre lies beyond the zone's edge
    meridian; no tile of the store whose cell is among the 3 × 3 around the location's covers
    the pixel; the location's owner tile (the tile of its 0.1° cell) is in the store, and its
    placed raster widened by HALO_PX reaches the pixel. The location then reads the owner's
    nearest edge pixel instead, as the builder does for a crack inside a zone (format.md §4,
    step 5). Elsewhere rows and cols are returned unchanged.
    """
    rows, cols = np.array(rows, np.int64), np.array(cols, np.int64)
    applies = np.zeros(rows.shape, bool)
    l0 = zs.meta.levels[0]
    west, east = zone_edges(zs.meta.zone)
    near = np.flatnonzero(  # a cheap pre-filter: the crack is within a pixel of the edge
        edge_distance_m(lon, lat, zs.meta.zone) < 2 * (HALO_PX + 1) * level.pixel_size)
    if near.size == 0:
        return rows, cols, applies
    centre_lon, _ = transformer(f"EPSG:{zs.meta.epsg}", "EPSG:4326").transform(
        *level.grid.xy(rows[near], cols[near]))
    centre_lon = np.asarray(centre_lon)
    near = near[(centre_lon < west) | (centre_lon >= east)]
    present = _store_cells(zs.meta.tiles)
    k = round(level.pixel_size / l0.pixel_size)
    cells = np.stack([np.floor(lon[near] * 10), np.floor(lat[near] * 10)], 1).astype(int)
    for cell in {tuple(v) for v in cells.tolist()} & present:
        i = near[(cells == cell).all(axis=1)]
        r, q = rows[i], cols[i]
        covered = np.zeros(i.size, bool)
        for nb in ((cell[0] + dx, cell[1] + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)):
            if nb in present:
                r0, r1, c0, c1 = _window_at(nb, l0, k)
                covered |= (r >= r0) & (r < r1) & (q >= c0) & (q < c1)
        r0, r1, c0, c1 = _window_at(cell, l0, k)
        h = HALO_PX
        hit = ~covered & (r >= r0 - h) & (r < r1 + h) & (q >= c0 - h) & (q < c1 + h)
        rows[i[hit]] = np.clip(r[hit], r0, r1 - 1)
        cols[i[hit]] = np.clip(q[hit], c0, c1 - 1)
        applies[i[hit]] = True
    return rows, cols, applies


