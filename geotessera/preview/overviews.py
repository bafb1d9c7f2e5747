"""Overview levels L1…Ln of a zone store, built shard by shard from the level below.

Level k has pixels 2^k times the size of L0's, the same origin, ``ceil``-halved shapes and the
same arrays (``embeddings``, ``scales``, ``rgba``) with the same chunk and shard shapes in
pixels, so one level-k shard covers 2^k times the ground of an L0 shard. The last level is the
first whose both sides fit in one shard. One task computes one output shard from the ≤ 2×2
input shards below it, strip by strip, so no task holds more than one output shard and a
strip of its children. Reductions (docs/format.md):

* embeddings/scales: the mean of the valid children's dequantised vectors, requantised per
  pixel with ``scale = max|mean| / 127``, so ``|q·scale − mean| ≤ scale / 2`` in every band;
  a pixel without valid children gets a NaN scale and zero embeddings.
* rgba: the alpha-weighted mean of the children's colour, rounded half up; alpha is 255 when
  any child has alpha > 0, else 0 (colour 0). So alpha == isfinite(scales) at every level.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from geotessera.errors import ShardWriteError, TaskFailed
from geotessera.parallel import DEFAULT_RETRIES, ProgressFn, run_tasks
from geotessera.store.location import Location
from geotessera.store.zone import (
    EMBEDDINGS,
    RGBA,
    SCALES,
    create_level,
    open_level,
    write_shard_arrays,
)
from geotessera.types import Level

log = logging.getLogger(__name__)

#: Working set of one strip of a task; strips are whole inner-chunk rows, at least one.
STRIP_BYTES = 32 * 2**20
#: float64 children of one strip of a 2×2 reduction (its temporaries are about 3× that);
#: small enough to stay in cache: 2 MiB ran a 1024-px shard's reduction in 0.5-0.7 CPU-s
#: against 0.9-1.0 s for 8 MiB (3 runs each), with a quarter of the temporaries.
REDUCE_STRIP_BYTES = 2 * 2**20


def pyramid(l0: Level, shard_px: int) -> list[Level]:
    """L0…Ln, where Ln is the first level whose both sides are ≤ ``shard_px`` (n may be 0)."""
    levels = [l0]
    while max(levels[-1].shape) > shard_px:
        levels.append(levels[-1].coarser())
    return levels


def strip_rows(chunk_px: int, float_values_per_row: int) -> int:
    """Rows per strip: a multiple of ``chunk_px`` (≥ 1 chunk) whose float64 working set
    stays within ``STRIP_BYTES`` when possible, so peak memory does not depend on zone size."""
    fit = STRIP_BYTES // max(1, 8 * float_values_per_row)
    return max(chunk_px, fit // chunk_px * chunk_px)


def memory_strip(bands: int, width: int) -> int:
    """Output rows per strip of a 2×2 reduction of data already in memory: about
    ``REDUCE_STRIP_BYTES`` of float64 children (a 1024-px shard of 128 bands: 1 row)."""
    return max(1, REDUCE_STRIP_BYTES // (8 * 4 * bands * width))


def shard_windows(shape: tuple[int, int], shard_px: int, row: int, col: int):
    """(rows, cols) slices of shard (row, col) of an array of ``shape``, clipped to it."""
    s = shard_px
    return (slice(row * s, min((row + 1) * s, shape[0])),
            slice(col * s, min((col + 1) * s, shape[1])))


# --- reductions (pure) -------------------------------------------------------------------------


def _pad_to_even(a: np.ndarray, fill: Any) -> np.ndarray:
    """Pad the last two axes to even lengths with ``fill`` (an edge level of odd size)."""
    ph, pw = a.shape[-2] % 2, a.shape[-1] % 2
    if not (ph or pw):
        return a
    pad = [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(a, pad, constant_values=fill)


def _sum2x2(a: np.ndarray) -> np.ndarray:
    """Sum of each 2×2 block over the last two axes (even lengths)."""
    rows = a[..., 0::2, :] + a[..., 1::2, :]
    return rows[..., 0::2] + rows[..., 1::2]


def reduce_embeddings(emb: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2×2 mean of the valid children's dequantised vectors, requantised per pixel.

    ``emb`` (band, h, w) int8, ``scales`` (h, w) float32 → (band, ⌈h/2⌉, ⌈w/2⌉) int8 and
    float32 scales. Guarantee: ``|q·scale − mean| ≤ scale/2`` per band, with ``mean`` the
    exact mean of the valid children (the sums are float64, so rounding is ~1e-16 relative,
    and the same bits on every CPU: ``preview/mean2x2.py``); NaN scale and zero vector where
    no child is valid; scale +0 for a zero mean.
    """
    from geotessera.preview.mean2x2 import mean2x2

    return mean2x2(_pad_to_even(emb, 0), _pad_to_even(scales, np.nan))


def reduce_rgba(rgba: np.ndarray) -> np.ndarray:
    """Alpha-weighted 2×2 mean of (4, h, w) uint8 → (4, ⌈h/2⌉, ⌈w/2⌉), exact integers.

    Colour = round-half-up(Σ c·α / Σ α) over the children; alpha = 255 if any child has
    α > 0; colour and alpha 0 where no child does.
    """
    rgba = _pad_to_even(rgba, 0)
    alpha = rgba[3].astype(np.int32)  # sums stay below 4 * 255 * 255
    den = _sum2x2(alpha)
    num = _sum2x2(rgba[:3].astype(np.int32) * alpha)
    out = np.zeros((4, *den.shape), np.uint8)
    has = den > 0
    out[:3] = np.where(has, (2 * num + den) // np.maximum(2 * den, 1), 0)
    out[3] = np.where(has, 255, 0)
    return out


# --- one overview shard ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OverviewTask:
    """Compute shard (row, col) of level ``level`` ≥ 1 of ``store`` from level − 1."""

    store: Location
    level: int
    row: int
    col: int


def overview_shard(task: OverviewTask) -> int:
    """Write one whole output shard of every array; return its valid pixel count."""
    src = open_level(task.store, f"L{task.level - 1}", write=False)
    dst = open_level(task.store, f"L{task.level}", write=False)
    s_emb, s_sc, s_rgba = src[EMBEDDINGS], src[SCALES], src[RGBA]
    d_emb = dst[EMBEDDINGS]
    rows, cols = shard_windows(d_emb.shape[1:], d_emb.shards[1], task.row, task.col)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    # scales and rgba of the whole 2x2 window at once (their chunks span many strips)
    r0, c0 = 2 * rows.start, 2 * cols.start
    r1, c1 = min(2 * rows.stop, s_sc.shape[0]), min(2 * cols.stop, s_sc.shape[1])
    out = reduce_window(lambda a, b: s_emb[:, r0 + a:r0 + b, c0:c1], s_sc[r0:r1, c0:c1],
                        s_rgba[:, r0:r1, c0:c1], d_emb.shape[0], (h, w),
                        strip_rows(d_emb.chunks[1], 4 * d_emb.shape[0] * w))
    write_shard_arrays(task.store, task.row, task.col, embeddings=out.embeddings,
                       scales=out.scales, rgba=out.rgba, level=f"L{task.level}")
    return int(np.isfinite(out.scales).sum())


@dataclass(frozen=True, slots=True)
class Reduced:
    """One window of the next level: int8 (bands, h, w), float32 scales, uint8 rgba. An
    accumulator may leave ``embeddings`` None (kept elsewhere) and paste without them."""

    embeddings: np.ndarray | None
    scales: np.ndarray
    rgba: np.ndarray

    @classmethod
    def filled(cls, bands: int | None, h: int, w: int, *, pixel_major: bool = False
               ) -> Reduced:
        """An (h, w) window at the fill values: zero embeddings (none when ``bands`` is
        None; ``pixel_major``: a (bands, h, w) view of (h, w, bands) memory), NaN scales,
        zero rgba."""
        return cls(None if bands is None else _zeros(bands, h, w, pixel_major),
                   np.full((h, w), np.nan, np.float32), np.zeros((4, h, w), np.uint8))

    def paste(self, part: Reduced, row0: int, col0: int, *, embeddings: bool = True) -> None:
        """Copy ``part`` into these arrays with its first pixel at (row0, col0)."""
        h, w = part.scales.shape
        rows, cols = slice(row0, row0 + h), slice(col0, col0 + w)
        self.scales[rows, cols] = part.scales
        self.rgba[:, rows, cols] = part.rgba
        if embeddings:
            self.embeddings[:, rows, cols] = part.embeddings


def _zeros(bands: int, h: int, w: int, pixel_major: bool) -> np.ndarray:
    """Zero int8 (bands, h, w), band-major or as a view of pixel-major memory."""
    if pixel_major:
        return np.zeros((h, w, bands), np.int8).transpose(2, 0, 1)
    return np.zeros((bands, h, w), np.int8)


def reduce_window(read_emb: Callable[[int, int], np.ndarray], scales: np.ndarray,
                  rgba: np.ndarray, bands: int, out_shape: tuple[int, int],
                  strip: int, *, pixel_major: bool = False) -> Reduced:
    """The next level over ``out_shape`` pixels from a window of the level below: its
    ``scales`` (h, w), ``rgba`` (4, h, w) and ``read_emb(a, b)``, the (bands, b − a, w)
    embeddings of its rows [a, b), read ``strip`` output rows at a time (a reader of a store
    wants whole chunk rows, ``strip_rows``; a shard in memory can take fewer,
    ``memory_strip``) and reduced ``memory_strip`` rows at a time whatever the strip, so the
    band-major loop's working set stays in cache; pixels without valid children keep the
    fill values. Every output pixel depends on its 2×2 children alone, so the result does
    not depend on how a level is cut into windows or strips.

    ``pixel_major`` (children with bands at unit stride): the result's embeddings are
    pixel-major, as ``mean2x2`` makes them (no transposing paste), so the next level's
    reduction takes the faster loop again; and each strip is reduced in one call (that loop
    keeps no temporaries: a 1024-px shard took 0.078 CPU-s in 32-row strips against 0.101
    one row at a time, the rgba and paste costs per call)."""
    h, w = out_shape
    out = Reduced.filled(bands, h, w, pixel_major=pixel_major)
    step = strip if pixel_major else memory_strip(bands, w)
    for o0 in range(0, h, strip):
        a, b = 2 * o0, min(2 * (o0 + strip), scales.shape[0])
        if a >= b or not np.isfinite(scales[a:b]).any():
            continue
        emb = read_emb(a, b)
        for s0 in range(0, -(-(b - a) // 2), step):
            i, j = a + 2 * s0, min(a + 2 * (s0 + step), b)
            e, sc = reduce_embeddings(emb[:, i - a:j - a], scales[i:j])
            out.paste(Reduced(e, sc, reduce_rgba(rgba[:, i:j])), o0 + s0, 0)
    return out


def parent_shards(children: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """Shards of the next level that have at least one of ``children`` below them, sorted."""
    return sorted({(r // 2, c // 2) for r, c in children})


# --- running a level ---------------------------------------------------------------------------


def run_shard_tasks(fn: Callable, tasks: list, executor: Executor, *, max_in_flight: int,
                    label: str, on_progress: ProgressFn | None,
                    retries: int = DEFAULT_RETRIES) -> dict[Any, Any]:
    """``{task: fn(task)}`` for shard tasks (with ``store``, ``level``, ``row``, ``col``); a
    task that raises runs again up to ``retries`` times (each attempt rewrites its shard).

    Raises ShardWriteError naming the store, level and shard of the first task that failed
    on every attempt.
    """
    def on_retry(t, attempt, error):
        log.warning("%s/L%s: shard %s failed (attempt %d of %d), running it again: %s",
                    t.store, t.level, (t.row, t.col), attempt, retries + 1, error)

    try:
        return dict(run_tasks(fn, tasks, executor, label=label, max_in_flight=max_in_flight,
                              retries=retries, on_retry=on_retry, on_progress=on_progress))
    except TaskFailed as e:
        t = e.task
        raise ShardWriteError(f"{t.store}/L{t.level}", (t.row, t.col), e.cause,
                              e.attempts) from e.cause


@dataclass(frozen=True, slots=True)
class LevelReport:
    """What writing one level took: shards computed, valid pixels, wall seconds."""

    level: int
    shape: tuple[int, int]
    shards: int
    valid_pixels: int
    seconds: float
    #: Made by the build's shard tasks (its time is in the build's), not by this pass.
    in_build: bool = False


def build_overviews(
    store: Location, executor: Executor, shards: Iterable[tuple[int, int]], *,
    max_in_flight: int = 4, label: str = "", on_progress: ProgressFn | None = None,
    retries: int = DEFAULT_RETRIES, start: int = 1,
) -> tuple[list[Level], list[LevelReport]]:
    """Create and fill L``start``…Ln from the level below, level by level (that level must
    already hold ``rgba``).

    ``shards`` are the non-empty shards of level ``start − 1``; only their parents are
    computed, the rest of every level stays at the fill values (NaN scales, alpha 0).
    Returns every level's geometry (L0 first) and a report per level written.
    """
    l0 = open_level(store, write=False)
    levels = pyramid(Level.of_attrs("L0", dict(l0.attrs)), l0[EMBEDDINGS].shards[1])
    reports, children = [], set(shards)
    for level in levels[start:]:
        t0 = time.perf_counter()
        create_level(store, level)
        tasks = [OverviewTask(store, level.index, r, c) for r, c in parent_shards(children)]
        done = run_shard_tasks(overview_shard, tasks, executor, max_in_flight=max_in_flight,
                               label=f"{label} {level.path}", on_progress=on_progress,
                               retries=retries)
        children = {(t.row, t.col) for t, valid in done.items() if valid}
        reports.append(LevelReport(level.index, level.shape, len(tasks), sum(done.values()),
                                   time.perf_counter() - t0))
    return levels, reports


def read_bands(emb: Any, bands: tuple[int, ...], rows: slice, cols: slice) -> np.ndarray:
    """int8 block (len(bands), rows, cols) of an embeddings array. Inner chunks hold every
    band, so all bands are read (a plain slice, zarr's fastest path) and the chosen ones taken
    in memory."""
    block = emb[:, rows, cols]
    return block if bands == tuple(range(emb.shape[0])) else block[list(bands)]
