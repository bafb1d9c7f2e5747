"""Where a zone store has data: a bounding window of its valid pixels, and a WGS84 GeoJSON
geometry that follows the data (``footprint_geometry``) or its bounding rectangle.

Guarantees: the footprint covers every valid pixel (exact at the level read, or a cover of
stored chunks); the geometry holds every valid pixel centre, is deterministic (coordinates
rounded to 1e-7°) and splits at ±180° as RFC 7946 asks. Only the ``scales`` array of one
level is ever read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio.features
import shapely
import shapely.affinity
from affine import Affine
from pyproj import Transformer
from shapely.geometry import mapping, shape
from shapely.geometry.polygon import orient

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
    #: The valid mask the window came from, on ``mask_transform``'s grid (the level's pixels,
    #: or its chunks for "chunks").
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    mask_transform: tuple[float, ...] | None = None

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
        return Footprint(fits[0], _bounding_window(mask), "pixels", float(mask.mean()), mask,
                         fits[0].grid.transform)
    level = meta.levels[-1]
    arr = root[f"{level.path}/scales"]
    grid = stored_chunks(store, arr)
    win = _bounding_window(grid)
    u0, u1 = arr.shards or arr.chunks
    if win is not None:
        h, w = arr.shape
        win = Window(win.row0 * u0, min(win.row1 * u0, h), win.col0 * u1, min(win.col1 * u1, w))
    a, b, c, d, e, f = level.grid.transform
    return Footprint(level, win, "chunks", float(grid.mean()), grid,
                     (a * u1, b, c, d, e * u0, f))


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


# --- a geometry that follows the data ----------------------------------------------------------


def _utm_shape(fp: Footprint) -> Any:
    """The valid cells of ``fp.mask`` as one shapely geometry in canonical UTM metres, grown
    by one cell and simplified by one cell (so it still holds every valid cell)."""
    mask = fp.mask.astype(np.uint8)
    polys = [shape(g) for g, _ in rasterio.features.shapes(
        mask, mask=mask.astype(bool), transform=Affine(*fp.mask_transform[:6]))]
    cell = abs(fp.mask_transform[0])
    grown = shapely.union_all(polys).buffer(cell, join_style="mitre")
    return grown.simplify(cell, preserve_topology=True)


def _to_lonlat(zone: int, geom: Any) -> Any:
    """``geom`` (canonical EPSG:326ZZ) in lon/lat, longitudes unwrapped around the zone's
    central meridian (so they may run past ±180°)."""
    cm = 6.0 * zone - 183.0
    tr = Transformer.from_crs(32600 + zone, 4326, always_xy=True)

    def fn(xy: np.ndarray) -> np.ndarray:
        lon, lat = tr.transform(xy[:, 0], xy[:, 1])
        lon = cm + (np.asarray(lon) - cm + 180.0) % 360.0 - 180.0
        return np.column_stack([lon, lat])

    return shapely.transform(geom, fn)


def _split_antimeridian(geom: Any) -> list[Any]:
    """Polygons of ``geom`` within [-180°, 180°]: parts past ±180° are cut off and shifted
    by 360°."""
    parts = []
    for shift in (0.0, -360.0, 360.0):
        window = shapely.box(-180.0 - shift, -90.0, 180.0 - shift, 90.0)
        piece = shapely.affinity.translate(geom.intersection(window), xoff=shift)
        parts += [p for p in getattr(piece, "geoms", [piece])
                  if p.geom_type == "Polygon" and not p.is_empty]
    return parts


def _rounded(poly: Any) -> list[list[list[float]]]:
    rings = mapping(orient(poly, 1.0))["coordinates"]
    return [np.round(np.asarray(r, dtype=float), 7).tolist() for r in rings]


def footprint_geometry(zone: int, fp: Footprint) -> tuple[dict[str, Any], list[float]]:
    """(GeoJSON geometry, bbox) in WGS84 that follows the valid data of ``fp``: its mask
    polygonised (rasterio), grown and simplified by one cell (shapely), densified to
    ≤ ``max(DENSIFY_M, 4 cells)`` segments, reprojected and split at ±180° (a MultiPolygon;
    its bbox then has west > east, RFC 7946 §5.2). Holds every valid pixel centre."""
    cell = abs(fp.mask_transform[0])
    utm = shapely.segmentize(_utm_shape(fp), max(DENSIFY_M, 4 * cell))
    parts = _split_antimeridian(_to_lonlat(zone, utm))
    coords = [_rounded(p) for p in sorted(parts, key=lambda p: p.bounds)]
    s = min(p.bounds[1] for p in parts)
    n = max(p.bounds[3] for p in parts)
    east_side = [p for p in parts if p.centroid.x > 0]
    west_side = [p for p in parts if p.centroid.x <= 0]
    crosses = any(p.bounds[2] >= 180.0 for p in parts) and any(p.bounds[0] <= -180.0 for p in parts)
    if crosses and east_side and west_side:
        bbox = [min(p.bounds[0] for p in east_side), s, max(p.bounds[2] for p in west_side), n]
    else:
        bbox = [min(p.bounds[0] for p in parts), s, max(p.bounds[2] for p in parts), n]
    bbox = [round(float(v), 7) for v in bbox]
    if len(coords) == 1:
        return {"type": "Polygon", "coordinates": coords[0]}, bbox
    return {"type": "MultiPolygon", "coordinates": coords}, bbox
