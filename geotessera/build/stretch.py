"""The year's colour stretch, sampled from its tiles before the build, so that the shard
tasks can colour L0 while it is in memory.

A seeded two-stage cluster sample like ``preview.sample`` (which samples built stores): a
seeded choice of at most ``spec.shards`` of the year's usable tiles (every zone of the year,
whatever ``--zones`` selects, so a rebuild of one zone gets the same stretch), then per tile
a seeded choice of 32×32 windows holding valid pixels (finite scale, on land), then of valid
pixels in each. Seeds derive from (seed, year) and (seed, zone, tile name), and samples are
pooled in (zone, name) order, so the stretch does not depend on the worker count or task
order (the per-tile part, run by the pool's workers, is ``build/tilesample.py``). Pixels are
drawn before the overlap rule: a pixel in a tile's overlap margin may be
drawn though the store takes it from a neighbour (the sample only sets a percentile stretch).
"""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from geotessera.archive import registry
from geotessera.archive.registry import TileRecord
from geotessera.build.assemble import PieceSource
from geotessera.build.tilesample import TileSampleTask, sample_tile
from geotessera.errors import ArchiveError, SelectionError, TaskFailed
from geotessera.parallel import DEFAULT_RETRIES, ProgressFn, run_tasks
from geotessera.preview.sample import SampleSpec
from geotessera.preview.stretch import MODES, Stretch, fit_stretch
from geotessera.store.location import Location
from geotessera.tiles import tile_keys
from geotessera.types import Window


def _piece(root: Location, rec: TileRecord) -> PieceSource:
    keys = tile_keys(rec.year, rec.name)
    whole = Window(0, rec.height, 0, rec.width)
    return PieceSource(rec.key, whole, whole, root, *keys, (rec.height, rec.width, rec.bands))


def sampled_tiles(registry_path: Path, year: int, count: int, seed: int) -> list[TileRecord]:
    """A seeded choice of ``count`` usable tiles of ``year`` (all zones), by (zone, name).
    Reads one partition at a time: the year's keys first, then the chosen rows."""
    parts = [z for y, z in registry.partitions(registry_path) if y == year]
    keys = sorted((r.zone, r.name) for z in parts
                  for r in registry.load(registry_path, [year], [z]) if r.usable)
    rng = np.random.default_rng([seed, year])
    chosen = {keys[i] for i in rng.choice(len(keys), min(count, len(keys)), False)}
    rows = [r for z in sorted({z for z, _ in chosen})
            for r in registry.load(registry_path, [year], [z])
            if r.usable and (r.zone, r.name) in chosen]
    return sorted(rows, key=lambda r: (r.zone, r.name))


def tile_stretch(
    base: Location, registry_path: Path, year: int, executor: Executor, *,
    mode: str = "bands", bands: tuple[int, ...] = (0, 1, 2), seed: int = 0,
    spec: SampleSpec = SampleSpec(), max_in_flight: int = 4,
    on_progress: ProgressFn | None = None, retries: int = DEFAULT_RETRIES,
) -> Stretch:
    """Fit the stretch of ``year`` on a seeded sample of its tiles below ``base``.

    Raises SelectionError for bands outside the tiles' band count, ArchiveError naming the
    tile file that cannot be read (after ``retries`` further attempts)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} not in {MODES}")
    recs = sampled_tiles(registry_path, year, spec.shards, seed)
    nb = {r.bands for r in recs}
    read = tuple(range(max(nb, default=0))) if mode == "pca" else tuple(bands)
    if len(nb) > 1 or (mode == "bands" and len(read) != 3) or (
            recs and not all(0 <= b < recs[0].bands for b in read)):
        raise SelectionError(f"rgb bands {list(bands)}: need 3 of 0..{max(nb, default=0) - 1}"
                             f" (tiles of {year} have {sorted(nb)} bands)")
    per = spec.chunks_per_shard(len(recs))
    tasks = [TileSampleTask(_piece(base, r), r.zone, read, seed, per, spec.pixels_per_chunk)
             for r in recs]
    try:
        got = dict(run_tasks(sample_tile, tasks, executor, label=f"sample {year} tiles",
                             max_in_flight=max_in_flight, retries=retries,
                             on_progress=on_progress))
    except TaskFailed as e:
        if isinstance(e.cause, ArchiveError):
            raise e.cause from e
        raise ArchiveError(base.child(e.task.piece.embeddings),
                           f"cannot sample: {e.cause}") from e.cause
    samples = [got[t] for t in tasks]
    pooled = np.concatenate(samples) if samples else np.empty((0, len(read)), np.float32)
    return fit_stretch(pooled, mode, read, seed=seed, shards=len(tasks), source="tiles")
