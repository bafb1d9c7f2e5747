"""The year's colour stretch, fitted on a seeded two-stage cluster sample of its stores.

A seeded choice of non-empty shards (found by listing the stored ``scales`` chunks), then per
shard a seeded choice of inner chunks holding valid pixels, then of valid pixels in each.
Seeds derive from (seed, year) and (seed, zone, row, col) and samples are pooled in (zone,
row, col) order, so the stretch does not depend on the worker count or task order.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geotessera.errors import SelectionError, StoreError
from geotessera.parallel import DEFAULT_RETRIES, ProgressFn
from geotessera.preview.overviews import read_bands, run_shard_tasks, shard_windows
from geotessera.preview.stretch import MODES, Stretch, fit_stretch
from geotessera.store.location import Location
from geotessera.store.zone import EMBEDDINGS, SCALES, open_level

if TYPE_CHECKING:
    from geotessera.preview.run import StoreInfo


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


# --- sampling ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleTask:
    """Sample shard (row, col) of L0 of ``store``; picklable."""

    store: Location
    zone: int
    row: int
    col: int
    bands: tuple[int, ...]
    seed: int
    chunks: int
    pixels_per_chunk: int
    level: int = 0


def sample_shard(task: SampleTask) -> np.ndarray:
    """(n, len(bands)) float32 dequantised values of seeded valid pixels of one shard."""
    level = open_level(task.store, write=False)
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
        block = read_bands(emb, task.bands, slice(r0, r0 + c), slice(c0, c0 + c))
        out.append((block[:, rr[sel], cc[sel]].astype(np.float32) * s[rr[sel], cc[sel]]).T)
    return np.concatenate(out)


def year_stretch(
    stores: list[StoreInfo], executor: Executor, *, mode: str = "bands",
    bands: tuple[int, ...] = (0, 1, 2), seed: int = 0, spec: SampleSpec = SampleSpec(),
    max_in_flight: int = 4, on_progress: ProgressFn | None = None,
    retries: int = DEFAULT_RETRIES,
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
    keys = sorted((s.zone, r, c, s.path.url, s.path) for s in stores for r, c in s.shards)
    rng = np.random.default_rng([seed, year])
    chosen = sorted(keys[i] for i in rng.choice(len(keys), min(spec.shards, len(keys)), False))
    per = spec.chunks_per_shard(len(chosen))
    tasks = [SampleTask(p, z, r, c, read, seed, per, spec.pixels_per_chunk)
             for z, r, c, _, p in chosen]
    got = run_shard_tasks(sample_shard, tasks, executor, max_in_flight=max_in_flight,
                          label=f"sample {year}", on_progress=on_progress, retries=retries)
    samples = [got[t] for t in tasks]  # task order = sorted (zone, row, col)
    pooled = np.concatenate(samples) if samples else np.empty((0, len(read)), np.float32)
    return fit_stretch(pooled, mode, read, seed=seed, shards=len(tasks))


