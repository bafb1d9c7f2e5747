"""Scan an archive into registry records, reading headers only.

For every tile and year: the ``.npy`` headers give dtype and shape (and, with the file size,
truncation), the landmask GeoTIFF header gives CRS, transform and size, and the expected UTM
grid computed from the tile's centre is cross-checked against both. Problems are recorded on
the row, never dropped. A rescan re-reads only tiles whose file sizes or mtimes changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rasterio.errors import RasterioError

from geotessera.parallel import ProgressFn, run_tasks
from geotessera.archive.listing import list_tiles, stat_file
from geotessera.archive.registry import TileRecord
from geotessera.errors import ArchiveError
from geotessera.archive.remote import (
    NPY_HEAD_BYTES,
    head_stat,
    npy_header_length,
    open_raster,
    parse_npy_header,
    read_npy_header,
)
from geotessera.store.location import Location
from geotessera.tiles import tile_epsg, tile_grid, tile_keys, utm_zone
from geotessera.types import N_BANDS, TileGrid, TileKey

#: Largest allowed distance (metres) between the landmask origin and the computed grid.
ORIGIN_TOLERANCE_M = 0.5


@dataclass(frozen=True, slots=True)
class InspectTask:
    """Everything needed to inspect one tile-year's files; picklable. ``base`` is the archive
    root (a path or URL); ``stats`` are the three files' (size, mtime ns) when the listing
    already gave them (None: stat or HEAD them)."""

    base: str
    year: int
    name: str
    key: TileKey
    expected_bands: int
    stats: tuple[tuple[int | None, int | None], ...] | None = None
    options: tuple[tuple[str, str], ...] = ()

    @property
    def root(self) -> Location:
        return Location.parse(self.base, dict(self.options) or None)


@dataclass(frozen=True, slots=True)
class ScanResult:
    records: tuple[TileRecord, ...]
    ignored: tuple[str, ...]
    reread: int
    reused: int

    @property
    def problems(self) -> list[tuple[str, str]]:
        return [r.issue for r in self.records if r.issue is not None]


def _file_stats(task: InspectTask) -> tuple[tuple[int | None, int | None], ...]:
    """(size, mtime ns) of the three files: ``os.stat`` on disk, one HEAD each remotely."""
    if task.stats is not None:
        return task.stats
    root = task.root
    if root.is_local:
        return tuple(stat_file(root.path / k) for k in tile_keys(task.year, task.name))
    return tuple(head_stat(root, k) for k in tile_keys(task.year, task.name))


def base_record(task: InspectTask) -> TileRecord:
    """The row with names, paths, sizes and mtimes filled in; no file contents read. The
    paths are derived from the tile name (``tiles.tile_keys``), never from elsewhere."""
    emb, sc, lm = tile_keys(task.year, task.name)
    (es, em), (ss, sm), (ls, lm_t) = _file_stats(task)
    return TileRecord(
        year=task.year, name=task.name, lon=task.key.lon, lat=task.key.lat,
        lon_i=task.key.lon_i, lat_i=task.key.lat_i,
        zone=utm_zone(task.key.lon), epsg=tile_epsg(task.key),
        pixel_size=None, transform=None, height=None, width=None, bands=None, scales_ndim=None,
        embeddings_path=emb, scales_path=sc, landmask_path=lm,
        embeddings_size=es, scales_size=ss, landmask_size=ls,
        embeddings_mtime=em, scales_mtime=sm, landmask_mtime=lm_t,
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
    root = task.root
    if not task.key.is_centred:
        raise _Problem(rec.embeddings_path, "tile centre is not at .x5 degrees")
    for rel, size in ((rec.embeddings_path, rec.embeddings_size),
                      (rec.scales_path, rec.scales_size), (rec.landmask_path, rec.landmask_size)):
        if size is None:
            raise _Problem(rel, "file missing")
    emb_shape = _npy_header(root, rec.embeddings_path, rec.embeddings_size, np.int8)
    sc_shape = _npy_header(root, rec.scales_path, rec.scales_size, np.float32)
    if len(emb_shape) != 3:
        raise _Problem(rec.embeddings_path, f"expected (H, W, bands) embeddings, found shape {emb_shape}")
    h, w, bands = emb_shape
    if bands != task.expected_bands:
        raise _Problem(rec.embeddings_path, f"{bands} bands, expected {task.expected_bands}")
    # The landmask grid decides which file is wrong, so a header that lies about its shape
    # (same byte count) is blamed on its own file, not on the one it disagrees with.
    grid = _landmask_grid(root, rec.landmask_path, task.key)
    if (grid.height, grid.width) != (h, w):
        raise _Problem(rec.embeddings_path,
                       f"embeddings are {h}x{w} but the tile grid is {grid.height}x{grid.width}")
    if sc_shape not in ((h, w), (h, w, bands)):
        raise _Problem(rec.scales_path, f"scales shape {sc_shape} does not match embeddings {emb_shape}")
    return replace(rec, pixel_size=grid.pixel_size, transform=grid.transform, height=h,
                   width=w, bands=bands, scales_ndim=len(sc_shape))


def _npy_header(root: Location, rel: str, size: int, dtype: type) -> tuple[int, ...]:
    """Header of a tile ``.npy``: the first bytes of the file (one range request remotely)."""
    try:
        if root.is_local:
            with open(root.path / rel, "rb") as f:
                head = f.read(NPY_HEAD_BYTES)
                head += f.read(max(0, npy_header_length(head) - len(head)))
            header = parse_npy_header(head)
        else:
            header = read_npy_header(root, rel, size)
    except (OSError, ValueError) as e:
        raise _Problem(rel, f"unreadable .npy header: {e}") from e
    except ArchiveError as e:
        raise _Problem(rel, e.problem) from e
    found = header.dtype
    if found != np.dtype(dtype):
        raise _Problem(rel, f"dtype {found}, expected {np.dtype(dtype)}")
    if header.fortran:
        raise _Problem(rel, "Fortran-ordered array; expected C order")
    expected = header.offset + header.data_bytes
    if size < expected:
        raise _Problem(rel, f"truncated: {size} bytes, header implies {expected}")
    if size > expected:
        raise _Problem(rel, f"{size - expected} unexpected trailing bytes after the array")
    return header.shape


def _landmask_grid(root: Location, rel: str, key: TileKey) -> TileGrid:
    """The expected grid, after checking the landmask header agrees with it."""
    try:
        with open_raster(root.child(rel)) as src:
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
    base: Path | str | Location,
    executor: Executor,
    *,
    years: Iterable[int] | None = None,
    zones: Iterable[int] | None = None,
    previous: Iterable[TileRecord] = (),
    expected_bands: int = N_BANDS,
    on_progress: ProgressFn | None = None,
) -> ScanResult:
    """Registry rows for every tile-year under ``base`` (optionally only ``years``).

    ``base`` is a path or a ``file://``, ``s3://`` or ``http(s)://`` URL. An http(s) archive
    cannot be listed: its tiles are the (year, name) pairs of ``previous`` (a registry made
    elsewhere), each checked with HEAD requests. Rows of ``previous`` whose three file sizes
    and mtimes are unchanged are reused without reading the files; rows of years not scanned
    are carried over unchanged.

    Parameters
    ----------
    base : Path, str or Location
        The archive root (``global_0.1_degree_representation/`` is under it).
    executor : concurrent.futures.Executor
        Runs the header reads (threads suit local disks and object stores).
    years, zones : iterable of int, optional
        Only these years and UTM zones (default: all).
    previous : iterable of TileRecord
        The registry's rows so far, reused where the files are unchanged.
    expected_bands : int, default 128
        Embedding dimensions; another count is a row problem.
    on_progress : callable, optional
        Called with ``Progress`` events.

    Returns
    -------
    ScanResult
        ``records`` (one row per tile-year, problems recorded per row), ``ignored`` names,
        and how many rows were read or reused.

    Raises
    ------
    ArchiveError
        The archive cannot be listed (or, over http(s), ``previous`` is empty).
    """
    root = _root(base)
    previous = list(previous)
    found, ignored, stats = list_tiles(root, years, previous)
    if zones is not None:
        wanted = set(zones)
        found = [t for t in found if utm_zone(t[2].lon) in wanted]
    scanned_years = {y for y, _, _ in found} | (set(years) if years else set())
    old = {(r.year, r.name): r for r in previous}
    url, opts = (str(root.path), ()) if root.is_local else (root.url, root.options)
    tasks = [InspectTask(url, year, name, key, expected_bands,
                         stats.get((year, name)) if stats is not None else None, opts)
             for year, name, key in found]
    if stats is None:  # http(s): one HEAD per file, many in flight
        tasks = [t for _, t in run_tasks(_with_stats, tasks, executor, label="stat",
                                         max_in_flight=64, on_progress=on_progress)]
    todo, reused = [], []
    for task in tasks:
        prev = old.get((task.year, task.name))
        if _reusable(prev, task):
            reused.append(replace(prev, duplicate_of=None))
        else:
            todo.append(task)
    records = list(reused)
    for _, rec in run_tasks(inspect_tile, todo, executor, label="scan", done=len(reused),
                            max_in_flight=64, on_progress=on_progress):
        records.append(rec)
    kept = [r for r in old.values() if years and r.year not in scanned_years
            and (zones is None or r.zone in set(zones))]
    records = sorted(mark_duplicates(records) + kept,
                     key=lambda r: (r.year, r.lat_i, r.lon_i, r.name))
    return ScanResult(tuple(records), tuple(ignored), reread=len(todo), reused=len(reused))


def _root(base: Path | str | Location) -> Location:
    root = Location.parse(base)
    return Location.parse(root.path.resolve()) if root.is_local else root


def _with_stats(task: InspectTask) -> InspectTask:
    return replace(task, stats=_file_stats(task))


def _reusable(prev: TileRecord | None, task: InspectTask) -> bool:
    """A clean previous row whose files are unchanged; rows with problems are re-read."""
    return (
        prev is not None
        and prev.problem is None
        and prev.bands == task.expected_bands
        and prev.stat_key() == base_record(task).stat_key()
        and (prev.embeddings_path, prev.scales_path, prev.landmask_path)
        == tile_keys(task.year, task.name)
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
    base: Path | str | Location,
    registry_path: Path,
    executor: Executor,
    *,
    years: Iterable[int] | None = None,
    zones: Iterable[int] | None = None,
    expected_bands: int = N_BANDS,
    on_progress: ProgressFn | None = None,
) -> ScanResult:
    """Scan incrementally against the registry at ``registry_path`` and save the result
    there. Only the partitions of ``years`` and ``zones`` (default: all) are read and
    rewritten; the rest of the registry is not opened. A single-file registry is migrated
    first. An unreadable existing registry is an error, never overwritten.

    Parameters
    ----------
    base, executor, years, zones, expected_bands, on_progress
        As for ``scan_archive``.
    registry_path : Path
        The registry (a Parquet dataset directory); created when missing.

    Returns
    -------
    ScanResult
        As ``scan_archive`` returns it, after the registry is saved.

    Raises
    ------
    ArchiveError
        The archive cannot be listed, or the existing registry cannot be read.
    """
    from geotessera.archive import registry

    registry_path = Path(registry_path)
    if registry_path.is_file():
        registry.migrate(registry_path)
    years = sorted(set(years)) if years else None
    zones = sorted(set(zones)) if zones is not None else None
    previous = registry.load(registry_path, years, zones) if registry_path.exists() else []
    result = scan_archive(base, executor, years=years, zones=zones, previous=previous,
                          expected_bands=expected_bands, on_progress=on_progress)

    def scope(year: int, zone: int) -> bool:
        return (years is None or year in years) and (zones is None or zone in zones)

    registry.save(list(result.records), registry_path, scope)
    return result
