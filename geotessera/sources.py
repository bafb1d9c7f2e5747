"""Where a year's zone stores are, opened on first use, and point look-ups in them.

A source is a stores directory, one store, a STAC catalog or collection (path, URL or pystac
object) or the URL of a stores directory. Points are routed to the store of their UTM zone
(canonical EPSG:326ZZ northings, negative south of the equator), as the builder placed them.

One dequantisation rule everywhere: ``value = int8 embedding × float32 scale``, NaN where the
scale is NaN (no data). A location takes its own zone's store; another zone's store only
where its own has no data there. One exception closes the crack at a zone edge
(``crack_pixels``). ``read`` builds its public API and its region mosaic on these. No xarray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import zarr
from pyproj import Transformer

from .errors import StoreError, StoreNotFoundError
from .store import store_name
from .tiles import parse_tile_name, tile_grid, utm_zone
from .types import TileKey
from .zonegrid import HALO_PX, ZoneGrid, placement
from .pointread import PointReader
from .zonestore import Level, StoreMeta, open_root, read_meta, store_paths

Source = str | Path | pystac.Catalog
M_PER_DEG = 111_320.0
#: A tile's raster reaches less than this beyond its zone's edge meridian (the slant of a
#: 0.1° cell in UTM adds under 600 m below 84° latitude; placement adds a pixel).
NEIGHBOUR_REACH_M = 2_000.0



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
    _readers: dict = field(default_factory=dict, compare=False, repr=False)

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
        empty = np.flatnonzero(~np.isfinite(sc))
        if empty.size:
            r2, c2, crack = crack_pixels(self, level, r[empty], c[empty], lon[inside][empty],
                                         lat[inside][empty])
            if crack.any():
                i = empty[crack]
                r[i], c[i] = r2[crack], c2[crack]
                sc[i] = sc_arr.vindex[r[i], c[i]]
        have = np.isfinite(sc)  # read embeddings only where there is data
        if have.any():
            vectors = self._vectors(level, emb_arr, r[have], c[have])
            out[np.flatnonzero(inside)[have]] = dequantise(vectors, sc[have][:, None])
        return out

    def _vectors(self, level: Level, emb_arr: zarr.Array, r: np.ndarray,
                 c: np.ndarray) -> np.ndarray:
        """(n, bands) int8: the direct point reader on local stores (kept, so shard indexes
        are read once per store), zarr's coordinate selection elsewhere."""
        if PointReader.supports(emb_arr):
            reader = self._readers.setdefault(level.path, PointReader(emb_arr))
            return reader.vectors(r, c)
        bands = np.arange(emb_arr.shape[0])
        return emb_arr.vindex[bands[:, None], r[None, :], c[None, :]].T


def _inside(fr: np.ndarray, fc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (fr >= 0) & (fr < shape[0]) & (fc >= 0) & (fc < shape[1])


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
    a, _, c, _, _, f = l0.transform
    w = placement(ZoneGrid(tile.zone, a, c, f, 1, 1, 1), tile)
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
    a, _, c, _, e, f = level.transform
    centre_lon, _ = transformer(f"EPSG:{zs.meta.epsg}", "EPSG:4326").transform(
        c + (cols[near] + 0.5) * a, f + (rows[near] + 0.5) * e)
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
        """(n, bands) float32 vectors at lon/lat ``points``, each from its own zone's store
        (with the zone-edge crack rule), else from an adjacent zone's store that has data
        there; NaN rows where none has (water, outside every store)."""
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
        self._from_neighbours(out, lon, lat, zones)
        return out

    def _from_neighbours(self, out: np.ndarray, lon: np.ndarray, lat: np.ndarray,
                         zones: np.ndarray) -> None:
        """Rows still without data, within NEIGHBOUR_REACH_M of their zone's edge, take the
        adjacent zones' stores where those have data (their tiles' rasters reach a little
        beyond their own zone's edge)."""
        todo = np.isnan(out[:, 0]) & (zones > 0)
        todo[todo] = edge_distance_m(lon[todo], lat[todo], zones[todo]) < NEIGHBOUR_REACH_M
        for z in sorted(set(zones[todo].tolist())):
            for other in ((z - 2) % 60 + 1, z % 60 + 1):
                sel = np.flatnonzero(todo & (zones == z) & np.isnan(out[:, 0]))
                if sel.size and (zs := self.zone(other)) is not None:
                    vals = zs.sample(lon[sel], lat[sel])
                    have = ~np.isnan(vals[:, 0])
                    out[sel[have]] = vals[have]
