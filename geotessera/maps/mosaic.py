"""A year's zone stores as one RGBA raster in WGS 84 longitude/latitude (plate carrée).

Each store's ``rgba`` preview is read at one level, the coarsest whose pixels are no larger
than the raster's on the ground (``choose_level``), and reprojected with nearest-neighbour
resampling, so every output pixel holds a colour the store holds. The raster is cropped to
the stores' data and its pixels are square on the ground at the central latitude. Where two
zones' stores overlap at a zone edge, a pixel takes the store of its own UTM zone when that
has data there, the other one otherwise (the read side's seam rule).

Guarantees: alpha is 255 exactly where some store has data, 0 (and colour 0) elsewhere;
nothing is written; a store without a complete preview, or whose stretch differs from the
others' of its year, is a StoreError naming it. Longitudes run from −180 to 180, so a year
with stores on both sides of the antimeridian is drawn across the whole width between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.warp import Resampling, reproject, transform_bounds

from geotessera.errors import StoreError
from geotessera.preview.quicklook import data_window
from geotessera.read.reader import ZoneStore, zones_of
from geotessera.read.sources import Source, stores_of
from geotessera.types import Level, Window

#: Refuse to read a level window larger than this (4 bytes per pixel in memory).
MAX_READ_PX = 1 << 26
#: The data extent is read from the finest level with at most this many pixels (its alpha).
EXTENT_READ_PX = 1 << 22
#: WGS 84 semi-major axis (m) and first eccentricity squared.
WGS84_A, WGS84_E2 = 6378137.0, 0.00669437999014
RGBA = "rgba"


def grid_transform(bounds: tuple[float, float, float, float], shape: tuple[int, int]) -> Affine:
    """The north-up affine transform of a (height, width) ``shape`` raster whose outer edges
    are ``bounds`` (west, south, east, north)."""
    w, s, e, n = bounds
    return Affine((e - w) / shape[1], 0.0, w, 0.0, -(n - s) / shape[0], n)


def metres_per_degree_lon(lat: float) -> float:
    """Length (m) of one degree of longitude along the parallel ``lat`` on the WGS 84
    ellipsoid: π/180 · a·cos φ / √(1 − e² sin² φ)."""
    phi = math.radians(lat)
    return math.pi / 180 * WGS84_A * math.cos(phi) / math.sqrt(1 - WGS84_E2 * math.sin(phi) ** 2)


def metres_per_degree_lat(lat: float) -> float:
    """Length (m) of one degree of latitude at ``lat`` (the meridian's radius of curvature)."""
    s2 = math.sin(math.radians(lat)) ** 2
    return math.pi / 180 * WGS84_A * (1 - WGS84_E2) / (1 - WGS84_E2 * s2) ** 1.5


def choose_level(levels: tuple[Level, ...], target_m: float) -> Level:
    """The coarsest level whose pixel size is at most ``target_m``; the finest if none is.
    ``levels`` may come in any order."""
    fine_enough = [lv for lv in levels if lv.pixel_size <= target_m]
    if fine_enough:
        return max(fine_enough, key=lambda lv: lv.pixel_size)
    return min(levels, key=lambda lv: lv.pixel_size)


@dataclass(frozen=True, slots=True)
class StorePart:
    """One store drawn: its zone, the level read and that level's window of data, and the
    data's lon/lat bounds (west, south, east, north)."""

    href: str
    zone: int
    level: Level
    window: Window
    bounds: tuple[float, float, float, float]


@dataclass(frozen=True)
class YearMosaic:
    """The RGBA raster (4, h, w) uint8 on a lon/lat grid whose outer edges are ``bounds``
    (west, south, east, north), the stores drawn, and the year's ``geotessera:stretch``."""

    year: int
    rgba: np.ndarray
    bounds: tuple[float, float, float, float]
    parts: tuple[StorePart, ...]
    stretch: dict[str, Any]

    @property
    def zones(self) -> tuple[int, ...]:
        return tuple(p.zone for p in self.parts)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.rgba.shape[1]), int(self.rgba.shape[2]))

    @property
    def pixel_deg(self) -> tuple[float, float]:
        """(Δlon, Δlat) of one pixel in degrees."""
        w, s, e, n = self.bounds
        return ((e - w) / self.shape[1], (n - s) / self.shape[0])

    @property
    def centre_lat(self) -> float:
        """The latitude at which pixels are square on the ground."""
        return (self.bounds[1] + self.bounds[3]) / 2

    def transform(self) -> Affine:
        """The raster's affine transform in EPSG:4326 (rasterio order), to georeference it."""
        return grid_transform(self.bounds, self.shape)


# --- opening and checking the stores -----------------------------------------------------------


def _open_previewed(href: str) -> tuple[ZoneStore, dict[str, Any]]:
    zs = ZoneStore.open(href)
    attrs = zs.root.attrs
    if attrs.get("geotessera:rgb_complete") is not True:
        raise StoreError(zs.location, "no complete preview (geotessera:rgb_complete is not "
                                      "true); run `geotessera-registry rgb` first")
    stretch = attrs.get("geotessera:stretch")
    if not isinstance(stretch, dict) or "mode" not in stretch:
        raise StoreError(zs.location, "no geotessera:stretch attribute; rerun "
                                      "`geotessera-registry rgb`")
    return zs, dict(stretch)


def _rgba(zs: ZoneStore, level: Level) -> Any:
    try:
        return zs.array(level, RGBA)
    except KeyError as e:
        raise StoreError(f"{zs.location}/{level.path}", "no rgba preview array; run "
                                                       "`geotessera-registry rgb`") from e


def _window_bbox(level: Level, win: Window) -> tuple[float, float, float, float]:
    a, _, c, _, e, f = level.transform
    return (c + a * win.col0, f + e * win.row1, c + a * win.col1, f + e * win.row0)


def _extent(zs: ZoneStore) -> tuple[Level, Window] | None:
    """The finest level of at most ``EXTENT_READ_PX`` pixels (else the coarsest) and its
    window of pixels with data. An overview pixel has data when any of its children has, so
    this window, scaled, covers the data of every finer level."""
    small = [lv for lv in zs.meta.levels if math.prod(lv.shape) <= EXTENT_READ_PX]
    level = (min(small, key=lambda lv: lv.pixel_size) if small
             else max(zs.meta.levels, key=lambda lv: lv.pixel_size))
    if math.prod(level.shape) > MAX_READ_PX:
        raise StoreError(zs.location, f"its coarsest level {level.path} is "
                                      f"{level.shape[1]}x{level.shape[0]} px; too large to "
                                      "find the data extent")
    alpha = _rgba(zs, level)[3] > 0
    return (level, data_window(alpha)) if alpha.any() else None


# --- the raster --------------------------------------------------------------------------------


def output_grid(bounds: tuple[float, float, float, float], max_width: int, max_height: int
                ) -> tuple[tuple[float, float, float, float], tuple[int, int]]:
    """The lon/lat grid of a mosaic of ``bounds``: pixels square on the ground at the central
    latitude, as large a raster as fits ``max_width`` × ``max_height``. Returns its outer
    bounds (centred on ``bounds``, which they contain) and its (height, width)."""
    w, s, e, n = bounds
    ratio = math.cos(math.radians((s + n) / 2))  # Δlat per Δlon of a square pixel
    dx = max((e - w) / max_width, (n - s) / ratio / max_height)
    dy = dx * ratio
    width, height = max(1, math.ceil((e - w) / dx - 1e-9)), max(1, math.ceil((n - s) / dy - 1e-9))
    cx, cy = (w + e) / 2, (s + n) / 2
    return ((cx - width * dx / 2, cy - height * dy / 2, cx + width * dx / 2,
             cy + height * dy / 2), (height, width))


def _reproject(zs: ZoneStore, part: StorePart, mosaic_transform: Affine,
               shape: tuple[int, int]) -> np.ndarray:
    win, level = part.window, part.level
    if win.height * win.width > MAX_READ_PX:
        raise StoreError(f"{zs.location}/{level.path}", f"the window to draw is "
                                                       f"{win.width}x{win.height} px, too large")
    src = np.ascontiguousarray(_rgba(zs, level)[:, win.row0:win.row1, win.col0:win.col1])
    a, _, c, _, e, f = level.transform
    src_transform = Affine(a, 0.0, c + a * win.col0, 0.0, e, f + e * win.row0)
    dst = np.zeros((4, *shape), np.uint8)
    reproject(src, dst, src_transform=src_transform, src_crs=f"EPSG:{zs.meta.epsg}",
              dst_transform=mosaic_transform, dst_crs="EPSG:4326",
              resampling=Resampling.nearest)
    dst[:, dst[3] == 0] = 0
    return dst


def _column_zones(bounds: tuple[float, float, float, float], width: int) -> np.ndarray:
    """UTM zone of each output column's centre."""
    lon = bounds[0] + (np.arange(width) + 0.5) * (bounds[2] - bounds[0]) / width
    return zones_of(lon, np.zeros_like(lon))


def compose_year(source: Source, year: int, *, max_width: int = 1024,
                 max_height: int = 1024) -> YearMosaic:
    """Draw every store of ``year`` in ``source`` (a stores directory, store or STAC catalog)
    into one lon/lat raster of at most ``max_width`` × ``max_height`` pixels (see the
    module). Raises StoreError naming the source when it has no store of ``year`` or none
    with data, and naming the store when one lacks a complete preview."""
    found = stores_of(source, year)
    if not found.listed:
        raise StoreError(found.source, "cannot list the stores at this URL; give a STAC "
                                       "catalog, a store, or a listable location")
    opened, stretch, first = [], None, None
    for zone in sorted(found.hrefs):
        zs, st = _open_previewed(found.hrefs[zone])
        if stretch is None:
            stretch, first = st, zs.location
        elif st != stretch:
            raise StoreError(zs.location, f"its geotessera:stretch differs from that of "
                                          f"{first}; rerun `geotessera-registry rgb --year "
                                          f"{year}` so the year shares one")
        if (ext := _extent(zs)) is not None:
            found_at, win = ext
            bbox = transform_bounds(f"EPSG:{zs.meta.epsg}", "EPSG:4326",
                                    *_window_bbox(found_at, win), densify_pts=21)
            opened.append((zs, found_at, win, tuple(float(v) for v in bbox)))
    if not opened:
        raise StoreError(found.source, f"no pixel with data in the {len(found.hrefs)} "
                                       f"store(s) of year {year}")
    union = (min(o[3][0] for o in opened), min(o[3][1] for o in opened),
             max(o[3][2] for o in opened), max(o[3][3] for o in opened))
    bounds, shape = output_grid(union, max_width, max_height)
    dx, dy = (bounds[2] - bounds[0]) / shape[1], (bounds[3] - bounds[1]) / shape[0]
    out = np.zeros((4, *shape), np.uint8)
    transform = grid_transform(bounds, shape)
    zones = _column_zones(bounds, shape[1])
    parts = []
    for zs, found_at, win, bbox in opened:
        poleward = max(abs(bbox[1]), abs(bbox[3]))
        target = min(dx * metres_per_degree_lon(poleward), dy * metres_per_degree_lat(0.0))
        level = choose_level(zs.meta.levels, target)
        # levels share their origin, so this is the extent's window at the level drawn
        part = StorePart(str(zs.location), zs.meta.zone, level,
                         level.grid.window_of(_window_bbox(found_at, win)), bbox)
        img = _reproject(zs, part, transform, shape)
        has = img[3] > 0
        take = has & ((out[3] == 0) | (zones == part.zone)[None, :])
        out[:, take] = img[:, take]
        parts.append(part)
    return YearMosaic(year, out, bounds, tuple(parts), stretch)


__all__ = ["StorePart", "YearMosaic", "choose_level", "compose_year", "grid_transform",
           "metres_per_degree_lat", "metres_per_degree_lon", "output_grid"]
