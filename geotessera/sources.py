"""Where a year's zone stores are, opened on first use, and point look-ups in them.

A source is a stores directory, one store, a STAC catalog or collection (path, URL or pystac
object) or the URL of a stores directory. Points are routed to the store of their UTM zone
(canonical EPSG:326ZZ northings, negative south of the equator), as the builder placed them.

One dequantisation rule everywhere: ``value = int8 embedding × float32 scale``, NaN where the
scale is NaN (no data). Zone seams: within SEAM_PX pixels of a zone edge a location whose
pixel is empty takes the nearest valid pixel of the 3 × 3 around it; elsewhere a NaN stays
NaN. ``read`` builds its public API and its region mosaic on these. No xarray here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import zarr
from pyproj import Transformer

from .errors import StoreError, StoreNotFoundError
from .store import store_name
from .tiles import utm_zone
from .zonestore import Level, StoreMeta, open_root, read_meta, store_paths

Source = str | Path | pystac.Catalog
#: Within this many pixels of a zone edge, an empty pixel takes its nearest valid neighbour.
SEAM_PX = 1.5
M_PER_DEG = 111_320.0



def dequantise(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``q`` (int8, any shape) × ``scale`` (broadcastable) as float32; NaN where scale is NaN."""
    return q.astype(np.float32) * np.asarray(scale, np.float32)


@lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> Transformer:
    """A cached always-xy transformer between two CRS strings."""
    return Transformer.from_crs(src, dst, always_xy=True)


# --- sources -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreSet:
    """The stores of one year in a source: zone → href. ``listed`` is False for the URL of a
    stores directory, whose stores are then looked up by name (``utmZZ_YYYY.zarr``)."""

    source: str
    year: int
    hrefs: dict[int, str]
    listed: bool = True

    def href(self, zone: int) -> str | None:
        if self.listed:
            return self.hrefs.get(zone)
        return f"{self.source.rstrip('/')}/{store_name(zone, self.year)}"


def _stac_stores(obj: pystac.Catalog, year: int, where: str) -> StoreSet:
    hrefs = {}
    for item in obj.get_items(recursive=True):
        p = item.properties
        y = p.get("geotessera:year") or (item.common_metadata.start_datetime or item.datetime).year
        if y == year and "embeddings" in item.assets:
            zone = p.get("geotessera:zone") or int(str(p["proj:code"]).split(":")[-1]) % 100
            hrefs[int(zone)] = item.assets["embeddings"].get_absolute_href()
    if not hrefs:
        raise StoreError(where, f"no STAC item for year {year}")
    return StoreSet(where, year, hrefs)


def stores_of(source: Source, year: int) -> StoreSet:
    """Find the stores of ``year`` in a stores directory, a single store, a STAC catalog or
    collection (path, URL or pystac object), or a URL of a stores directory.

    Raises StoreError naming the source and year when a listable source has none.
    """
    if isinstance(source, pystac.Catalog):
        return _stac_stores(source, year, source.get_self_href() or source.id)
    text = str(source)
    if text.endswith(".json"):
        return _stac_stores(pystac.read_file(text), year, text)
    path = Path(text)
    if text.rstrip("/").endswith(".zarr") or (path / "zarr.json").is_file():  # one store
        meta = read_meta(open_root(text), text)
        if meta.year != year:
            raise StoreError(text, f"store holds year {meta.year}, not {year}")
        return StoreSet(text, year, {meta.zone: text})
    if "://" in text:
        return StoreSet(text, year, {}, listed=False)
    if not path.is_dir():
        raise StoreError(path, "no such store, catalog or directory")
    hrefs = {zone: str(p) for p, zone, _ in store_paths(path, [year]) if p.is_dir()}
    if not hrefs:
        raise StoreError(path, f"no zone stores for year {year}")
    return StoreSet(str(path), year, hrefs)



# --- one opened store --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZoneStore:
    """An opened, complete zone store (metadata parsed once)."""

    meta: StoreMeta
    root: zarr.Group

    @classmethod
    def open(cls, href: Any, allow_incomplete: bool = False) -> ZoneStore:
        """Open a path, URL or zarr Store; raise StoreError if it is not a zone store or its
        build is not complete."""
        root = open_root(href)
        meta = read_meta(root, str(href))
        if not (allow_incomplete or meta.passes.get("build")):
            raise StoreError(href, "build not complete (geotessera:build_complete is not "
                                   "true); pass allow_incomplete=True to read it anyway")
        return cls(meta, root)

    def arrays(self, level: Level) -> tuple[zarr.Array, zarr.Array]:
        return self.root[f"{level.path}/embeddings"], self.root[f"{level.path}/scales"]

    def fractional(self, level: Level, lon: np.ndarray, lat: np.ndarray):
        """(row, col) of lon/lat in ``level``'s pixels, fractional (pixel centres at .5)."""
        x, y = transformer("EPSG:4326", f"EPSG:{self.meta.epsg}").transform(lon, lat)
        a, _, c, _, e, f = level.transform
        return (np.asarray(y) - f) / e, (np.asarray(x) - c) / a

    def sample(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """(n, bands) float32 at the finest level; NaN outside the grid or without data."""
        level = self.meta.levels[0]
        emb_arr, sc_arr = self.arrays(level)
        fr, fc = self.fractional(level, lon, lat)
        out = np.full((len(lon), emb_arr.shape[0]), np.nan, np.float32)
        inside = _inside(fr, fc, level.shape)
        if not inside.any():
            return out
        r, c = np.floor(fr[inside]).astype(np.int64), np.floor(fc[inside]).astype(np.int64)
        sc = sc_arr.vindex[r, c]
        seam = ~np.isfinite(sc) & near_zone_edge(lon[inside], lat[inside], self.meta.zone,
                                                  level.pixel_size)
        if seam.any():
            rows, cols, inb = neighbours(fr[inside][seam], fc[inside][seam], level.shape)
            pick = first_valid(inb & np.isfinite(
                sc_arr.vindex[rows.ravel(), cols.ravel()]).reshape(rows.shape))
            ok = pick >= 0
            idx = np.flatnonzero(seam)[ok]
            r[idx], c[idx] = rows[ok, pick[ok]], cols[ok, pick[ok]]
            sc[idx] = sc_arr.vindex[r[idx], c[idx]]
        have = np.isfinite(sc)  # read embeddings only where there is data
        if have.any():
            bands = np.arange(emb_arr.shape[0])
            emb = emb_arr.vindex[bands[:, None], r[have][None, :], c[have][None, :]]
            out[np.flatnonzero(inside)[have]] = dequantise(emb.T, sc[have][:, None])
        return out


def _inside(fr: np.ndarray, fc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (fr >= 0) & (fr < shape[0]) & (fc >= 0) & (fc < shape[1])


def near_zone_edge(lon: np.ndarray, lat: np.ndarray, zone: Any, pixel_size: float
                   ) -> np.ndarray:
    """True within SEAM_PX pixels (approximate metres on the sphere) of the zone's edges;
    ``zone`` is one zone or one per point."""
    west = -180.0 + 6.0 * (np.asarray(zone) - 1)
    deg = np.minimum(np.abs(lon - west), np.abs(west + 6.0 - lon))
    return deg * M_PER_DEG * np.cos(np.radians(lat)) < SEAM_PX * pixel_size


def neighbours(fr: np.ndarray, fc: np.ndarray, shape: tuple[int, int]):
    """(k, 9) rows, cols and in-grid mask of the 3 × 3 pixels around each fractional
    position, nearest first (out-of-grid ones are clipped and masked)."""
    d = np.array([-1, 0, 1])
    rows = np.floor(fr)[:, None] + np.repeat(d, 3)[None, :]
    cols = np.floor(fc)[:, None] + np.tile(d, 3)[None, :]
    d2 = (rows + 0.5 - fr[:, None]) ** 2 + (cols + 0.5 - fc[:, None]) ** 2
    order = np.argsort(d2, axis=1, kind="stable")
    rows, cols = np.take_along_axis(rows, order, 1), np.take_along_axis(cols, order, 1)
    inb = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    rows = np.clip(rows, 0, shape[0] - 1).astype(np.int64)
    return rows, np.clip(cols, 0, shape[1] - 1).astype(np.int64), inb


def first_valid(valid: np.ndarray) -> np.ndarray:
    """Index of the first True in each row of ``valid``; -1 where none."""
    return np.where(valid.any(axis=1), valid.argmax(axis=1), -1)


# --- points ------------------------------------------------------------------------------------


def parse_points(points: Any) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) float64 copies of (n, 2) lon/lat pairs or of one pair; ValueError otherwise."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1 and pts.size == 2:
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (lon, lat) pairs, shape (n, 2); got {pts.shape}")
    return pts[:, 0].copy(), pts[:, 1].copy()


def zones_of(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """UTM zone of each point (tiles.utm_zone), 0 for a non-finite or out-of-range point."""
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    return np.array([utm_zone(v) if good else 0 for v, good in zip(lon.tolist(), ok)], int)


class Reader:
    """The stores of one year in one source, each opened on first use and kept open."""

    def __init__(self, source: Source, year: int, *, allow_incomplete: bool = False) -> None:
        self.stores = stores_of(source, year)
        self.allow_incomplete = allow_incomplete
        self._open: dict[int, ZoneStore | None] = {}

    def zone(self, zone: int) -> ZoneStore | None:
        """The store of ``zone``, or None when the source has none for it."""
        if zone not in self._open:
            href = self.stores.href(zone)
            try:
                self._open[zone] = href and ZoneStore.open(href, self.allow_incomplete)
            except StoreNotFoundError:
                if self.stores.listed:
                    raise
                self._open[zone] = None  # a URL source: no store by that name
        return self._open[zone]

    def bands(self) -> int:
        for zone in sorted(self.stores.hrefs) or sorted(z for z, s in self._open.items() if s):
            if (zs := self.zone(zone)) is not None:
                return zs.meta.bands or zs.arrays(zs.meta.levels[0])[0].shape[0]
        raise StoreError(self.stores.source, f"no zone store for year {self.stores.year} "
                                             f"(tried zones {sorted(self._open)})")

    def sample(self, points: Any) -> np.ndarray:
        """(n, bands) float32 vectors at lon/lat ``points``; NaN rows where there is no data
        (water, outside every store, or a zone without a store)."""
        lon, lat = parse_points(points)
        zones = zones_of(lon, lat)
        parts = []
        for z in sorted(set(zones.tolist()) - {0}):
            if (zs := self.zone(z)) is not None:
                sel = zones == z
                parts.append((sel, zs.sample(lon[sel], lat[sel])))
        out = np.full((len(lon), parts[0][1].shape[1] if parts else self.bands()), np.nan,
                      np.float32)
        for sel, vals in parts:
            out[sel] = vals
        return out
