"""H3 cells as polygons on two global map projections, cut where the maps cut the sphere.

- ``equal_area_pieces``: Equal Earth (an equal-area world map) centred on ``lon_0``; a cell
  that crosses the map's edge meridian (the antimeridian of ``lon_0``) is split into its two
  parts, one at each side of the map, and a cell around a pole is closed along the pole line.
- ``globe_pieces``: the orthographic view of the sphere from above (lon0, lat0); a cell on
  the limb is clipped to the visible hemisphere, cells behind it are dropped. The cut is done
  in the azimuthal equidistant projection about the view centre (continuous everywhere but at
  the antipode), where the limb is a circle, then mapped radially onto the orthographic disk.

Both work on H3's own sphere (authalic radius), so a cell's vertices are placed as H3 defines
them; edges are densified along great circles at coarse resolutions. shapely does the
clipping; pyproj the projections.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from pyproj import Geod, Proj
from shapely import box
from shapely.geometry import MultiPolygon, Point, Polygon

from .cells import need_h3

try:
    import h3
except ImportError:  # the optional `h3` extra is not installed
    h3 = None

#: H3's earth radius (authalic sphere), metres.
R_H3 = 6371007.180918475
SPHERE = Geod(a=R_H3, f=0)
#: Coarse resolutions get extra points on every edge (their edges are long arcs).
DENSIFY_BELOW_RES = 4
EPS_DEG = 1e-9


def cell_ring(cell: int, res: int) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of a cell's boundary vertices (not closed), densified along great circles
    for resolutions below ``DENSIFY_BELOW_RES``."""
    need_h3()
    lat, lon = np.array(h3.api.basic_int.cell_to_boundary(int(cell))).T
    if res >= DENSIFY_BELOW_RES:
        return lon, lat
    n = 2 ** (DENSIFY_BELOW_RES - res + 2)
    out_lon, out_lat = [], []
    for i in range(len(lon)):
        j = (i + 1) % len(lon)
        pts = SPHERE.npts(lon[i], lat[i], lon[j], lat[j], n)
        out_lon += [lon[i], *(p[0] for p in pts)]
        out_lat += [lat[i], *(p[1] for p in pts)]
    return np.array(out_lon), np.array(out_lat)


def _wrap(d: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(d) + 180.0) % 360.0 - 180.0


def _exteriors(geom) -> list[np.ndarray]:
    if geom.is_empty:
        return []
    polys = geom.geoms if isinstance(geom, MultiPolygon) else [geom]
    return [np.asarray(p.exterior.coords) for p in polys if isinstance(p, Polygon) and p.area > 0]


def split_ring(lon: np.ndarray, lat: np.ndarray, lon_0: float = 0.0) -> list[np.ndarray]:
    """The pieces of a lon/lat ring as (k, 2) arrays of (longitude relative to ``lon_0``,
    latitude), every longitude within [-180, 180]: cut at the antimeridian of ``lon_0``, and
    closed through the pole when the ring goes round it."""
    rel = np.asarray(_wrap(np.asarray(lon, np.float64) - lon_0))
    un = np.unwrap(rel, period=360.0)
    end = un[-1] + _wrap(un[0] - un[-1])
    winding = round((end - un[0]) / 360.0)
    coords = list(zip(un, lat))
    if winding:  # the ring encloses a pole: go along the pole line back to the start
        pole = math.copysign(90.0, float(np.mean(lat)))
        coords += [(end, lat[0]), (end, pole), (un[0], pole)]
    poly = Polygon(coords)
    if not poly.is_valid:
        poly = poly.buffer(0)
    pieces = []
    for k in (-1, 0, 1):
        part = poly.intersection(box(-180 + 360 * k, -90, 180 + 360 * k, 90))
        for ext in _exteriors(part):
            ext = ext - [360.0 * k, 0.0]
            ext[:, 0] = np.clip(ext[:, 0], -180 + EPS_DEG, 180 - EPS_DEG)
            pieces.append(ext)
    return pieces


def densify(coords: np.ndarray, step: float = 0.5) -> np.ndarray:
    """``coords`` (k, 2) with points added linearly so no segment is longer than ``step``
    (in the coordinates' own units); the given points are kept."""
    seg = np.diff(coords, axis=0)
    n = np.maximum(1, np.ceil(np.hypot(seg[:, 0], seg[:, 1]) / step).astype(int))
    if n.max() == 1:
        return coords
    t = np.concatenate([np.arange(k) / k for k in n])
    start = np.repeat(np.arange(len(seg)), n)
    return np.vstack([coords[start] + seg[start] * t[:, None], coords[-1:]])


@lru_cache(maxsize=8)
def _proj(definition: str) -> Proj:
    return Proj(definition)


def equal_area_definition() -> str:
    """Equal Earth on H3's sphere, longitudes given relative to the map's centre."""
    return f"+proj=eqearth +lon_0=0 +R={R_H3}"


def equal_area_pieces(lon: np.ndarray, lat: np.ndarray, lon_0: float = 0.0
                      ) -> list[np.ndarray]:
    """A ring's pieces on the Equal Earth map centred on ``lon_0``, in map metres."""
    proj = _proj(equal_area_definition())
    out = []
    for piece in split_ring(lon, lat, lon_0):
        piece = densify(piece)  # the map's edge meridian and the pole lines are curves
        x, y = proj(piece[:, 0], piece[:, 1])
        out.append(np.column_stack([x, y]))
    return out


def globe_definition(lon0: float, lat0: float) -> str:
    """The orthographic view these pieces are drawn in (for pyproj users checking them)."""
    return f"+proj=ortho +lat_0={lat0} +lon_0={lon0} +R={R_H3}"


#: The visible hemisphere in the azimuthal equidistant projection about the view centre.
LIMB = Point(0.0, 0.0).buffer(math.pi / 2 * R_H3, quad_segs=256)


def globe_pieces(lon: np.ndarray, lat: np.ndarray, lon0: float, lat0: float
                 ) -> list[np.ndarray]:
    """A ring's visible pieces on the orthographic globe seen from (lon0, lat0), in metres
    (an empty list when the cell lies wholly behind the limb)."""
    aeqd = _proj(f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +R={R_H3}")
    x, y = aeqd(np.asarray(lon), np.asarray(lat))
    x, y = np.asarray(x), np.asarray(y)
    rho = np.hypot(x, y)
    limb = math.pi / 2 * R_H3
    if not np.all(np.isfinite(rho)) or np.all(rho > limb):
        return []
    ring = Polygon(np.column_stack([x, y]))
    inside = ring if np.all(rho <= limb) else ring.intersection(LIMB)
    out = []
    for ext in _exteriors(inside):
        r = np.hypot(ext[:, 0], ext[:, 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            k = np.where(r > 0, R_H3 * np.sin(np.minimum(r, limb) / R_H3) / r, 1.0)
        out.append(ext * k[:, None])
    return out


def centroid(lon: np.ndarray, lat: np.ndarray, weights: np.ndarray | None = None
             ) -> tuple[float, float]:
    """(lon, lat) of the normalised mean unit vector of the points (the view centre)."""
    lo, la = np.radians(lon), np.radians(lat)
    v = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])
    m = (v * (1.0 if weights is None else weights)).sum(axis=1)
    if not np.any(m):
        return 0.0, 0.0
    return (math.degrees(math.atan2(m[1], m[0])),
            math.degrees(math.atan2(m[2], math.hypot(m[0], m[1]))))
