"""Regions: the stores under a WGS84 bbox mosaicked into one grid in any CRS.

Each store is read at its coarsest level whose pixel is ≤ the resolution; values are
nearest-neighbour (never blended); each output pixel comes from the store of its own zone
(``seams``), another zone's store only where its own has no data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from pyproj import CRS

from geotessera.read.aliases import BBox, CRSLike, Source
from geotessera.read.mosaic import Part, fill
from geotessera.read.project import nearest_index, transformer
from geotessera.read.reader import Reader, ZoneStore, zones_of
from geotessera.read.seams import M_PER_DEG, crack_pixels, zone_edges
from geotessera.store.attrs import gdal_geotransform
from geotessera.tiles import utm_zone
from geotessera.types import Level, PixelGrid

if TYPE_CHECKING:
    import xarray as xr

#: read_region refuses to read more than this from one store (int8 bands + scales + index).
MAX_READ_BYTES = 4 * 2**30


def choose_level(levels: Iterable[Level], resolution: float) -> Level:
    """The coarsest level whose pixel size is ≤ ``resolution`` (the finest if none is)."""
    levels = sorted(levels, key=lambda lv: lv.pixel_size)
    fit = [lv for lv in levels if lv.pixel_size <= resolution * (1 + 1e-9)]
    return fit[-1] if fit else levels[0]


def to_crs(grid: PixelGrid, crs: str, rows: np.ndarray, cols: np.ndarray):
    """Pixel-centre coordinates of (rows, cols) of ``grid`` in ``crs``."""
    x, y = transformer(grid.crs, crs).transform(*grid.xy(rows, cols))
    return np.asarray(x), np.asarray(y)


def target_grid(bbox: tuple[float, float, float, float], crs: CRS, resolution: float
                ) -> PixelGrid:
    """The grid on multiples of ``resolution`` that covers the WGS84 ``bbox`` (densified
    edges) in ``crs``. With the stores' own CRS and pixel size it is their pixel lattice."""
    x0, y0, x1, y1 = transformer("EPSG:4326", crs.to_wkt()).transform_bounds(
        *bbox, densify_pts=21)
    r = resolution
    left, right = math.floor(x0 / r) * r, math.ceil(x1 / r) * r
    bottom, top = math.floor(y0 / r) * r, math.ceil(y1 / r) * r
    shape = (max(round((top - bottom) / r), 1), max(round((right - left) / r), 1))
    return PixelGrid(crs.to_wkt(), (r, 0.0, left, 0.0, -r, top), shape)


def _source_window(level: Level, epsg: int, grid: PixelGrid) -> tuple[slice, slice] | None:
    a, _, c, _, e, f = grid.transform
    h, w = grid.shape
    x0, y0, x1, y1 = transformer(grid.crs, f"EPSG:{epsg}").transform_bounds(
        c, f + e * h, c + a * w, f, densify_pts=21)
    la, _, lc, _, le, lf = level.transform
    r0, r1 = math.floor((y1 - lf) / le) - 2, math.ceil((y0 - lf) / le) + 2
    c0, c1 = math.floor((x0 - lc) / la) - 2, math.ceil((x1 - lc) / la) + 2
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, level.shape[0]), min(c1, level.shape[1])
    return (slice(r0, r1), slice(c0, c1)) if r0 < r1 and c0 < c1 else None


def _part(zs: ZoneStore, grid: PixelGrid, resolution_m: float) -> Part | None:
    """Read the scales of the window of ``zs`` under ``grid`` at the level matching the
    resolution and map every output pixel to its nearest window pixel (``nearest_index``:
    exact values, one index computed per output pixel instead of 128 bands warped). The
    embeddings are decoded later, by ``mosaic.fill``, over the window's data only."""
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
    idx = nearest_index(PixelGrid(f"EPSG:{zs.meta.epsg}", t, sc.shape), grid)
    _close_cracks(zs, level, (win[0].start, win[1].start), sc, idx, grid)
    have = np.isfinite(sc)  # decode the embeddings only where there is data
    rows, cols = np.flatnonzero(have.any(axis=1)), np.flatnonzero(have.any(axis=0))
    edge = zs.tile_edge(level)
    r0, c0 = win[0].start, win[1].start
    tiles = (range((r0 + int(rows[0])) // edge, (r0 + int(rows[-1])) // edge + 1),
             range((c0 + int(cols[0])) // edge, (c0 + int(cols[-1])) // edge + 1))
    return Part(zs.meta.zone, level, t, zs, emb_arr.shape[0], (r0, c0), tiles, edge, sc, idx)


def _lattice_window(level: Level, epsg: int, grid: PixelGrid) -> tuple[slice, slice] | None:
    """The window of ``level`` that ``grid`` is, pixel for pixel (same CRS, pixel size and
    lattice, wholly inside the level), or None."""
    a, _, c, _, e, f = grid.transform
    la, _, lc, _, le, lf = level.transform
    if abs(a - la) > 1e-9 * la or abs(e - le) > 1e-9 * la:
        return None
    c0, r0 = (c - lc) / la, (f - lf) / le
    if abs(c0 - round(c0)) > 1e-6 or abs(r0 - round(r0)) > 1e-6:
        return None
    r0, c0 = round(r0), round(c0)
    h, w = grid.shape
    if r0 < 0 or c0 < 0 or r0 + h > level.shape[0] or c0 + w > level.shape[1]:
        return None
    if CRS.from_wkt(grid.crs).to_epsg() != epsg:
        return None
    return slice(r0, r0 + h), slice(c0, c0 + w)


def _plain_slice(zs: ZoneStore, grid: PixelGrid, resolution_m: float):
    """(values, {store: level used}) when the output is a plain window of one store's level away from its
    zone's edge (so neither the seam nor the crack rule can apply): one slice read and one
    dequantising multiply into the output, no index warp, no gather. None otherwise."""
    level = choose_level(zs.meta.levels, resolution_m)
    win = _lattice_window(level, zs.meta.epsg, grid)
    if win is None or _edge_band(zs, level, (win[0].start, win[1].start), grid.shape).any():
        return None
    emb_arr, sc_arr = zs.arrays(level)
    need = grid.shape[0] * grid.shape[1] * (emb_arr.shape[0] + 12)
    if need > MAX_READ_BYTES:
        return None  # the general path says why
    sc = sc_arr[win]
    emb = emb_arr[(slice(None), *win)]
    out = np.empty(emb.shape, np.float32)
    np.multiply(emb, sc[None], out=out)  # = dequantise, without a float32 temporary
    used = {f"utm{zs.meta.zone:02d}": level.path} if np.isfinite(sc).any() else {}
    return out, used


def _edge_band(zs: ZoneStore, level: Level, origin: tuple[int, int], shape: tuple[int, int]
               ) -> np.ndarray:
    """(h, w) window pixels within a pixel of the store zone's edge meridians (a pre-filter
    for the crack rule: only these can be its pixels)."""
    h, w = shape
    a, _, c, _, e, f = level.transform
    ys = f + (origin[0] + np.arange(h) + 0.5) * e
    x0 = c + origin[1] * a
    band = np.zeros(shape, bool)
    to_lonlat = transformer(f"EPSG:{zs.meta.epsg}", "EPSG:4326")
    _, lat = to_lonlat.transform(np.full(2, x0 + w * a / 2), ys[[0, -1]])
    lats = np.linspace(max(min(lat) - 0.5, -89.9), min(max(lat) + 0.5, 89.9), max(256, 4 * h))
    for edge in zone_edges(zs.meta.zone):  # the meridian, sampled densely, at each row
        mx, my = transformer("EPSG:4326", f"EPSG:{zs.meta.epsg}").transform(
            np.full(lats.size, edge), lats)
        col = np.floor((np.interp(ys, np.asarray(my), np.asarray(mx)) - x0) / a).astype(int)
        for d in (-1, 0, 1):
            ok = (col + d >= 0) & (col + d < w)
            band[np.flatnonzero(ok), col[ok] + d] = True
    return band


def _close_cracks(zs: ZoneStore, level: Level, origin: tuple[int, int], sc: np.ndarray,
                  idx: np.ndarray, grid: PixelGrid) -> None:
    """Point output pixels at the zone-edge crack (``crack_pixels``) to the owner tile's
    edge pixel, in place. ``idx`` (H, W) holds flat indices into the window ``sc``."""
    band = _edge_band(zs, level, origin, sc.shape)
    if not band.any():
        return
    flat = idx.reshape(-1)
    where = np.where(flat >= 0, flat, 0)
    cand = np.flatnonzero((flat >= 0) & band.reshape(-1)[where]
                          & ~np.isfinite(sc.reshape(-1)[where]))
    if cand.size == 0:
        return
    w = sc.shape[1]
    r, c = np.divmod(flat[cand], w)
    lon, lat = to_crs(grid, "EPSG:4326", *np.divmod(cand, grid.shape[1]))
    r, c, ok = crack_pixels(zs, level, r + origin[0], c + origin[1], lon, lat)
    r, c = r - origin[0], c - origin[1]
    ok &= (r >= 0) & (r < sc.shape[0]) & (c >= 0) & (c < w)
    flat[cand[ok]] = r[ok] * w + c[ok]


def _mosaic(parts: list[Part], grid: PixelGrid, bands: int) -> np.ndarray:
    """Each pixel from the store of its own UTM zone (the zone of its centre's longitude,
    as ``sample`` routes a point); from another zone's store only where its own has no data
    there (no store for that zone, outside it, or NaN)."""
    owner = np.full(grid.shape, -1, np.int16)
    if not parts:
        return fill(parts, owner, bands)
    valid = [p.valid for p in parts]
    for k, v in enumerate(valid):
        owner[v & (owner < 0)] = k
    rr, cc = np.nonzero(np.sum(valid, axis=0) > 1)
    if rr.size:
        zones = zones_of(*to_crs(grid, "EPSG:4326", rr, cc))
        for k, (p, v) in enumerate(zip(parts, valid)):
            mine = (zones == p.zone) & v[rr, cc]
            owner[rr[mine], cc[mine]] = k
    return fill(parts, owner, bands)


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


def read_region(bbox: BBox, year: int, source: Source, crs: CRSLike | None = None,
                resolution: float | None = None, *,
                allow_incomplete: bool = False) -> xr.DataArray:
    """Dequantised embeddings over a WGS84 box, mosaicked from every zone it touches.

    The output grid is on multiples of ``resolution`` in ``crs``, so with the defaults it is
    the stores' own lattice (no resampling in the centre's zone). Each store is read at its
    coarsest level whose pixel is ≤ the resolution; values are nearest-neighbour, never
    blended; each pixel comes from the store of its own zone (another zone's only where its
    own has no data). Needs the ``read`` extra.

    Parameters
    ----------
    bbox : BBox
        ``(west, south, east, north)`` in degrees, west < east (split a box that crosses
        the antimeridian).
    year : int
        The year whose stores to read.
    source : Source
        As for ``sample``.
    crs : CRSLike, optional
        The output CRS; default the canonical UTM zone (EPSG:326ZZ) of the bbox centre.
    resolution : float, optional
        Pixel size in ``crs`` units; default the finest store pixel. Required for a
        geographic ``crs`` (degrees).
    allow_incomplete : bool, default False
        Read stores whose build did not complete.

    Returns
    -------
    xarray.DataArray
        ``(band, y, x)`` float32, NaN where there is no data, pixel-centre ``x``/``y`` and a
        ``spatial_ref`` coordinate with the CRS; ``attrs["geotessera:levels"]`` names the
        level read from each store.

    Raises
    ------
    ValueError
        A bad bbox, a geographic ``crs`` without ``resolution``, or a read of more than
        ``MAX_READ_BYTES`` from one store.
    StoreError
        As for ``sample``.
    ImportError
        Without the ``read`` extra.

    Examples
    --------
    >>> da = read_region((-0.1, 0.1, 0.1, 0.19), 2024, "demo/stores")
    >>> da.dims, da.attrs["geotessera:levels"]
    (('band', 'y', 'x'), {'utm30': 'L0', 'utm31': 'L0'})
    """
    from geotessera.read.api import _need_xarray

    _need_xarray()
    box = _check_bbox(bbox)
    reader = Reader(source, year, allow_incomplete=allow_incomplete)
    zones = range(utm_zone(box[0]), utm_zone(box[2]) + 1)
    opened = [zs for z in zones if (zs := reader.zone(z)) is not None]
    finest = min((zs.meta.levels[0].pixel_size for zs in opened), default=10.0)
    dst, res, res_m = _target(box, crs, resolution, finest)
    grid = target_grid(box, dst, res)
    if len(opened) == 1 and (fast := _plain_slice(opened[0], grid, res_m)) is not None:
        return _dataarray(fast[0], grid, year, fast[1])
    parts = [p for zs in opened if (p := _part(zs, grid, res_m)) is not None]
    out = _mosaic(parts, grid, parts[0].bands if parts else reader.bands())
    return _dataarray(out, grid, year, {f"utm{p.zone:02d}": p.level.path for p in parts})


def _dataarray(values: np.ndarray, grid: PixelGrid, year: int,
               levels: dict[str, str]) -> xr.DataArray:
    from geotessera.read.api import _need_xarray

    xa = _need_xarray()
    h, w = grid.shape
    x, _ = grid.xy(np.zeros(w), np.arange(w))
    _, y = grid.xy(np.arange(h), np.zeros(h))
    crs = CRS.from_wkt(grid.crs)
    wkt = crs.to_wkt()
    ref = {**crs.to_cf(), "crs_wkt": wkt, "spatial_ref": wkt,
           "GeoTransform": gdal_geotransform(grid.transform)}
    epsg = crs.to_epsg()
    da: xr.DataArray = xa.DataArray(
        values, dims=("band", "y", "x"), name="embeddings",
        coords={"band": np.arange(values.shape[0]), "y": ("y", y, {"axis": "Y"}),
                "x": ("x", x, {"axis": "X"}), "spatial_ref": ((), 0, ref)},
        attrs={"long_name": "dequantised embedding", "grid_mapping": "spatial_ref",
               "geotessera:year": year, **({"proj:code": f"EPSG:{epsg}"} if epsg else {}),
               "geotessera:levels": levels},
    )
    return da
