"""A synthetic GeoTessera archive in the real on-disk layout, for demos, tests and benchmarks.

Every value is a smooth function of world position (the pixel centre's lon/lat), so tiles
agree where their rasters overlap and mosaics are seamless. Embeddings are low rank: a few
sinusoidal basis fields mixed into ``bands`` channels, quantised per pixel as the real archive
does (int8 plus a float32 scale = max |value| / 127). Landmasks mark water where a separate,
year-independent coastline field falls below a threshold. Output is deterministic: the same
spec gives byte-identical files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.crs import CRS

from geotessera.parallel import Progress, ProgressFn
from geotessera.tiles import tile_grid, tile_paths
from geotessera.types import N_BANDS, TileGrid, TileKey

#: Number of smooth basis fields mixed into the bands.
N_BASIS = 8
#: Target share of the demo area under water (the threshold is this quantile).
WATER_FRACTION = 0.22
#: Share of pixels per tile-year whose scale is NaN, and again +inf.
NONFINITE_FRACTION = 0.001
EARTH_RADIUS_KM = 6371.0
#: Width of the land/sea step in the embeddings, in water-field units (a few hundred metres).
COAST_SOFTNESS = 0.02
_ROWS_PER_BLOCK = 16
_TAG_FIELDS, _TAG_YEAR, _TAG_WATER, _TAG_MISSING, _TAG_TILE = range(1, 6)
_KEY_OFFSET = 100_000  # keeps seed entropy non-negative


@dataclass(frozen=True, slots=True)
class DemoSpec:
    """What ``write_demo_archive`` generates. Bounds in degrees (rounded to 0.01°); only
    whole 0.1° cells are used. Invalid values raise ValueError at construction.

    Examples
    --------
    >>> DemoSpec(pixel_size=160.0, bands=8).years
    (2024, 2025)
    """

    lon_min: float = -0.3
    lon_max: float = 0.3
    lat_min: float = -0.2
    lat_max: float = 0.2
    years: tuple[int, ...] = (2024, 2025)
    pixel_size: float = 40.0
    bands: int = 128
    seed: int = 0
    missing_fraction: float = 0.1  # share of tiles left out of every year after the first

    def __post_init__(self) -> None:
        for lo, hi, limit in (("lon_min", "lon_max", 180), ("lat_min", "lat_max", 90)):
            a, b = getattr(self, lo), getattr(self, hi)
            if not -limit <= a < b <= limit:
                raise ValueError(f"need -{limit} <= {lo} < {hi} <= {limit}, got {a}, {b}")
        if not (math.isfinite(self.pixel_size) and self.pixel_size > 0):
            raise ValueError(f"pixel_size must be > 0, got {self.pixel_size}")
        if not 1 <= self.bands <= N_BANDS:
            raise ValueError(f"bands must be in 1..{N_BANDS}, got {self.bands}")
        if not 0 <= self.missing_fraction < 1:
            raise ValueError(f"missing_fraction must be in [0, 1), got {self.missing_fraction}")
        if not self.years or len(set(self.years)) != len(self.years):
            raise ValueError(f"years must be non-empty and distinct, got {self.years!r}")
        bad = [y for y in self.years if not (isinstance(y, int | np.integer) and 1000 <= y <= 9999)]
        if bad:
            raise ValueError(f"years must be 4-digit integers, got {bad!r}")
        if not demo_tiles(self):
            raise ValueError(f"area holds no whole 0.1° cell: {self!r}")


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What ``write_demo_archive`` wrote."""

    base: str
    tiles: int  # distinct tiles
    files: int  # tile-year pairs
    years: tuple[int, ...]
    zones: tuple[int, ...]  # sorted UTM zones
    bytes: int  # total bytes written (embeddings, scales, landmasks)


def _cell_range(lo: float, hi: float) -> range:
    """Cells k with lo <= k/10 and (k+1)/10 <= hi, in integer hundredths."""
    lo_h, hi_h = round(lo * 100), round(hi * 100)
    return range(-(-lo_h // 10), hi_h // 10)


def demo_tiles(spec: DemoSpec) -> list[TileKey]:
    """Every tile whose whole 0.1° cell lies inside the spec's area, sorted (lat_i, lon_i)."""
    return sorted(
        TileKey(lat_i=cy * 10 + 5, lon_i=cx * 10 + 5)
        for cy in _cell_range(spec.lat_min, spec.lat_max)
        for cx in _cell_range(spec.lon_min, spec.lon_max)
    )


def year_tiles(spec: DemoSpec, year: int) -> list[TileKey]:
    """Tiles present in ``year``: all of them in the first year (``spec.years[0]``); later years
    lose a seeded ``missing_fraction`` share (at least one when the fraction is > 0 and there
    are >= 4 tiles, never all)."""
    tiles = demo_tiles(spec)
    if year == spec.years[0] or spec.missing_fraction == 0:
        return tiles
    n = round(spec.missing_fraction * len(tiles))
    n = min(max(n, 1 if len(tiles) >= 4 else 0), len(tiles) - 1)
    rng = np.random.default_rng([spec.seed, _TAG_MISSING, year])
    drop = set(rng.choice(len(tiles), size=n, replace=False).tolist())
    return [t for i, t in enumerate(tiles) if i not in drop]


# --- world fields ------------------------------------------------------------------------------


def _waves(rng: np.random.Generator, wavelengths_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Random 3-D wave vectors (rad/km) of the given wavelengths, and random phases."""
    dirs = rng.normal(size=(len(wavelengths_km), 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return dirs * (2 * np.pi / wavelengths_km)[:, None], rng.uniform(0, 2 * np.pi, len(dirs))


def _sinusoid(xyz: tuple[np.ndarray, ...], k: np.ndarray, phase: float) -> np.ndarray:
    return np.sin(xyz[0] * k[0] + xyz[1] * k[1] + xyz[2] * k[2] + phase)


def _xyz(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points on the sphere in km, so fields are seamless everywhere (antimeridian included)."""
    lon_r, lat_r = np.radians(lon), np.radians(lat)
    c = EARTH_RADIUS_KM * np.cos(lat_r)
    return c * np.cos(lon_r), c * np.sin(lon_r), EARTH_RADIUS_KM * np.sin(lat_r)


@lru_cache(maxsize=16)
def _water_waves(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, _TAG_WATER])
    wavelengths = np.array([50.0, 35.0, 22.0, 14.0, 10.0])
    k, phase = _waves(rng, wavelengths)
    return k, phase, wavelengths / wavelengths.sum()  # long waves dominate: seas, not specks


def _water_field(seed: int, xyz: tuple[np.ndarray, ...]) -> np.ndarray:
    """The coastline field (year independent); water is where it is below the threshold."""
    k, phase, amp = _water_waves(seed)
    return sum(a * _sinusoid(xyz, kk, p) for kk, p, a in zip(k, phase, amp))


@lru_cache(maxsize=16)
def _water_threshold(spec: DemoSpec) -> float:
    """The ``WATER_FRACTION`` quantile of the water field over the tiles' cells.

    So the coastline is fixed per spec area: a tile generated under a different area may get a
    slightly different coast (and land/sea step in its embeddings).
    """
    tiles = demo_tiles(spec)
    lons = np.linspace((tiles[0].lon_i - 5) / 100, (tiles[-1].lon_i + 5) / 100, 256)
    lats = np.linspace((tiles[0].lat_i - 5) / 100, (tiles[-1].lat_i + 5) / 100, 256)
    field = _water_field(spec.seed, _xyz(*np.meshgrid(lons, lats)))
    return float(np.quantile(field, WATER_FRACTION))


@lru_cache(maxsize=16)
def _embedding_model(seed: int, year: int, bands: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wave vectors, phases and mixing matrix (N_BASIS, bands); a year nudges phases and mix."""
    rng = np.random.default_rng([seed, _TAG_FIELDS])
    wavelengths = np.geomspace(2.0, 40.0, N_BASIS - 1)
    k, phase = _waves(rng, wavelengths)
    amp = np.append((wavelengths / wavelengths[-1]) ** 0.75, 1.5)  # long waves and coast dominate
    mix = rng.normal(size=(N_BASIS, bands)) * amp[:, None]
    nudge = np.random.default_rng([seed, _TAG_YEAR, year])
    phase = phase + nudge.normal(0.0, 0.3, phase.shape)
    mix = mix + 0.15 * nudge.normal(size=mix.shape)
    return k, phase, mix.astype(np.float32)


def _basis(spec: DemoSpec, year: int, xyz: tuple[np.ndarray, ...]) -> np.ndarray:
    """(H, W, N_BASIS) float32: sinusoids, one product of two, and a smooth land/sea step."""
    k, phase, _ = _embedding_model(spec.seed, year, spec.bands)
    out = np.empty((*xyz[0].shape, N_BASIS), np.float32)
    for j in range(N_BASIS - 1):
        out[..., j] = _sinusoid(xyz, k[j], phase[j])
    out[..., N_BASIS - 3] *= out[..., N_BASIS - 2]  # product of the two longest waves
    coast = _water_field(spec.seed, xyz) - _water_threshold(spec)
    out[..., N_BASIS - 1] = np.tanh(coast / COAST_SOFTNESS)
    return out


# --- one tile ----------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _to_lonlat(epsg: int) -> Transformer:
    return Transformer.from_crs(epsg, 4326, always_xy=True)


def _pixel_lonlat(grid: TileGrid) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat (float64, H×W) of every pixel centre, projected from the native UTM grid."""
    p = grid.pixel_size
    x = grid.left + (np.arange(grid.width) + 0.5) * p
    y = grid.top - (np.arange(grid.height) + 0.5) * p
    return _to_lonlat(grid.epsg).transform(*np.meshgrid(x, y))


def _quantise(
    basis: np.ndarray, mix: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """int8 (H, W, bands) and float32 scales (H, W) of ``basis @ mix``, plus ±1 int8 noise.

    Works in row blocks so no (H, W, bands) float temporary exists.
    """
    h, w, _ = basis.shape
    q = np.empty((h, w, mix.shape[1]), np.int8)
    scales = np.empty((h, w), np.float32)
    for r0 in range(0, h, _ROWS_PER_BLOCK):
        v = basis[r0 : r0 + _ROWS_PER_BLOCK] @ mix
        s = np.maximum(v.max(axis=-1), -v.min(axis=-1)) / np.float32(127)
        inv = np.divide(np.float32(1), s, out=np.zeros_like(s), where=s > 0)
        v *= inv[..., None]
        np.rint(v, out=v)
        v += rng.integers(-1, 2, size=v.shape, dtype=np.int8)
        np.clip(v, -127, 127, out=v)
        q[r0 : r0 + _ROWS_PER_BLOCK] = v
        scales[r0 : r0 + _ROWS_PER_BLOCK] = s
    u = rng.random((h, w), dtype=np.float32)
    scales[u < NONFINITE_FRACTION] = np.nan
    scales[(u >= NONFINITE_FRACTION) & (u < 2 * NONFINITE_FRACTION)] = np.inf
    return q, scales


def _save_npy(path: Path, arr: np.ndarray) -> int:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    os.replace(tmp, path)
    return path.stat().st_size


def _save_landmask(path: Path, grid: TileGrid, land: np.ndarray) -> int:
    tmp = path.with_name(path.name + ".part.tiff")
    profile = dict(
        driver="GTiff", dtype="uint8", count=1, width=grid.width, height=grid.height,
        crs=CRS.from_epsg(grid.epsg), transform=rasterio.Affine(*grid.transform),
        compress="deflate",
    )  # fmt: skip
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(land, 1)
    os.replace(tmp, path)
    return path.stat().st_size


def write_tile(base: Path, key: TileKey, year: int, spec: DemoSpec) -> int:
    """Write one tile-year's embeddings and scales (and the landmask if absent); return bytes.

    Shapes follow ``tile_grid(key, spec.pixel_size)``; output depends only on (spec, key, year).
    """
    grid = tile_grid(key, spec.pixel_size)
    paths = tile_paths(Path(base), year, key.name)
    xyz = _xyz(*_pixel_lonlat(grid))
    rng = np.random.default_rng(
        [spec.seed, _TAG_TILE, year, key.lon_i + _KEY_OFFSET, key.lat_i + _KEY_OFFSET]
    )
    mix = _embedding_model(spec.seed, year, spec.bands)[2]
    q, scales = _quantise(_basis(spec, year, xyz), mix, rng)
    paths.embeddings.parent.mkdir(parents=True, exist_ok=True)
    written = _save_npy(paths.embeddings, q) + _save_npy(paths.scales, scales)
    if not paths.landmask.exists():
        land = (_water_field(spec.seed, xyz) >= _water_threshold(spec)).astype(np.uint8)
        paths.landmask.parent.mkdir(parents=True, exist_ok=True)
        written += _save_landmask(paths.landmask, grid, land)
    return written


def write_demo_archive(
    base: Path, spec: DemoSpec, on_progress: ProgressFn | None = None
) -> DemoSummary:
    """Write every tile-year of ``spec`` under ``base``, reporting ``Progress("tiles", …)``.

    Existing files are overwritten, except landmasks (year independent), which are kept.
    Values are drawn from ``spec.seed``.

    Parameters
    ----------
    base : Path
        The archive root to write (created as needed).
    spec : DemoSpec
        Extent, years, pixel size, bands, seed and the share of tiles left out.
    on_progress : callable, optional
        Called with ``Progress`` events.

    Returns
    -------
    DemoSummary
        Tiles, tile-years (files), zones, years and bytes written.
    """
    plan = [(year, key) for year in spec.years for key in year_tiles(spec, year)]
    total = 0
    for done, (year, key) in enumerate(plan, 1):
        total += write_tile(base, key, year, spec)
        if on_progress is not None:
            on_progress(Progress("tiles", done, len(plan)))
    keys = {key for _, key in plan}
    return DemoSummary(
        base=str(base),
        tiles=len(keys),
        files=len(plan),
        years=tuple(spec.years),
        zones=tuple(sorted({tile_grid(k, spec.pixel_size).zone for k in keys})),
        bytes=total,
    )
