"""Web Mercator map tiles of a year's zone stores, placed pixel by pixel.

For every output pixel centre of a ``WebMercatorQuad`` tile, the renderer takes its ground
point (lon, lat), projects it into each candidate store's EPSG:326ZZ with pyproj and takes
the store pixel that contains it (nearest neighbour, never blended), from the level whose
pixel size best matches the tile's ground resolution (``grid.nearest_level``). Zones are
mosaicked by ``read_region``'s rule: a location takes the store of the zone of its
longitude, another zone's store only where its own has no data there; the zone-edge crack
rule (``read.crack_pixels``) applies as it does for ``sample`` and ``read_region``. Where no
store has data the tile is transparent (alpha 0).

Colours are the stores' own ``rgba`` preview, or with ``bands`` a false colour of three
dequantised embedding bands through a ``Stretch`` (``stretches``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np
from pyproj import Transformer

from ..errors import StoreError
from . import grid
from ._core import Level, ZoneStore, crack_pixels
from .png import encode_rgba
from .sources import YearStores

#: Read a window of the level when it holds at most this many times the tile's pixels;
#: otherwise read only the rows and columns the tile needs (a level much finer than the
#: tile, i.e. a store without overviews).
WINDOW_FACTOR = 16
#: Pixels of margin around a window, so the crack rule's edge pixel (≤ 1 px away) is in it.
WINDOW_PAD = 2
#: The crack rule's reach from a zone edge meridian in level pixels, with margin
#: (``crack_pixels`` looks within 2 · (HALO_PX + 1) = 4 pixels).
CRACK_REACH_PX = 6
#: Longitude margin (degrees) when matching a tile against a store's bounding box.
BBOX_MARGIN_DEG = 0.05


@dataclass(frozen=True, slots=True)
class TileRequest:
    """One tile of one year; ``bands`` selects false colour from three embedding bands."""

    year: int
    z: int
    x: int
    y: int
    bands: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        grid.check_tile(self.z, self.x, self.y)


@dataclass(frozen=True, slots=True)
class RenderedTile:
    """A tile's RGBA pixels (4, 256, 256) and, per zone store read, the level used."""

    rgba: np.ndarray
    levels: tuple[tuple[int, str, float], ...]  # (zone, level path, pixel size m)

    def png(self, level: int = 1) -> bytes:
        """The tile as an RGBA PNG (zlib ``level``: 1 is fast, 6 or 9 smaller)."""
        return encode_rgba(self.rgba, level)

    @property
    def empty(self) -> bool:
        return not self.rgba[3].any()

    @property
    def level(self) -> str:
        """The level(s) used, e.g. ``L2`` (``L2,L3`` if zones differ; ``none``)."""
        paths = sorted({p for _, p, _ in self.levels}, key=lambda p: (len(p), p))
        return ",".join(paths) or "none"

    @property
    def zones(self) -> str:
        """``30:L2,31:L2``: each store read and its level."""
        return ",".join(f"{z}:{p}" for z, p, _ in self.levels)

    @property
    def pixel_size(self) -> float | None:
        return min((s for _, _, s in self.levels), default=None)


@dataclass(slots=True)
class _Part:
    """One store's pixels for a tile: level, store pixel per tile pixel, validity."""

    zone: int
    level: Level
    rows: np.ndarray  # (n,) store rows (valid where ``inside``)
    cols: np.ndarray
    inside: np.ndarray
    valid: np.ndarray | None = None
    colours: np.ndarray | None = None  # (4, n) uint8


def _window(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]):
    r0, r1 = max(int(rows.min()) - WINDOW_PAD, 0), min(int(rows.max()) + 1 + WINDOW_PAD, shape[0])
    c0, c1 = max(int(cols.min()) - WINDOW_PAD, 0), min(int(cols.max()) + 1 + WINDOW_PAD, shape[1])
    return r0, r1, c0, c1


class PixelReader:
    """Values of one 2-D or 3-D (lead, y, x) array at scattered pixels, reading either one
    window or only the needed rows and columns (whichever reads less)."""

    def __init__(self, arr, lead, rows: np.ndarray, cols: np.ndarray) -> None:
        self.arr, self.lead = arr, lead
        shape = arr.shape[-2:]
        r0, r1, c0, c1 = _window(rows, cols, shape)
        if (r1 - r0) * (c1 - c0) <= WINDOW_FACTOR * grid.TILE_PX**2:
            sel = (slice(r0, r1), slice(c0, c1))
            self.row_of, self.col_of = (lambda r: r - r0), (lambda c: c - c0)
        else:
            ur, uc = np.unique(rows), np.unique(cols)
            ur = np.unique(np.concatenate([ur + d for d in range(-WINDOW_PAD, WINDOW_PAD + 1)]))
            uc = np.unique(np.concatenate([uc + d for d in range(-WINDOW_PAD, WINDOW_PAD + 1)]))
            ur, uc = ur[(ur >= 0) & (ur < shape[0])], uc[(uc >= 0) & (uc < shape[1])]
            sel = (ur, uc)
            self.row_of = lambda r: np.searchsorted(ur, r)
            self.col_of = lambda c: np.searchsorted(uc, c)
        self.block = arr.oindex[(*(() if lead is None else (lead,)), *sel)]

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.block[..., self.row_of(rows), self.col_of(cols)]


class TileRenderer:
    """Renders tiles of the years of a source; thread-safe (stores are read-only, each
    call allocates its own arrays; pyproj transformers keep per-thread state)."""

    def __init__(self, years: dict[int, YearStores], stretches=None) -> None:
        self.years = years
        self.stretches = stretches

    def year(self, year: int) -> YearStores:
        if year not in self.years:
            raise StoreError(f"year {year}", f"no zone stores for year {year}; years are "
                             f"{sorted(self.years)}")
        return self.years[year]

    def render(self, req: TileRequest) -> RenderedTile:
        ys = self.year(req.year)
        west, south, east, north = grid.lonlat_bounds(req.z, req.x, req.y)
        candidates = [zs for zs, (w, s, e, n) in ys.bboxes()
                      if w - BBOX_MARGIN_DEG <= east and e + BBOX_MARGIN_DEG >= west
                      and s <= north and n >= south]
        size = grid.TILE_PX
        out = np.zeros((4, size * size), np.uint8)
        if not candidates:
            return RenderedTile(out.reshape(4, size, size), ())
        lon1, lat1 = grid.pixel_centres(req.z, req.x, req.y)
        lon = np.broadcast_to(lon1[None, :], (size, size)).ravel()
        lat = np.broadcast_to(lat1[:, None], (size, size)).ravel()
        res = grid.ground_resolution(req.z, (south + north) / 2)
        stretch = None if req.bands is None else self.stretches.get(ys, req.bands)
        parts = [p for zs in candidates
                 if (p := self._part(zs, lon, lat, res, req.bands, stretch)) is not None]
        _mosaic(parts, lon, out)
        levels = tuple((p.zone, p.level.path, p.level.pixel_size) for p in parts)
        return RenderedTile(out.reshape(4, size, size), levels)

    def _part(self, zs: ZoneStore, lon, lat, res, bands, stretch) -> _Part | None:
        levels = zs.meta.levels
        level = levels[grid.nearest_level([lv.pixel_size for lv in levels], res)]
        x, y = _to_utm(zs.meta.epsg).transform(lon, lat)
        a, _, c, _, e, f = level.transform
        with np.errstate(invalid="ignore"):
            fr, fc = (np.asarray(y) - f) / e, (np.asarray(x) - c) / a
            inside = (fr >= 0) & (fr < level.shape[0]) & (fc >= 0) & (fc < level.shape[1])
        if not inside.any():
            return None
        rows = np.where(inside, np.floor(np.where(inside, fr, 0)), 0).astype(np.int64)
        cols = np.where(inside, np.floor(np.where(inside, fc, 0)), 0).astype(np.int64)
        part = _Part(zs.meta.zone, level, rows, cols, inside)
        idx = np.flatnonzero(inside)
        if bands is None:
            rgba = PixelReader(zs.array(level, "rgba"), slice(None), rows[idx], cols[idx])
            valid_of = lambda r, q: rgba.at(r, q)[3] > 0  # noqa: E731
        else:
            sc = PixelReader(zs.arrays(level)[1], None, rows[idx], cols[idx])
            valid_of = lambda r, q: np.isfinite(sc.at(r, q))  # noqa: E731
        ok = valid_of(rows[idx], cols[idx])
        if _near_zone_edge(zs.meta.zone, lon, lat, CRACK_REACH_PX * level.pixel_size):
            _apply_cracks(zs, level, part, idx, ok, lon, lat, valid_of)
        keep = idx[ok]
        part.valid = np.zeros(inside.shape, bool)
        part.valid[keep] = True
        part.colours = np.zeros((4, inside.size), np.uint8)
        if keep.size == 0:
            return part
        r, q = rows[keep], cols[keep]
        if bands is None:
            part.colours[:, keep] = rgba.at(r, q)
        else:
            emb = PixelReader(zs.arrays(level)[0], np.asarray(bands), r, q)
            values = emb.at(r, q).astype(np.float32) * sc.at(r, q).astype(np.float32)
            part.colours[:, keep] = stretch.colour(values, np.ones(keep.size, bool))
        return part


def _near_zone_edge(zone: int, lon: np.ndarray, lat: np.ndarray, metres: float) -> bool:
    """Whether the tile comes within ``metres`` of the zone's edge meridians (the crack rule
    never applies farther away: a cheap test before it)."""
    west = -180.0 + 6.0 * (zone - 1)
    coslat = max(math.cos(math.radians(float(np.max(np.abs(lat))))), 1e-6)
    reach = metres / (111_320.0 * coslat)
    lo, hi = float(lon.min()), float(lon.max())
    return any(lo - reach <= edge <= hi + reach for edge in (west, west + 6.0))


def _apply_cracks(zs, level, part: _Part, idx, ok, lon, lat, valid_of) -> None:
    """The zone-edge crack rule for empty pixels: point them at the owner tile's edge pixel
    where ``crack_pixels`` says so (in place on ``part`` rows/cols and ``ok``)."""
    empty = np.flatnonzero(~ok)
    if empty.size == 0:
        return
    at = idx[empty]
    r2, c2, applies = crack_pixels(zs, level, part.rows[at], part.cols[at], lon[at], lat[at])
    if not applies.any():
        return
    j = at[applies]
    part.rows[j], part.cols[j] = r2[applies], c2[applies]
    ok[empty[applies]] = valid_of(part.rows[j], part.cols[j])


def _mosaic(parts: list[_Part], lon: np.ndarray, out: np.ndarray) -> None:
    """Into ``out`` (4, n): each pixel from the store of its own zone where that store has
    data there, else from the first (lowest zone) store that has (``read_region``'s rule)."""
    if not parts:
        return
    owner = np.full(lon.shape, -1, np.int16)
    for k, p in enumerate(parts):
        owner[p.valid & (owner < 0)] = k
    zones = grid.utm_zones(lon)
    for k, p in enumerate(parts):
        owner[p.valid & (zones == p.zone)] = k
    for k, p in enumerate(parts):
        sel = owner == k
        out[:, sel] = p.colours[:, sel]


_TRANSFORMERS: dict[int, Transformer] = {}


def _to_utm(epsg: int) -> Transformer:
    if epsg not in _TRANSFORMERS:  # a benign race: two threads may build the same one
        _TRANSFORMERS[epsg] = Transformer.from_crs(4326, epsg, always_xy=True)
    return _TRANSFORMERS[epsg]
