"""The preview pass: one colour stretch per year, the L0 ``rgba`` array, then overviews.

Per year, the stretch is fitted on a seeded sample drawn from every complete store of that
year in the output directory, so neighbouring zones share it and meet without seams. The
sample is a two-stage cluster sample: a seeded choice of non-empty shards (found by listing
the stored ``scales`` chunks), then per shard a seeded choice of inner chunks holding valid
pixels, then of valid pixels in each. Seeds derive from (seed, year) and (seed, zone, row,
col) and samples are pooled in (zone, row, col) order, so the stretch does not depend on the
worker count or the order in which stores or tasks are processed.

A store's preview is trusted only when ``geotessera:rgb_complete`` is true. The pass sets it
false (and consolidates) before touching anything, and true after the last level; a rerun
of an interrupted pass redoes that store. A store whose flag is true and whose recorded
stretch equals the new one is left as it is (unless ``force``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geotessera.errors import NoStoresError, StoreError
from geotessera.parallel import DEFAULT_RETRIES, ProgressFn
from geotessera.preview.overviews import (
    LevelReport,
    build_overviews,
    pyramid,
    read_bands,
    run_shard_tasks,
    shard_windows,
    strip_rows,
)
from geotessera.preview.sample import SampleSpec, year_stretch
from geotessera.preview.stretch import Stretch, colour_window
from geotessera.store import attrs as md
from geotessera.store.location import Location
from geotessera.store.meta import metadata_problems
from geotessera.store.naming import find_stores as find_named
from geotessera.store.naming import store_name
from geotessera.store.zone import (
    EMBEDDINGS,
    RGBA,
    SCALES,
    consolidate,
    create_level,
    create_rgba,
    drop_overviews,
    open_level,
    open_root,
    stored_chunks,
    update_root_attrs,
)
from geotessera.types import Level


# --- stores ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """A complete zone store and its non-empty L0 shards (sorted)."""

    path: Location
    zone: int
    year: int
    bands: int
    shards: tuple[tuple[int, int], ...]

    @property
    def name(self) -> str:
        return store_name(self.zone, self.year)


def find_stores(output_dir: Location | str | Path, years: Iterable[int] | None = None
                ) -> list[StoreInfo]:
    """Every ``utmZZ_YYYY.zarr`` under ``output_dir`` of ``years``, by (year, zone).

    Raises StoreError for a store whose build did not complete.
    """
    found = [_store_info(ref.location) for ref in find_named(output_dir, years)]
    return sorted(found, key=lambda s: (s.year, s.zone))


def _store_info(path: Location) -> StoreInfo:
    if problems := metadata_problems(path):  # damaged or disagreeing documents: exit 1
        raise StoreError(*problems[0])
    root = open_root(path)
    if root.attrs.get("geotessera:build_complete") is not True:
        raise StoreError(path, "build incomplete (geotessera:build_complete is not true); "
                               "rerun zarr-build")
    emb, scales = root["L0"][EMBEDDINGS], root["L0"][SCALES]
    return StoreInfo(path, int(root.attrs["geotessera:zone"]),
                     int(root.attrs["geotessera:year"]), int(emb.shape[0]),
                     nonempty_shards(path, scales, emb.shards[1], scales.chunks[0]))


def nonempty_shards(store: Location, scales, shard_px: int, chunk_px: int
                    ) -> tuple[tuple[int, int], ...]:
    """L0 shards holding at least one stored ``scales`` chunk. A chunk that is all NaN (the
    fill value) is never stored, so every shard with a valid pixel is listed; a listed shard
    may still prove empty when read."""
    per = shard_px // chunk_px
    chunks = np.argwhere(stored_chunks(store, scales))
    return tuple(sorted({(int(r) // per, int(c) // per) for r, c in chunks}))


def _is_current(path: Location, stretch: Stretch) -> bool:
    """True when the store's flag is true (in zarr.json and in the consolidated metadata)
    and it records exactly this stretch."""
    from geotessera.store.meta import open_root as open_consolidated

    plain, cons = open_root(path).attrs, open_consolidated(path).attrs
    return (plain.get("geotessera:rgb_complete") is True
            and cons.get("geotessera:rgb_complete") is True
            and plain.get("geotessera:stretch") == stretch.to_attrs())


# --- L0 colour ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColourTask:
    """Colour shard (row, col) of L0 of ``store`` with ``stretch``; picklable."""

    store: Location
    row: int
    col: int
    stretch: Stretch
    level: int = 0


def colour_shard(task: ColourTask) -> int:
    """Write the whole ``rgba`` footprint of one shard; return its valid pixel count."""
    level = open_level(task.store)
    emb, sc_arr, rgba = level[EMBEDDINGS], level[SCALES], level[RGBA]
    rows, cols = shard_windows(sc_arr.shape, emb.shards[1], task.row, task.col)
    scales = sc_arr[rows, cols]
    strip = strip_rows(emb.chunks[1], emb.shape[0] * scales.shape[1])
    out = colour_window(task.stretch, lambda a, b: read_bands(
        emb, task.stretch.bands, slice(rows.start + a, rows.start + b), cols), scales, strip)
    rgba[:, rows, cols] = out
    return int(np.isfinite(scales).sum())


def colour_level0(info: StoreInfo, stretch: Stretch, executor: Executor, *,
                  max_in_flight: int = 4, on_progress: ProgressFn | None = None,
                  retries: int = DEFAULT_RETRIES) -> LevelReport:
    """(Re)create ``L0/rgba`` and colour every non-empty shard of it."""
    t0 = time.perf_counter()
    geom = Level.of_attrs("L0", dict(open_level(info.path, write=False).attrs))
    create_rgba(info.path, geom)
    tasks = [ColourTask(info.path, r, c, stretch) for r, c in info.shards]
    done = run_shard_tasks(colour_shard, tasks, executor, max_in_flight=max_in_flight,
                           label=f"{info.name} L0", on_progress=on_progress, retries=retries)
    return LevelReport(0, geom.shape, len(tasks), sum(done.values()), time.perf_counter() - t0)


# --- the pass ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreReport:
    """One store's preview: skipped as up to date, or the levels written."""

    store: str
    zone: int
    year: int
    up_to_date: bool
    levels: tuple[LevelReport, ...] = ()
    seconds: float = 0.0


@dataclass
class PreviewReport:
    """Stretches by year, sampling seconds by year, and one report per selected store."""

    stretches: dict[int, Stretch] = field(default_factory=dict)
    sample_seconds: dict[int, float] = field(default_factory=dict)
    stores: list[StoreReport] = field(default_factory=list)


def preview_store(info: StoreInfo, stretch: Stretch, executor: Executor, *,
                  max_in_flight: int = 4, on_progress: ProgressFn | None = None,
                  retries: int = DEFAULT_RETRIES) -> StoreReport:
    """Rewrite one store's preview: flag false → rgba → overviews → layout, flag true."""
    t0 = time.perf_counter()
    _begin(info.path, stretch)
    l0 = colour_level0(info, stretch, executor, max_in_flight=max_in_flight,
                       on_progress=on_progress, retries=retries)
    geoms, levels = build_overviews(info.path, executor, info.shards,
                                    max_in_flight=max_in_flight, label=info.name,
                                    on_progress=on_progress, retries=retries)
    _finish(info.path, geoms)
    return StoreReport(str(info.path), info.zone, info.year, False, (l0, *levels),
                       time.perf_counter() - t0)


def begin_fused(path: Location, stretch: Stretch, levels: int = 1) -> None:
    """Prepare a new store whose build colours L0 and writes the first ``levels`` overview
    levels in its own tasks: an empty L0 ``rgba``, those levels empty (as many as the
    pyramid has), and the stretch recorded with ``geotessera:rgb_complete`` false."""
    l0 = open_level(path, write=False)
    geom = Level.of_attrs("L0", dict(l0.attrs))
    create_rgba(path, geom)
    update_root_attrs(path, rgb_complete=False, stretch=stretch.to_attrs())
    for level in pyramid(geom, l0[EMBEDDINGS].shards[1])[1:1 + levels]:
        create_level(path, level)


def finish_fused(path: Location, executor: Executor, shards: Iterable[tuple[int, int]],
                 *, start: int = 2, max_in_flight: int = 4, label: str = "",
                 on_progress: ProgressFn | None = None,
                 retries: int = DEFAULT_RETRIES) -> list[LevelReport]:
    """After the build's tasks made L0…L``start − 1``: the coarser levels from the
    non-empty ``shards`` of level ``start − 1``, then the layout and
    ``geotessera:rgb_complete`` true. Returns a report per level written here."""
    levels, reports = build_overviews(path, executor, shards, start=start,
                                      max_in_flight=max_in_flight, label=label,
                                      on_progress=on_progress, retries=retries)
    _finish(path, levels)
    return reports


def _begin(path: Location, stretch: Stretch) -> None:
    l0 = Level.of_attrs("L0", dict(open_level(path, write=False).attrs))
    update_root_attrs(path, {
        "multiscales": md.multiscales_attr([md.layout_entry(0, l0.transform, l0.shape)]),
    }, rgb_complete=False, stretch=stretch.to_attrs())
    drop_overviews(path)
    consolidate(path)


def _finish(path: Location, levels: list[Level]) -> None:
    layout = [md.layout_entry(lv.index, lv.transform, lv.shape) for lv in levels]
    update_root_attrs(path, {"multiscales": md.multiscales_attr(layout)},
                      overview_levels=len(levels) - 1, rgb_complete=True)
    consolidate(path)


def run_preview_pass(
    output_dir: Location | Path, executor: Executor, *, years: Iterable[int] | None = None,
    zones: Iterable[int] | None = None, mode: str = "bands", bands: tuple[int, ...] = (0, 1, 2),
    seed: int = 0, sample: SampleSpec = SampleSpec(), force: bool = False,
    max_in_flight: int = 4, retries: int = DEFAULT_RETRIES,
    on_progress: ProgressFn | None = None, stretches: dict[int, Stretch] | None = None,
) -> PreviewReport:
    """Preview every store of ``output_dir`` selected by ``years`` and ``zones``.

    Each year's stretch is fitted across *all* complete stores of that year (``zones`` only
    selects which stores are written), so a subset rerun keeps the year seamless; a year
    given in ``stretches`` uses that stretch instead. Raises
    NoStoresError when nothing is selected, StoreError for an incomplete build, and
    ShardWriteError for a shard that failed on each of its ``1 + retries`` attempts (that
    store's flag then stays false).
    """
    years, zones = (sorted(set(years)) if years else None), (set(zones) if zones else None)
    stores = find_stores(output_dir, years)
    chosen = [s for s in stores if zones is None or s.zone in zones]
    if not chosen:
        raise NoStoresError(f"{output_dir}: no complete zone stores for years "
                            f"{years or 'all'} and zones "
                            f"{sorted(zones) if zones else 'all'}")
    report = PreviewReport()
    for year in sorted({s.year for s in chosen}):
        t0 = time.perf_counter()
        stretch = (stretches or {}).get(year) or year_stretch(
            [s for s in stores if s.year == year], executor, mode=mode, bands=bands,
            seed=seed, spec=sample, retries=retries, max_in_flight=max_in_flight,
            on_progress=on_progress)
        report.stretches[year] = stretch
        report.sample_seconds[year] = time.perf_counter() - t0
        for info in (s for s in chosen if s.year == year):
            if not force and _is_current(info.path, stretch):
                report.stores.append(StoreReport(str(info.path), info.zone, year, True))
                continue
            report.stores.append(preview_store(info, stretch, executor,
                                               max_in_flight=max_in_flight, retries=retries,
                                               on_progress=on_progress))
    return report
