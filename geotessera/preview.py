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
import zarr

from . import metadata as md
from .errors import NoStoresError, SelectionError, StoreError
from .overviews import (
    RGBA,
    LevelGeometry,
    LevelReport,
    ProgressFn,
    build_overviews,
    create_rgba,
    drop_overviews,
    run_shard_tasks,
    shard_windows,
    strip_rows,
)
from .store import EMBEDDINGS, SCALES, consolidate, open_level, stored_chunks
from .stretch import MODES, Stretch, fit_stretch  # noqa: F401  (re-exported for the CLI)
from .zonestore import STORE_RE, store_paths  # noqa: F401  (STORE_RE re-exported)


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """How much to sample per year: at most ``shards`` shards and ``pixels_per_chunk`` pixels
    per inner chunk, with enough chunks per shard to aim at ``pixels`` in total."""

    shards: int = 128
    pixels: int = 65_536
    pixels_per_chunk: int = 256

    def __post_init__(self) -> None:
        for name in ("shards", "pixels", "pixels_per_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"SampleSpec.{name}={getattr(self, name)} must be >= 1")

    def chunks_per_shard(self, n_shards: int) -> int:
        """Chunks to read in each of ``n_shards`` sampled shards (≥ 1)."""
        return max(1, -(-self.pixels // (self.pixels_per_chunk * max(1, n_shards))))


# --- stores ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """A complete zone store and its non-empty L0 shards (sorted)."""

    path: str
    zone: int
    year: int
    bands: int
    shards: tuple[tuple[int, int], ...]

    @property
    def name(self) -> str:
        return Path(self.path).name


def find_stores(output_dir: Path, years: Iterable[int] | None = None) -> list[StoreInfo]:
    """Every ``utmZZ_YYYY.zarr`` under ``output_dir`` of ``years``, by (year, zone).

    Raises StoreError for a store whose build did not complete.
    """
    found = [_store_info(p) for p, _, _ in store_paths(output_dir, years)]
    return sorted(found, key=lambda s: (s.year, s.zone))


def _store_info(path: Path) -> StoreInfo:
    try:
        root = zarr.open_group(store=str(path), mode="r", use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
        raise StoreError(path, "not a zarr v3 group") from e
    if root.attrs.get("geotessera:build_complete") is not True:
        raise StoreError(path, "build incomplete (geotessera:build_complete is not true); "
                               "rerun zarr-build")
    emb, scales = root["L0"][EMBEDDINGS], root["L0"][SCALES]
    return StoreInfo(str(path), int(root.attrs["geotessera:zone"]),
                     int(root.attrs["geotessera:year"]), int(emb.shape[0]),
                     nonempty_shards(root, emb.shards[1], scales.chunks[0]))


def nonempty_shards(root: zarr.Group, shard_px: int, chunk_px: int) -> tuple[tuple[int, int], ...]:
    """L0 shards holding at least one stored ``scales`` chunk. A chunk that is all NaN (the
    fill value) is never stored, so every shard with a valid pixel is listed; a listed shard
    may still prove empty when read."""

    per = shard_px // chunk_px
    chunks = np.argwhere(stored_chunks(root["L0"][SCALES]))
    return tuple(sorted({(int(r) // per, int(c) // per) for r, c in chunks}))


def _is_current(path: str, stretch: Stretch) -> bool:
    """True when the store's flag is true (in zarr.json and in the consolidated metadata)
    and it records exactly this stretch."""
    plain = zarr.open_group(store=path, mode="r", use_consolidated=False).attrs
    cons = zarr.open_group(store=path, mode="r").attrs
    return (plain.get("geotessera:rgb_complete") is True
            and cons.get("geotessera:rgb_complete") is True
            and plain.get("geotessera:stretch") == stretch.to_attrs())


# --- sampling ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleTask:
    """Sample shard (row, col) of L0 of ``store``; picklable."""

    store: str
    zone: int
    row: int
    col: int
    bands: tuple[int, ...]
    seed: int
    chunks: int
    pixels_per_chunk: int
    level: int = 0


def _read_bands(emb: zarr.Array, bands: tuple[int, ...], rows: slice, cols: slice):
    """int8 block (len(bands), rows, cols). Inner chunks hold every band, so all bands are
    read (a plain slice, zarr's fastest path) and the chosen ones taken in memory."""
    block = emb[:, rows, cols]
    return block if bands == tuple(range(emb.shape[0])) else block[list(bands)]


def sample_shard(task: SampleTask) -> np.ndarray:
    """(n, len(bands)) float32 dequantised values of seeded valid pixels of one shard."""
    level = zarr.open_group(store=task.store, path="L0", mode="r", use_consolidated=False)
    emb, sc_arr = level[EMBEDDINGS], level[SCALES]
    shard, c = emb.shards[1], emb.chunks[1]
    rows, cols = shard_windows(sc_arr.shape, shard, task.row, task.col)
    scales = sc_arr[rows, cols]
    rng = np.random.default_rng([task.seed, task.zone, task.row, task.col])
    h, w = scales.shape
    per_chunk = np.isfinite(scales).reshape(h // c, c, w // c, c).any(axis=(1, 3))
    cand = np.argwhere(per_chunk)
    picks = np.sort(rng.choice(len(cand), min(task.chunks, len(cand)), False))
    out = [np.empty((0, len(task.bands)), np.float32)]
    for ci, cj in cand[picks]:
        s = scales[ci * c:(ci + 1) * c, cj * c:(cj + 1) * c]
        rr, cc = np.nonzero(np.isfinite(s))
        sel = np.sort(rng.choice(len(rr), min(task.pixels_per_chunk, len(rr)), False))
        r0, c0 = rows.start + ci * c, cols.start + cj * c
        block = _read_bands(emb, task.bands, slice(r0, r0 + c), slice(c0, c0 + c))
        out.append((block[:, rr[sel], cc[sel]].astype(np.float32) * s[rr[sel], cc[sel]]).T)
    return np.concatenate(out)


def year_stretch(
    stores: list[StoreInfo], executor: Executor, *, mode: str = "bands",
    bands: tuple[int, ...] = (0, 1, 2), seed: int = 0, spec: SampleSpec = SampleSpec(),
    max_in_flight: int = 4, on_progress: ProgressFn | None = None,
) -> Stretch:
    """Fit one stretch on a seeded sample across ``stores`` (all of one year)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} not in {MODES}")
    years, n_bands = {s.year for s in stores}, {s.bands for s in stores}
    if len(years) != 1 or len(n_bands) != 1:
        raise StoreError(stores[0].path, f"stretch needs one year and one band count, got "
                                         f"years {sorted(years)}, bands {sorted(n_bands)}")
    (year,), (nb,) = years, n_bands
    read = tuple(range(nb)) if mode == "pca" else tuple(bands)
    if len(read) < 1 or (mode == "bands" and len(read) != 3) or not all(0 <= b < nb for b in read):
        raise SelectionError(f"rgb bands {list(bands)}: need 3 of 0..{nb - 1}")
    keys = sorted((s.zone, r, c, s.path) for s in stores for r, c in s.shards)
    rng = np.random.default_rng([seed, year])
    chosen = sorted(keys[i] for i in rng.choice(len(keys), min(spec.shards, len(keys)), False))
    per = spec.chunks_per_shard(len(chosen))
    tasks = [SampleTask(p, z, r, c, read, seed, per, spec.pixels_per_chunk)
             for z, r, c, p in chosen]
    got = run_shard_tasks(sample_shard, tasks, executor, max_in_flight=max_in_flight,
                          label=f"sample {year}", on_progress=on_progress)
    samples = [got[t] for t in tasks]  # task order = sorted (zone, row, col)
    pooled = np.concatenate(samples) if samples else np.empty((0, len(read)), np.float32)
    return fit_stretch(pooled, mode, read, seed=seed, shards=len(tasks))


# --- L0 colour ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColourTask:
    """Colour shard (row, col) of L0 of ``store`` with ``stretch``; picklable."""

    store: str
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
    out = np.zeros((4, *scales.shape), np.uint8)
    for r0 in range(0, scales.shape[0], strip):
        s = scales[r0:r0 + strip]
        valid = np.isfinite(s)
        if valid.any():
            r = slice(rows.start + r0, rows.start + r0 + len(s))
            block = _read_bands(emb, task.stretch.bands, r, cols).astype(np.float32)
            out[:, r0:r0 + strip] = task.stretch.colour(block * np.where(valid, s, 0), valid)
    rgba[:, rows, cols] = out
    return int(np.isfinite(scales).sum())


def colour_level0(info: StoreInfo, stretch: Stretch, executor: Executor, *,
                  max_in_flight: int = 4, on_progress: ProgressFn | None = None) -> LevelReport:
    """(Re)create ``L0/rgba`` and colour every non-empty shard of it."""
    t0 = time.perf_counter()
    level = open_level(info.path)
    geom = LevelGeometry.of_level(0, dict(level.attrs))
    create_rgba(level, geom)
    tasks = [ColourTask(info.path, r, c, stretch) for r, c in info.shards]
    done = run_shard_tasks(colour_shard, tasks, executor, max_in_flight=max_in_flight,
                           label=f"{info.name} L0", on_progress=on_progress)
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
                  max_in_flight: int = 4, on_progress: ProgressFn | None = None) -> StoreReport:
    """Rewrite one store's preview: flag false → rgba → overviews → layout, flag true."""
    t0 = time.perf_counter()
    _begin(info.path, stretch)
    l0 = colour_level0(info, stretch, executor, max_in_flight=max_in_flight,
                       on_progress=on_progress)
    geoms, levels = build_overviews(info.path, executor, info.shards,
                                    max_in_flight=max_in_flight, label=info.name,
                                    on_progress=on_progress)
    _finish(info.path, geoms)
    return StoreReport(info.path, info.zone, info.year, False, (l0, *levels),
                       time.perf_counter() - t0)


def _begin(path: str, stretch: Stretch) -> None:
    root = zarr.open_group(store=path, mode="r+", use_consolidated=False)
    l0 = LevelGeometry.of_level(0, dict(root["L0"].attrs))
    root.attrs.update({
        "geotessera:rgb_complete": False,
        "geotessera:stretch": stretch.to_attrs(),
        "multiscales": md.multiscales_attr([md.layout_entry(0, l0.transform, l0.shape)]),
    })
    drop_overviews(root)
    consolidate(Path(path))


def _finish(path: str, geoms: list[LevelGeometry]) -> None:
    root = zarr.open_group(store=path, mode="r+", use_consolidated=False)
    layout = [md.layout_entry(g.level, g.transform, g.shape) for g in geoms]
    root.attrs.update({"multiscales": md.multiscales_attr(layout),
                       "geotessera:overview_levels": len(geoms) - 1,
                       "geotessera:rgb_complete": True})
    consolidate(Path(path))


def run_preview_pass(
    output_dir: Path, executor: Executor, *, years: Iterable[int] | None = None,
    zones: Iterable[int] | None = None, mode: str = "bands", bands: tuple[int, ...] = (0, 1, 2),
    seed: int = 0, sample: SampleSpec = SampleSpec(), force: bool = False,
    max_in_flight: int = 4, on_progress: ProgressFn | None = None,
) -> PreviewReport:
    """Preview every store of ``output_dir`` selected by ``years`` and ``zones``.

    Each year's stretch is fitted across *all* complete stores of that year (``zones`` only
    selects which stores are written), so a subset rerun keeps the year seamless. Raises
    NoStoresError when nothing is selected, StoreError for an incomplete build, and
    ShardWriteError for a failed shard (that store's flag then stays false).
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
        stretch = year_stretch([s for s in stores if s.year == year], executor, mode=mode,
                               bands=bands, seed=seed, spec=sample,
                               max_in_flight=max_in_flight, on_progress=on_progress)
        report.stretches[year] = stretch
        report.sample_seconds[year] = time.perf_counter() - t0
        for info in (s for s in chosen if s.year == year):
            if not force and _is_current(info.path, stretch):
                report.stores.append(StoreReport(info.path, info.zone, year, True))
                continue
            report.stores.append(preview_store(info, stretch, executor,
                                               max_in_flight=max_in_flight,
                                               on_progress=on_progress))
    return report
