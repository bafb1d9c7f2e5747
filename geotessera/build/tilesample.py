"""One tile's share of the year's stretch sample (``build/stretch.py``): the pool workers'
side, apart from the planning so that a worker running it never imports the registry
(pyarrow: about 75 MiB of RSS in every worker for the whole build)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from geotessera.build.assemble import PieceSource, TileArrays
from geotessera.types import Window

WINDOW = 32


@dataclass(frozen=True, slots=True)
class TileSampleTask:
    """Sample one tile; picklable."""

    piece: PieceSource
    zone: int
    bands: tuple[int, ...]
    seed: int
    windows: int
    pixels_per_window: int


def sample_tile(task: TileSampleTask) -> np.ndarray:
    """(n, len(bands)) float32 dequantised values of seeded valid pixels of one tile."""
    files = TileArrays(task.piece)
    h, w = task.piece.shape[:2]
    whole = Window(0, h, 0, w)
    scales = files.scales_window(whole)
    valid = np.isfinite(scales) & (files.landmask(whole) != 0)
    rng = np.random.default_rng([task.seed, task.zone,
                                 zlib.crc32(task.piece.key.name.encode())])
    n = WINDOW
    padded = np.zeros((-(-h // n) * n, -(-w // n) * n), bool)
    padded[:h, :w] = valid
    per_window = padded.reshape(padded.shape[0] // n, n, padded.shape[1] // n, n).any((1, 3))
    cand = np.argwhere(per_window)
    rows, cols = [np.empty(0, np.intp)], [np.empty(0, np.intp)]
    for wi, wj in cand[np.sort(rng.choice(len(cand), min(task.windows, len(cand)), False))]:
        rr, cc = np.nonzero(padded[wi * n:(wi + 1) * n, wj * n:(wj + 1) * n])
        sel = np.sort(rng.choice(len(rr), min(task.pixels_per_window, len(rr)), False))
        rows.append(rr[sel] + wi * n)
        cols.append(cc[sel] + wj * n)
    r, c = np.concatenate(rows), np.concatenate(cols)
    if not len(r):
        return np.empty((0, len(task.bands)), np.float32)
    vectors = np.asarray(files.embeddings_gather(r, c))[:, list(task.bands)]
    return vectors.astype(np.float32) * scales[r, c][:, None]
