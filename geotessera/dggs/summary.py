"""The H3 summary of a year's zone stores, computed shard by shard on an injected executor.

For each H3 cell at resolution R that holds data: the area-weighted mean dequantised vector,
the valid area (m²), the cell's own area (m², WGS84) and the pixel count. Rules:

- **Counted once.** A pixel of the store of zone Z counts only if its centre's longitude lies
  in zone Z (a location belongs to the store of the zone of its longitude), and it belongs to
  the H3 cell that holds its centre. Neighbouring stores overlap a little beyond their zone's
  edge meridian; those copies are not counted.
- **Weight.** Each valid pixel (finite scale) weighs its true ground area,
  ``pixel_size² / areal_scale`` at its centre (``cells.true_areas``; computed by
  ``cells.lattice_areas`` from a lattice of pyproj factors, within 1e-9 relative).
- **Exact merge.** Each task returns float64 sums for one shard (a small picklable
  ``CellSums``); ``cells.merge_sums`` adds them per cell independently of the order tasks
  finish, so thread pools, process pools and clusters give bit-identical results.
- **Memory.** A task reads its shard of the summarised level in strips of ``STRIP_ROWS``
  rows: it holds one strip's int8 embeddings and scales and a few float64 values per valid
  pixel of it, plus the shard's per-cell sums. The caller holds the per-shard sums (about
  8 × (bands + 3) bytes per cell and shard it touches) until the final merge.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..errors import StoreError
from ..parallel import ProgressFn, run_tasks
from ..read import Reader, ZoneStore
from .cells import (
    CellSums,
    accumulate,
    cell_areas_m2,
    cells_of,
    default_level,
    lattice_areas,
    mean_edge_m,
    merge_sums,
    need_h3,
    pixel_centres,
    to_lonlat,
    zone_of_lon,
)

if TYPE_CHECKING:
    from geotessera.types import Level

COUNTING_RULE = ("a pixel counts in the store of the UTM zone of its centre's longitude, in "
                 "the H3 cell that holds its centre")
WEIGHTING = ("true ground area: pixel_size**2 / pyproj areal_scale at the pixel centre "
             "(interpolated from a lattice at most 320 m apart, relative error < 1e-9)")
#: Rows of a shard read and summed at a time (memory: a fraction of a shard per task).
STRIP_ROWS = 256
VALID_FRACTION = ("valid_area_m2 / cell_area_m2; cell_area_m2 is the WGS84 area of the "
                  "cell's boundary polygon")


@dataclass(frozen=True, slots=True)
class SourceStore:
    """One store of the source and the level summarised from it."""

    href: str
    zone: int
    epsg: int
    bands: int
    level: Level
    level_index: int
    shard: tuple[int, int]  # (rows, cols) of one task's window

    def windows(self) -> list[tuple[int, int, int, int]]:
        """(row0, row1, col0, col1) of every shard of the level, row-major."""
        (h, w), (sh, sw) = self.level.shape, self.shard
        return [(r, min(r + sh, h), c, min(c + sw, w))
                for r in range(0, h, sh) for c in range(0, w, sw)]

    def to_attrs(self) -> dict[str, Any]:
        return {"href": self.href, "zone": self.zone, "level": self.level.path,
                "pixel_size": self.level.pixel_size, "shards": len(self.windows())}


@dataclass(frozen=True, slots=True)
class ShardTask:
    """One shard of one store's level, summarised at H3 resolution ``res``."""

    store: SourceStore
    window: tuple[int, int, int, int]
    res: int


@dataclass(frozen=True, eq=False)
class H3Summary:
    """The summary: one row per cell, cells sorted by id."""

    res: int
    year: int
    cells: np.ndarray  # (n,) uint64
    mean: np.ndarray  # (n, bands) float32
    valid_area: np.ndarray  # (n,) float64, m²
    cell_area: np.ndarray  # (n,) float64, m²
    pixel_count: np.ndarray  # (n,) int64
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def valid_fraction(self) -> np.ndarray:
        """Share of each cell's area that holds valid data (may slightly exceed 1 in a fully
        covered cell: pixel centres, not pixel outlines, decide membership)."""
        return self.valid_area / self.cell_area

    @property
    def bands(self) -> int:
        return self.mean.shape[1]


# --- one task --------------------------------------------------------------------------------------


def shard_sums(task: ShardTask) -> CellSums:
    """Per-cell sums of the counted valid pixels of one shard (see the module rules), read
    in strips of ``STRIP_ROWS`` rows so a task holds a fraction of the shard at a time."""
    st = task.store
    zs = ZoneStore.open(st.href, allow_incomplete=True)  # completeness was checked by the plan
    emb_arr, sc_arr = zs.arrays(st.level)
    r0, r1, c0, c1 = task.window
    parts = [_strip_sums(st, emb_arr, sc_arr, (r, min(r + STRIP_ROWS, r1), c0, c1), task.res)
             for r in range(r0, r1, STRIP_ROWS)]
    return merge_sums(parts, st.bands)


def _strip_sums(st: SourceStore, emb_arr, sc_arr, window: tuple[int, int, int, int],
                res: int) -> CellSums:
    r0, r1, c0, c1 = window
    sc = np.asarray(sc_arr[r0:r1, c0:c1], np.float32)
    rows, cols = np.nonzero(np.isfinite(sc))
    x, y = pixel_centres(st.level.transform, rows + r0, cols + c0)
    lon, lat = to_lonlat(st.epsg, x, y)
    own = zone_of_lon(lon) == st.zone
    if not own.any():
        return CellSums.empty(st.bands)
    rows, cols, lon, lat = rows[own], cols[own], lon[own], lat[own]
    weights = lattice_areas(st.epsg, st.level.transform, window, rows + r0, cols + c0)
    cells = cells_of(lat, lon, res)
    emb = np.asarray(emb_arr[:, r0:r1, c0:c1])
    flat = rows * (c1 - c0) + cols
    scale = sc.ravel()[flat]

    def band(b: int) -> np.ndarray:  # the one dequantisation rule: int8 × float32 scale
        return emb[b].ravel()[flat].astype(np.float32) * scale

    return accumulate(cells, weights, st.bands, band)


# --- the plan --------------------------------------------------------------------------------------


def check_res(res: int) -> int:
    if not (isinstance(res, int | np.integer) and 0 <= res <= 15):
        raise ValueError(f"H3 resolution must be an integer in 0..15, got {res!r}")
    return int(res)


def plan_stores(source: Any, year: int, res: int, level: int | None = None, *,
                allow_incomplete: bool = False) -> list[SourceStore]:
    """The year's stores of ``source`` (found and opened by ``read.Reader``) and the level
    index summarised in all of them: ``level``, or by default the coarsest level whose pixel
    edge is at most a tenth of H3's mean edge at ``res`` in every store (``default_level``).
    Raises StoreError when there is no store, a store lacks the level or bands differ."""
    need_h3()
    res = check_res(res)
    reader = Reader(source, year, allow_incomplete=allow_incomplete)
    zones = sorted(reader.stores.hrefs) if reader.stores.listed else range(1, 61)
    opened = [zs for z in zones if (zs := reader.zone(z)) is not None]
    if not opened:
        raise StoreError(source, f"no zone store for year {year}")
    if level is None:
        level = min(default_level([lv.pixel_size for lv in zs.meta.levels], res)
                    for zs in opened)
    plans = [_store_plan(zs, level) for zs in opened]
    if len({p.bands for p in plans}) > 1:
        raise StoreError(source, "stores disagree on the band count: "
                         + ", ".join(f"{p.href} {p.bands}" for p in plans))
    return plans


def _store_plan(zs: ZoneStore, index: int) -> SourceStore:
    levels = zs.meta.levels
    if not 0 <= index < len(levels):
        raise StoreError(zs.meta.href, f"has no level {index} (levels 0..{len(levels) - 1}; "
                                       "overview levels come from the preview pass)")
    emb = zs.arrays(levels[index])[0]
    unit = emb.shards or emb.chunks
    return SourceStore(zs.meta.href, zs.meta.zone, zs.meta.epsg, int(emb.shape[0]),
                       levels[index], index, (int(unit[-2]), int(unit[-1])))


# --- the summary -----------------------------------------------------------------------------------


def summarise(source: Any, year: int, res: int, executor: Executor, *, level: int | None = None,
              allow_incomplete: bool = False, max_in_flight: int = 4,
              on_progress: ProgressFn | None = None) -> H3Summary:
    """The H3 summary at resolution ``res`` of the ``year`` stores of ``source`` (a stores
    directory, a store, a STAC catalog or a stores-directory URL), one task per shard of the
    summarised level on ``executor``. Errors propagate (``parallel.TaskFailed``)."""
    stores = plan_stores(source, year, res, level, allow_incomplete=allow_incomplete)
    tasks = [ShardTask(st, w, res) for st in stores for w in st.windows()]
    parts = []
    for _, part in run_tasks(shard_sums, tasks, executor, label=f"h3 {year} r{res}",
                             max_in_flight=max_in_flight, on_progress=on_progress):
        if part.cells.size:
            parts.append(part)
    total = merge_sums(parts, stores[0].bands)
    return H3Summary(res, year, total.cells, total.mean(), total.area,
                     cell_areas_m2(total.cells), total.count,
                     _provenance(source, year, res, stores, total))


def _provenance(source: Any, year: int, res: int, stores: list[SourceStore],
                total: CellSums) -> dict[str, Any]:
    paths = sorted({st.level.path for st in stores})
    return {
        "product": "h3_summary", "year": year, "h3_resolution": res,
        "h3_mean_edge_m": mean_edge_m(res), "source": str(source),
        "level": paths[0] if len(paths) == 1 else paths, "level_index": stores[0].level_index,
        "stores": [st.to_attrs() for st in stores], "cells": int(total.cells.size),
        "pixels": int(total.count.sum()), "version": __version__,
        "counting_rule": COUNTING_RULE, "weighting": WEIGHTING,
        "valid_fraction": VALID_FRACTION,
    }
