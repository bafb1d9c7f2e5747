"""Reading zone stores: lazy xarray datasets, point samples and regions, directly or via STAC.

One dequantisation rule everywhere: ``value = int8 embedding × float32 scale``, NaN where the
scale is NaN (no data). Points and pixels are routed to the store of their UTM zone
(canonical EPSG:326ZZ northings, negative south of the equator), as the builder placed them.

Zone seams: each store holds only its own zone's tiles, and tiles are snapped to the zone's
pixel lattice, so a zone's data can stop up to a pixel short of the zone edge. Within 1.5
pixels of a zone edge a location whose pixel is empty takes the nearest valid pixel of the
3 × 3 around it (the cross-zone analogue of the builder's "covering tile" rule); elsewhere a
NaN stays NaN.

xarray is needed for ``open_store``, ``open_item``, ``read_region`` and DataArray results
(the ``read`` extra); ``sample`` works with the core dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import zarr
from pyproj import CRS, Transformer
from rasterio.crs import CRS as RioCRS
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject

from .errors import StoreError, StoreNotFoundError
from .metadata import gdal_geotransform
from .stac import Level, StoreMeta, find_stores, open_root, read_meta
from .store import store_name
from .tiles import utm_zone

try:
    import xarray as xr
except ImportError:  # the optional `read` extra is not installed
    xr = None

Source = str | Path | pystac.Catalog
#: Within this many pixels of a zone edge, an empty pixel takes its nearest valid neighbour.
SEAM_PX = 1.5
M_PER_DEG = 111_320.0
#: read_region refuses to read more than this from one store (int8 bands + scales + index).
MAX_READ_BYTES = 4 * 2**30


def _need_xarray() -> None:
    if xr is None:
        raise ImportError("xarray is not installed: pip install 'geotessera[read]'")


def dequantise(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``q`` (int8, any shape) × ``scale`` (broadcastable) as float32; NaN where scale is NaN."""
    return q.astype(np.float32) * np.asarray(scale, np.float32)


@lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> Transformer:
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
    hrefs = {int(p.name[3:5]): str(p) for p in find_stores(path) if p.name[6:10] == str(year)}
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
        x, y = _transformer("EPSG:4326", f"EPSG:{self.meta.epsg}").transform(lon, lat)
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
        seam = ~np.isfinite(sc) & _near_zone_edge(lon[inside], lat[inside], self.meta.zone,
                                                  level.pixel_size)
        if seam.any():
            rows, cols, inb = _neighbours(fr[inside][seam], fc[inside][seam], level.shape)
            pick = _first_valid(inb & np.isfinite(
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


def _near_zone_edge(lon: np.ndarray, lat: np.ndarray, zone: Any, pixel_size: float
                    ) -> np.ndarray:
    """True within SEAM_PX pixels (approximate metres on the sphere) of the zone's edges;
    ``zone`` is one zone or one per point."""
    west = -180.0 + 6.0 * (np.asarray(zone) - 1)
    deg = np.minimum(np.abs(lon - west), np.abs(west + 6.0 - lon))
    return deg * M_PER_DEG * np.cos(np.radians(lat)) < SEAM_PX * pixel_size


def _neighbours(fr: np.ndarray, fc: np.ndarray, shape: tuple[int, int]):
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


def _first_valid(valid: np.ndarray) -> np.ndarray:
    """Index of the first True in each row of ``valid``; -1 where none."""
    return np.where(valid.any(axis=1), valid.argmax(axis=1), -1)


# --- sample ------------------------------------------------------------------------------------


def _lonlat(points: Any) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1 and pts.size == 2:
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (lon, lat) pairs, shape (n, 2); got {pts.shape}")
    return pts[:, 0].copy(), pts[:, 1].copy()


def _zones(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
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
        lon, lat = _lonlat(points)
        zones = _zones(lon, lat)
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


def sample(points: Any, year: int, source: Source, *, allow_incomplete: bool = False,
           as_dataarray: bool = False):
    """Dequantised vectors at lon/lat points, across any zones: (n, bands) float32.

    ``points``: (n, 2) lon/lat pairs (or one pair). ``source``: a stores directory, one store,
    a STAC catalog/collection (path, URL or pystac object) or a stores-directory URL. Rows
    are NaN where there is no data, including zones the source has no store for. Raises
    StoreError when a listable source has no store at all for ``year``, or a store's build is
    incomplete (unless ``allow_incomplete``). ``as_dataarray`` returns an xarray.DataArray
    with dims (point, band) and lon/lat coordinates.
    """
    values = Reader(source, year, allow_incomplete=allow_incomplete).sample(points)
    if not as_dataarray:
        return values
    _need_xarray()
    lon, lat = _lonlat(points)
    return xr.DataArray(values, dims=("point", "band"), name="embeddings",
                        coords={"lon": ("point", lon), "lat": ("point", lat),
                                "band": np.arange(values.shape[1])}, attrs={"year": year})


# --- lazy datasets -----------------------------------------------------------------------------


def open_store(path_or_url: str | Path, level: int = 0, *, chunks: Any = "shards",
               allow_incomplete: bool = False):
    """A level of a store as a lazy ``xarray.Dataset`` (int8 ``embeddings``, float32
    ``scales``, coordinates and the CF ``spatial_ref`` grid mapping, so rioxarray/odc-geo see
    the CRS). ``chunks="shards"`` gives one dask chunk per shard; anything else goes to
    ``xarray.open_zarr``. Use ``dequantise_dataset`` for float32 values."""
    _need_xarray()
    zs = ZoneStore.open(path_or_url, allow_incomplete)
    if not 0 <= level < len(zs.meta.levels):
        raise ValueError(f"{path_or_url}: level {level} not in 0..{len(zs.meta.levels) - 1}")
    lv = zs.meta.levels[level]
    if chunks == "shards":  # the largest stored object (a shard; chunks nest inside it)
        units = [a.shards or a.chunks for a in zs.arrays(lv)]
        chunks = {"y": max(u[-2] for u in units), "x": max(u[-1] for u in units)}
    ds = xr.open_zarr(zs.root.store, group=lv.path, chunks=chunks, consolidated=False)
    if "spatial_ref" in ds.data_vars:
        ds = ds.set_coords("spatial_ref")
    ds.attrs.update({"geotessera:zone": zs.meta.zone, "geotessera:year": zs.meta.year,
                     "geotessera:level": lv.path})
    return ds


def dequantise_dataset(ds) -> Any:
    """Lazy float32 ``embeddings × scales`` (band, y, x) of an ``open_store`` dataset."""
    out = ds["embeddings"].astype(np.float32) * ds["scales"].astype(np.float32)
    return out.rename("embeddings").assign_attrs(long_name="dequantised embedding")


def open_item(item: pystac.Item, level: int = 0, *, asset: str = "embeddings", **kw: Any):
    """Open a STAC item's Zarr asset with ``open_store`` (catalog → item → asset → dataset)."""
    return open_store(item.assets[asset].get_absolute_href(), level, **kw)


def catalog_items(catalog: str | Path | pystac.Catalog, year: int | None = None
          ) -> list[pystac.Item]:
    """The catalog's items (optionally of one year), sorted by id."""
    cat = catalog if isinstance(catalog, pystac.Catalog) else pystac.read_file(str(catalog))
    found = [i for i in cat.get_items(recursive=True)
             if year is None or i.properties.get("geotessera:year") == year]
    return sorted(found, key=lambda i: i.id)


# --- regions -----------------------------------------------------------------------------------


def choose_level(levels: Iterable[Level], resolution: float) -> Level:
    """The coarsest level whose pixel size is ≤ ``resolution`` (the finest if none is)."""
    levels = sorted(levels, key=lambda lv: lv.pixel_size)
    fit = [lv for lv in levels if lv.pixel_size <= resolution * (1 + 1e-9)]
    return fit[-1] if fit else levels[0]


@dataclass(frozen=True, slots=True)
class Grid:
    """A north-up output grid: CRS, affine (rasterio order), shape (y, x)."""

    crs: CRS
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]

    def xy(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates in ``crs``."""
        a, _, c, _, e, f = self.transform
        return c + (cols + 0.5) * a, f + (rows + 0.5) * e

    def to(self, crs: str, rows: np.ndarray, cols: np.ndarray):
        x, y = _transformer(self.crs.to_wkt(), crs).transform(*self.xy(rows, cols))
        return np.asarray(x), np.asarray(y)


def target_grid(bbox: tuple[float, float, float, float], crs: CRS, resolution: float) -> Grid:
    """The grid on multiples of ``resolution`` that covers the WGS84 ``bbox`` (densified
    edges) in ``crs``. With the stores' own CRS and pixel size it is their pixel lattice."""
    x0, y0, x1, y1 = _transformer("EPSG:4326", crs.to_wkt()).transform_bounds(
        *bbox, densify_pts=21)
    r = resolution
    left, right = math.floor(x0 / r) * r, math.ceil(x1 / r) * r
    bottom, top = math.floor(y0 / r) * r, math.ceil(y1 / r) * r
    shape = (max(round((top - bottom) / r), 1), max(round((right - left) / r), 1))
    return Grid(crs, (r, 0.0, left, 0.0, -r, top), shape)


@dataclass(frozen=True, slots=True)
class _Part:
    """One store's window of data and, for every output pixel, its nearest window pixel."""

    zone: int
    level: Level
    transform: tuple[float, float, float, float, float, float]  # of the window
    emb: np.ndarray  # (band, h, w) int8
    sc: np.ndarray  # (h, w) float32
    idx: np.ndarray  # (H, W) flat index into the window, -1 where it does not reach

    @property
    def valid(self) -> np.ndarray:
        ok = self.idx >= 0
        out = np.zeros(self.idx.shape, bool)
        out[ok] = np.isfinite(self.sc.ravel()[self.idx[ok]])
        return out

    def gather(self, flat: np.ndarray) -> np.ndarray:
        """(band, k) dequantised values at flat window indices."""
        vals = np.take(self.emb.reshape(self.emb.shape[0], -1), flat, axis=1)
        return dequantise(vals, self.sc.ravel()[flat])

    def fractional(self, grid: Grid, rows: np.ndarray, cols: np.ndarray):
        x, y = grid.to(f"EPSG:{32600 + self.zone}", rows, cols)
        a, _, c, _, e, f = self.transform
        return (y - f) / e, (x - c) / a


def _source_window(level: Level, epsg: int, grid: Grid) -> tuple[slice, slice] | None:
    a, _, c, _, e, f = grid.transform
    h, w = grid.shape
    x0, y0, x1, y1 = _transformer(grid.crs.to_wkt(), f"EPSG:{epsg}").transform_bounds(
        c, f + e * h, c + a * w, f, densify_pts=21)
    la, _, lc, _, le, lf = level.transform
    r0, r1 = math.floor((y1 - lf) / le) - 2, math.ceil((y0 - lf) / le) + 2
    c0, c1 = math.floor((x0 - lc) / la) - 2, math.ceil((x1 - lc) / la) + 2
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, level.shape[0]), min(c1, level.shape[1])
    return (slice(r0, r1), slice(c0, c1)) if r0 < r1 and c0 < c1 else None


def _part(zs: ZoneStore, grid: Grid, resolution_m: float) -> _Part | None:
    """Read the window of ``zs`` under ``grid`` at the level matching the resolution and
    map every output pixel to its nearest window pixel (rasterio's nearest warp of a
    pixel-index raster: exact values, one band warped instead of 128)."""
    level = choose_level(zs.meta.levels, resolution_m)
    win = _source_window(level, zs.meta.epsg, grid)
    if win is None:
        return None
    emb_arr, sc_arr = zs.arrays(level)
    need = (win[0].stop - win[0].start) * (win[1].stop - win[1].start) * (emb_arr.shape[0] + 12)
    if need > MAX_READ_BYTES:
        raise ValueError(f"{zs.meta.href}: this region needs {need / 2**30:.1f} GiB from level "
                         f"{level.path} ({level.pixel_size:g} m pixels); ask a smaller bbox or "
                         "a finer resolution, or build overview levels (the rgb pass)")
    sc = sc_arr[win]
    if not np.isfinite(sc).any():
        return None
    a, b, c, d, e, f = level.transform
    t = (a, b, c + a * win[1].start, d, e, f + e * win[0].start)
    idx = np.full(grid.shape, -1.0)
    reproject(np.arange(sc.size, dtype=np.float64).reshape(sc.shape), idx,
              src_transform=Affine(*t), src_crs=RioCRS.from_epsg(zs.meta.epsg),
              dst_transform=Affine(*grid.transform), dst_crs=RioCRS.from_wkt(grid.crs.to_wkt()),
              dst_nodata=-1.0, resampling=Resampling.nearest)
    return _Part(zs.meta.zone, level, t, emb_arr[(slice(None), *win)], sc,
                 idx.astype(np.int64))


def _touches(mask: np.ndarray) -> np.ndarray:
    """Pixels with a True pixel among their 8 neighbours (or themselves)."""
    h, w = mask.shape
    p = np.pad(mask, 1)
    return np.logical_or.reduce([p[i:i + h, j:j + w] for i in range(3) for j in range(3)])


def _mosaic(parts: list[_Part], grid: Grid, bands: int) -> np.ndarray:
    """Each pixel from the store that has data there; where two do, the store of the
    pixel's own UTM zone (as ``sample`` routes it); then the zone-seam rule."""
    out = np.full((bands, *grid.shape), np.nan, np.float32)
    owner = np.full(grid.shape, -1, np.int16)
    valid = [p.valid for p in parts]
    for k, v in enumerate(valid):
        owner[v & (owner < 0)] = k
    rr, cc = np.nonzero(np.sum(valid, axis=0) > 1)
    if rr.size:
        zones = _zones(*grid.to("EPSG:4326", rr, cc))
        for k, (p, v) in enumerate(zip(parts, valid)):
            mine = (zones == p.zone) & v[rr, cc]
            owner[rr[mine], cc[mine]] = k
    flat = out.reshape(bands, -1)
    for k, p in enumerate(parts):
        pos = np.flatnonzero(owner.ravel() == k)
        flat[:, pos] = p.gather(p.idx.ravel()[pos])
    _fill_seams(flat, owner, parts, grid)
    return out


def _fill_seams(out: np.ndarray, owner: np.ndarray, parts: list[_Part], grid: Grid) -> None:
    """Empty pixels next to data and within SEAM_PX of a zone edge take the nearest valid
    pixel of the 3 × 3 around them: in their own zone's store first, then any other.
    ``out`` is (band, H·W)."""
    rr, cc = np.nonzero((owner < 0) & _touches(owner >= 0))
    if rr.size == 0:
        return
    lon, lat = grid.to("EPSG:4326", rr, cc)
    zones = _zones(lon, lat)
    todo = np.ones(rr.size, bool)
    for own in (True, False):
        for p in parts:
            sel = todo & ((zones == p.zone) == own) & _near_zone_edge(
                lon, lat, zones, p.level.pixel_size)
            if not sel.any():
                continue
            rows, cols, inb = _neighbours(*p.fractional(grid, rr[sel], cc[sel]), p.sc.shape)
            pick = _first_valid(inb & np.isfinite(p.sc[rows, cols]))
            ok = pick >= 0
            i = np.flatnonzero(sel)[ok]
            src = rows[ok, pick[ok]] * p.sc.shape[1] + cols[ok, pick[ok]]
            out[:, rr[i] * grid.shape[1] + cc[i]] = p.gather(src)
            todo[i] = False


def _target(bbox, crs: Any, resolution: float | None, finest_m: float):
    """(output CRS, resolution in its units, resolution in metres for the level choice)."""
    west, south, east, north = bbox
    dst = (CRS.from_user_input(crs) if crs is not None
           else CRS.from_epsg(32600 + utm_zone((west + east) / 2)))
    if dst.is_geographic:
        if resolution is None:
            raise ValueError(f"resolution (degrees) is required for a geographic crs {crs!r}")
        return dst, resolution, resolution * M_PER_DEG * math.cos(math.radians((south + north) / 2))
    unit = dst.axis_info[0].unit_conversion_factor
    res = resolution if resolution is not None else finest_m / unit
    return dst, res, res * unit


def _check_bbox(bbox: Any) -> tuple[float, float, float, float]:
    west, south, east, north = (float(v) for v in bbox)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise ValueError(f"bbox must be (west, south, east, north) in degrees with west < east "
                         f"and south < north (no antimeridian crossing); got {bbox!r}")
    return west, south, east, north


def read_region(bbox: Any, year: int, source: Source, crs: Any = None,
                resolution: float | None = None, *, allow_incomplete: bool = False):
    """Dequantised embeddings over a WGS84 ``bbox`` (west, south, east, north) as one
    ``xarray.DataArray`` (band, y, x) float32 with its CRS attached.

    Mosaics every zone the bbox touches into ``crs`` (default: the canonical UTM zone of the
    bbox centre) at ``resolution`` in that CRS's units (default: the finest store pixel), on
    a grid of multiples of the resolution (so the default is the stores' own lattice: no
    resampling in the centre's zone). Each store is read at its coarsest level whose pixel is
    ≤ the resolution; values are nearest-neighbour (never blended). NaN where there is no
    data. Raises StoreError as ``sample`` does.
    """
    _need_xarray()
    box = _check_bbox(bbox)
    reader = Reader(source, year, allow_incomplete=allow_incomplete)
    zones = range(utm_zone(box[0]), utm_zone(box[2]) + 1)
    opened = [zs for z in zones if (zs := reader.zone(z)) is not None]
    finest = min((zs.meta.levels[0].pixel_size for zs in opened), default=10.0)
    dst, res, res_m = _target(box, crs, resolution, finest)
    grid = target_grid(box, dst, res)
    parts = [p for zs in opened if (p := _part(zs, grid, res_m)) is not None]
    out = _mosaic(parts, grid, parts[0].emb.shape[0] if parts else reader.bands())
    return _dataarray(out, grid, year, parts)


def _dataarray(values: np.ndarray, grid: Grid, year: int, parts: list[_Part]):
    h, w = grid.shape
    x, _ = grid.xy(np.zeros(w), np.arange(w))
    _, y = grid.xy(np.arange(h), np.zeros(h))
    wkt = grid.crs.to_wkt()
    ref = {**grid.crs.to_cf(), "crs_wkt": wkt, "spatial_ref": wkt,
           "GeoTransform": gdal_geotransform(grid.transform)}
    epsg = grid.crs.to_epsg()
    return xr.DataArray(
        values, dims=("band", "y", "x"), name="embeddings",
        coords={"band": np.arange(values.shape[0]), "y": ("y", y, {"axis": "Y"}),
                "x": ("x", x, {"axis": "X"}), "spatial_ref": ((), 0, ref)},
        attrs={"long_name": "dequantised embedding", "grid_mapping": "spatial_ref",
               "geotessera:year": year, **({"proj:code": f"EPSG:{epsg}"} if epsg else {}),
               "geotessera:levels": {f"utm{p.zone:02d}": p.level.path for p in parts}},
    )
