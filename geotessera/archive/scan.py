"""Scan an archive into registry records, reading headers only.

For every tile and year: the ``.npy`` headers give dtype and shape (and, with the file size,
truncation), the landmask GeoTIFF header gives CRS, transform and size, and the expected UTM
grid computed from the tile's centre is cross-checked against both. Problems are recorded on
the row, never dropped. A rescan re-reads only tiles whose file sizes or mtimes changed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from geotessera.parallel import ProgressFn, run_tasks
from geotessera.archive.registry import TileRecord
from geotessera.errors import ArchiveError
from geotessera.tiles import (
    EMBEDDINGS_DIR,
    YEAR_RE,
    parse_tile_name,
    tile_epsg,
    tile_grid,
    tile_paths,
    utm_zone,
)
from geotessera.types import N_BANDS, TileGrid, TileKey

#: Largest allowed distance (metres) between the landmask origin and the computed grid.
ORIGIN_TOLERANCE_M = 0.5


@dataclass(frozen=True, slots=True)
class InspectTask:
    """Everything needed to inspect one tile-year's files; picklable."""

    base: str
    year: int
    name: str
    key: TileKey
    expected_bands: int


@dataclass(frozen=True, slots=True)
class ScanResult:
    records: tuple[TileRecord, ...]
    ignored: tuple[str, ...]
    reread: int
    reused: int

    @property
    def problems(self) -> list[tuple[str, str]]:
        return [r.issue for r in self.records if r.issue is not None]


def list_archive(base: Path, years: Iterable[int] | None = None):
    """(year, name, key) for every tile directory, plus names that did not parse.

    Raises ArchiveError when ``base`` has no embeddings directory.
    """
    root = Path(base) / EMBEDDINGS_DIR
    if not root.is_dir():
        raise ArchiveError(root, "not found: is this a GeoTessera archive base directory?")
    wanted = set(years) if years else None
    found, ignored = [], []
    for year_dir in sorted(root.iterdir()):
        if not (year_dir.is_dir() and YEAR_RE.match(year_dir.name)):
            ignored.append(str(year_dir.relative_to(base)))
            continue
        year = int(year_dir.name)
        if wanted is not None and year not in wanted:
            continue
        for entry in sorted(os.scandir(year_dir), key=lambda e: e.name):
            key = parse_tile_name(entry.name) if entry.is_dir() else None
            if key is None:
                ignored.append(str(Path(entry.path).relative_to(base)))
            else:
                found.append((year, entry.name, key))
    return found, ignored


def _stat(path: Path) -> tuple[int | None, int | None]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, None
    return st.st_size, st.st_mtime_ns


def base_record(task: InspectTask) -> TileRecord:
    """The row with names, paths, sizes and mtimes filled in; no file contents read."""
    base = Path(task.base)
    paths = tile_paths(base, task.year, task.name)
    rel = {k: str(getattr(paths, k).relative_to(base)) for k in ("embeddings", "scales", "landmask")}
    (es, em), (ss, sm), (ls, lm) = (_stat(getattr(paths, k)) for k in rel)
    return TileRecord(
        year=task.year, name=task.name, lon=task.key.lon, lat=task.key.lat,
        lon_i=task.key.lon_i, lat_i=task.key.lat_i,
        zone=utm_zone(task.key.lon), epsg=tile_epsg(task.key),
        pixel_size=None, transform=None, height=None, width=None, bands=None, scales_ndim=None,
        embeddings_path=rel["embeddings"], scales_path=rel["scales"],
        landmask_path=rel["landmask"], embeddings_size=es, scales_size=ss, landmask_size=ls,
        embeddings_mtime=em, scales_mtime=sm, landmask_mtime=lm,
    )


class _Problem(Exception):
    def __init__(self, path: str, message: str) -> None:
        self.path, self.message = path, message


def inspect_tile(task: InspectTask) -> TileRecord:
    """Read the three headers of a tile-year and return its registry row (never raises
    for bad files: the problem is recorded on the row)."""
    rec = base_record(task)
    try:
        return _inspect(task, rec)
    except _Problem as p:
        return replace(rec, problem=p.message, problem_path=p.path)


def _inspect(task: InspectTask, rec: TileRecord) -> TileRecord:
    base = Path(task.base)
    if not task.key.is_centred:
        raise _Problem(rec.embeddings_path, "tile centre is not at .x5 degrees")
    for rel, size in ((rec.embeddings_path, rec.embeddings_size),
                      (rec.scales_path, rec.scales_size), (rec.landmask_path, rec.landmask_size)):
        if size is None:
            raise _Problem(rel, "file missing")
    emb_shape = _npy_header(base, rec.embeddings_path, rec.embeddings_size, np.int8)
    sc_shape = _npy_header(base, rec.scales_path, rec.scales_size, np.float32)
    if len(emb_shape) != 3:
        raise _Problem(rec.embeddings_path, f"expected (H, W, bands) embeddings, found shape {emb_shape}")
    h, w, bands = emb_shape
    if bands != task.expected_bands:
        raise _Problem(rec.embeddings_path, f"{bands} bands, expected {task.expected_bands}")
    # The landmask grid decides which file is wrong, so a header that lies about its shape
    # (same byte count) is blamed on its own file, not on the one it disagrees with.
    grid = _landmask_grid(base, rec.landmask_path, task.key)
    if (grid.height, grid.width) != (h, w):
        raise _Problem(rec.embeddings_path,
                       f"embeddings are {h}x{w} but the tile grid is {grid.height}x{grid.width}")
    if sc_shape not in ((h, w), (h, w, bands)):
        raise _Problem(rec.scales_path, f"scales shape {sc_shape} does not match embeddings {emb_shape}")
    return replace(rec, pixel_size=grid.pixel_size, transform=grid.transform, height=h,
                   width=w, bands=bands, scales_ndim=len(sc_shape))


def _npy_header(base: Path, rel: str, size: int, dtype: type) -> tuple[int, ...]:
    try:
        with open(base / rel, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, fortran, found = read(f)
            header_len = f.tell()
    except (OSError, ValueError) as e:
        raise _Problem(rel, f"unreadable .npy header: {e}") from e
    if found != np.dtype(dtype):
        raise _Problem(rel, f"dtype {found}, expected {np.dtype(dtype)}")
    if fortran:
        raise _Problem(rel, "Fortran-ordered array; expected C order")
    expected = header_len + math.prod(shape) * found.itemsize
    if size < expected:
        raise _Problem(rel, f"truncated: {size} bytes, header implies {expected}")
    if size > expected:
        raise _Problem(rel, f"{size - expected} unexpected trailing bytes after the array")
    return tuple(int(s) for s in shape)


def _landmask_grid(base: Path, rel: str, key: TileKey) -> TileGrid:
    """The expected grid, after checking the landmask header agrees with it."""
    try:
        with rasterio.open(base / rel) as src:
            crs_epsg, t, h, w, count = src.crs.to_epsg() if src.crs else None, src.transform, \
                src.height, src.width, src.count
    except RasterioError as e:
        raise _Problem(rel, f"unreadable landmask: {e}") from e
    if count != 1:
        raise _Problem(rel, f"landmask has {count} bands, expected 1")
    if t.b != 0 or t.d != 0 or t.a <= 0 or not math.isclose(t.a, -t.e):
        raise _Problem(rel, f"landmask transform is not north-up with square pixels: {tuple(t)[:6]}")
    grid = tile_grid(key, t.a)
    if crs_epsg != grid.epsg:
        raise _Problem(rel, f"landmask CRS EPSG:{crs_epsg}, expected EPSG:{grid.epsg}")
    dx, dy = abs(t.c - grid.left), abs(t.f - grid.top)
    if max(dx, dy) > ORIGIN_TOLERANCE_M or (h, w) != (grid.height, grid.width):
        raise _Problem(rel, f"landmask grid {h}x{w} at ({t.c:.2f}, {t.f:.2f}) does not match "
                            f"expected {grid.height}x{grid.width} at ({grid.left:.2f}, {grid.top:.2f})")
    return grid


def scan_archive(
    base: Path,
    executor: Executor,
    *,
    years: Iterable[int] | None = None,
    previous: Iterable[TileRecord] = (),
    expected_bands: int = N_BANDS,
    on_progress: ProgressFn | None = None,
) -> ScanResult:
    """Registry rows for every tile-year under ``base`` (optionally only ``years``).

    Rows of ``previous`` whose three file sizes and mtimes are unchanged are reused without
    opening the files; rows of years not scanned are carried over unchanged.
    """
    base = Path(base).resolve()
    found, ignored = list_archive(base, years)
    scanned_years = {y for y, _, _ in found} | (set(years) if years else set())
    old = {(r.year, r.name): r for r in previous}
    tasks, reused = [], []
    for year, name, key in found:
        task = InspectTask(str(base), year, name, key, expected_bands)
        prev = old.get((year, name))
        if _reusable(prev, task):
            reused.append(replace(prev, duplicate_of=None))
        else:
            tasks.append(task)
    records = list(reused)
    for _, rec in run_tasks(inspect_tile, tasks, executor, label="scan", done=len(reused),
                            max_in_flight=64, on_progress=on_progress):
        records.append(rec)
    kept = [r for r in old.values() if years and r.year not in scanned_years]
    records = sorted(mark_duplicates(records) + kept,
                     key=lambda r: (r.year, r.lat_i, r.lon_i, r.name))
    return ScanResult(tuple(records), tuple(ignored), reread=len(tasks), reused=len(reused))


def _reusable(prev: TileRecord | None, task: InspectTask) -> bool:
    """A clean previous row whose files are unchanged; rows with problems are re-read."""
    return (
        prev is not None
        and prev.problem is None
        and prev.bands == task.expected_bands
        and prev.stat_key() == base_record(task).stat_key()
    )


def mark_duplicates(records: list[TileRecord]) -> list[TileRecord]:
    """Flag every spelling of a (year, tile) that appears more than once."""
    by_key: dict[tuple[int, TileKey], list[TileRecord]] = {}
    for r in records:
        by_key.setdefault((r.year, r.key), []).append(r)
    out = []
    for group in by_key.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        names = sorted(r.name for r in group)
        for r in group:
            others = ", ".join(n for n in names if n != r.name)
            out.append(replace(r, duplicate_of=others))
    return out


def update_registry(
    base: Path,
    registry_path: Path,
    executor: Executor,
    *,
    years: Iterable[int] | None = None,
    expected_bands: int = N_BANDS,
    on_progress: ProgressFn | None = None,
) -> ScanResult:
    """Scan incrementally against the registry at ``registry_path`` and save the result
    there atomically. An unreadable existing registry is an error, never overwritten."""
    from geotessera.archive import registry

    registry_path = Path(registry_path)
    previous = registry.load(registry_path) if registry_path.exists() else []
    result = scan_archive(base, executor, years=years, previous=previous,
                          expected_bands=expected_bands, on_progress=on_progress)
    registry.save(list(result.records), registry_path)
    return result
