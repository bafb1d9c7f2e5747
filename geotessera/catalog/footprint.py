"""Where a zone store has data: a bounding window of its valid pixels, and that window as a
WGS84 GeoJSON geometry.

Guarantees: the footprint covers every valid pixel (exact at the level read, or a cover of
stored chunks); the geometry is deterministic (coordinates rounded to 1e-7°) and splits at
±180° as RFC 7946 asks. Only the ``scales`` array of one level is ever read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyproj import Transformer

from geotessera.store.location import Location
from geotessera.store.meta import StoreMeta
from geotessera.store.zone import stored_chunks
from geotessera.types import Level, Window

#: The footprint reads the finest level whose ``scales`` has at most this many pixels (16 MB);
#: when no level is that small, it lists the coarsest level's stored chunks instead.
MASK_READ_MAX_PX = 1 << 22
#: Footprint edges are densified every kilometre, with at most this many segments an edge.
DENSIFY_M, MAX_SEGMENTS = 1000.0, 256


@dataclass(frozen=True, slots=True)
class Footprint:
    """The pixels of ``level`` that hold every valid pixel (None: no valid pixel at all).

    ``method`` is "pixels" (from the level's ``scales``: exact at that level's resolution)
    or "chunks" (the union of its stored chunks: a cover). ``coverage`` is the share of the
    level's pixels (or chunks) that hold data.
    """

    level: Level
    window: Window | None
    method: str
    coverage: float

    @property
    def utm_bbox(self) -> tuple[float, float, float, float] | None:
        if self.window is None:
            return None
        w = self.window
        x0, y1 = self.level.grid.xy(w.row0 - 0.5, w.col0 - 0.5)
        x1, y0 = self.level.grid.xy(w.row1 - 0.5, w.col1 - 0.5)
        return (x0, y0, x1, y1)


def _bounding_window(mask: np.ndarray) -> Window | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return Window(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def data_footprint(store: Location, root: Any, meta: StoreMeta,
                   max_read_px: int = MASK_READ_MAX_PX) -> Footprint:
    """Where the store has data: the finest level whose ``scales`` has at most
    ``max_read_px`` pixels, read whole (an overview pixel is valid when any child is, so
    coarser levels give a cover); if none is that small, the stored chunks of the coarsest."""
    fits = [lv for lv in meta.levels if math.prod(lv.shape) <= max_read_px]
    if fits:
        mask = np.isfinite(root[f"{fits[0].path}/scales"][...])
        return Footprint(fits[0], _bounding_window(mask), "pixels", float(mask.mean()))
    level = meta.levels[-1]
    arr = root[f"{level.path}/scales"]
    grid = stored_chunks(store, arr)
    win = _bounding_window(grid)
    if win is not None:
        u0, u1 = arr.shards or arr.chunks
        h, w = arr.shape
        win = Window(win.row0 * u0, min(win.row1 * u0, h), win.col0 * u1, min(win.col1 * u1, w))
    return Footprint(level, win, "chunks", float(grid.mean()))


# --- geometry ----------------------------------------------------------------------------------


def _segments(length: float) -> int:
    return min(max(math.ceil(length / DENSIFY_M), 1), MAX_SEGMENTS)


def _lonlat_ring(zone: int, utm_bbox: tuple[float, float, float, float]) -> np.ndarray:
    """The rectangle's densified, closed, counter-clockwise ring in lon/lat, longitudes
    unwrapped around the zone's central meridian (so they may run past ±180°)."""
    x0, y0, x1, y1 = utm_bbox
    xs = np.linspace(x0, x1, _segments(x1 - x0) + 1)
    ys = np.linspace(y0, y1, _segments(y1 - y0) + 1)
    x = np.concatenate([xs, np.full(len(ys) - 1, x1), xs[-2::-1], np.full(len(ys) - 1, x0)])
    y = np.concatenate([np.full(len(xs), y0), ys[1:], np.full(len(xs) - 1, y1), ys[-2::-1]])
    lon, lat = Transformer.from_crs(32600 + zone, 4326, always_xy=True).transform(x, y)
    cm = 6.0 * zone - 183.0
    lon = cm + (np.asarray(lon) - cm + 180.0) % 360.0 - 180.0
    if np.abs(lon).min() > 180.0:  # wholly past ±180°: wrap it back
        lon -= np.copysign(360.0, lon[0])
    return np.round(np.column_stack([lon, lat]), 7)


def _clip(ring: np.ndarray, limit: float, keep_below: bool) -> np.ndarray:
    """Sutherland–Hodgman against one meridian: the part of a closed ring with
    lon ≤ limit (``keep_below``) or lon ≥ limit, closed again."""
    inside = ring[:, 0] <= limit if keep_below else ring[:, 0] >= limit
    out: list[list[float]] = []
    for i in range(len(ring) - 1):
        (x0, y0), (x1, y1) = ring[i], ring[i + 1]
        if inside[i]:
            out.append([x0, y0])
        if inside[i] != inside[i + 1]:
            out.append([limit, y0 + (limit - x0) / (x1 - x0) * (y1 - y0)])
    return np.round(np.array(out + out[:1]), 7)


def footprint_geojson(zone: int, utm_bbox: tuple[float, float, float, float]
                      ) -> tuple[dict[str, Any], list[float]]:
    """(GeoJSON geometry, bbox) in WGS84 of a rectangle in canonical EPSG:326ZZ metres.

    Edges are densified (≤ 1 km, ≤ 256 segments each) before reprojection; negative
    northings give southern latitudes. A ring that crosses ±180° is split into a
    MultiPolygon, and its bbox has west > east (RFC 7946 §5.2). Coordinates are rounded to
    1e-7°, so the output is stable.
    """
    ring = _lonlat_ring(zone, utm_bbox)
    (w, s), (e, n) = ring.min(axis=0), ring.max(axis=0)
    if w >= -180.0 and e <= 180.0:
        return {"type": "Polygon", "coordinates": [ring.tolist()]}, [float(v) for v in (w, s, e, n)]
    edge = 180.0 if e > 180.0 else -180.0
    inner = _clip(ring, edge, keep_below=edge > 0)
    outer = _clip(ring, edge, keep_below=edge < 0) - [2 * edge, 0.0]
    near_plus, near_minus = (inner, outer) if edge > 0 else (outer, inner)
    bbox = [near_plus[:, 0].min(), s, near_minus[:, 0].max(), n]
    return ({"type": "MultiPolygon",
             "coordinates": [[near_plus.tolist()], [near_minus.tolist()]]},
            [float(v) for v in bbox])
