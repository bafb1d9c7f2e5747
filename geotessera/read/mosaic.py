"""The output of ``read_region`` filled from the stores' windows, one block of rows at a time.

Each output pixel has an owner (a store's window, ``Part``, or none) and, in it, its nearest
window pixel. The stores' int8 data under the output is decoded once, tile by tile (the inner
chunks, decoded straight into one buffer), so every output pixel's source is one index into
that buffer. The output is allocated once, uninitialised, and each block of rows is written
once: its int8 vectors are gathered into a small reused buffer and multiplied by their scales
straight into the output (``value = int8 × scale``; NaN where no part owns the pixel: its
scale is NaN).

Why by hand: no library gathers a (band, y, x) int8 window by a per-pixel index and
dequantises it into a float32 output. The whole-output version this replaces (a NaN-filled
output, a gather of every owned pixel, its float32 copy, their product, a scatter) measured
2.2–2.9× the CPU of zarr's decode + dequantise of the same windows and 2.6× the output's memory
(benchmarks/_regions.py). Full-width row blocks keep the multiply's output contiguous per band
(64 × 256 tiles made the multiply 2.6× slower, measured) and a block's index in cache across
the bands; ``np.take`` with ``mode="clip"`` writes into ``out`` unbuffered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from geotessera.types import Level

#: Output pixels per block of rows (at least one row): 256 KiB of indices, 4 MiB of int8 at
#: 128 bands.
BLOCK_PX = 1 << 15


@dataclass(frozen=True, slots=True)
class Part:
    """One store's window: its scales and, for every output pixel, its nearest window pixel.

    Its embeddings are decoded only over ``tiles`` (tile rows and columns of the level, of
    ``edge`` pixels: the inner chunks where the layout is ours), the tiles that cover the
    bounding box of the window's finite scales: no owned output pixel points outside them.
    They are held tile by tile: pixel (r, c) of tile k at ``(k·edge + r)·edge + c``.
    """

    zone: int
    level: Level
    transform: tuple[float, float, float, float, float, float]  # of the window
    store: Any  # the ZoneStore read
    bands: int
    origin: tuple[int, int]  # the window's first row and column in the level
    tiles: tuple[range, range]
    edge: int
    sc: np.ndarray  # (h, w) float32: the window
    idx: np.ndarray  # (H, W) flat index into the window, -1 where it does not reach

    @property
    def npix(self) -> int:
        """Pixels of the decoded tiles."""
        return len(self.tiles[0]) * len(self.tiles[1]) * self.edge**2

    @property
    def valid(self) -> np.ndarray:
        """(H, W): the output pixels this part has data for."""
        ok = self.idx >= 0
        out = np.zeros(self.idx.shape, bool)
        out[ok] = np.isfinite(self.sc.ravel()[self.idx[ok]])
        return out

    def sources(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pixel indices into the decoded tiles, scales) of window pixels ``idx`` (inside
        the tiles)."""
        r, c = np.divmod(idx, self.sc.shape[1])
        r += self.origin[0]
        c += self.origin[1]
        (tr, tc), e = np.divmod(r, self.edge), np.divmod(c, self.edge)
        tile = (tr - self.tiles[0][0]) * len(self.tiles[1]) + e[0] - self.tiles[1][0]
        return (tile * self.edge + tc) * self.edge + e[1], self.sc.ravel()[idx]

    def decode(self, out: np.ndarray) -> None:
        """Decode the tiles' int8 embeddings into ``out`` ((band, npix), a view)."""
        rows, cols = self.tiles
        self.store.tiles(self.level, rows, cols, self.edge,
                         out.reshape(self.bands, len(rows), len(cols), self.edge, self.edge))


def fill(parts: list[Part], owner: np.ndarray, bands: int) -> np.ndarray:
    """The (bands, H, W) float32 output: each pixel from its ``owner`` part (-1: NaN)."""
    data, offsets = _decode(parts, bands)
    src = np.zeros(owner.shape, np.intp)  # unowned: any index (its scale is NaN)
    scale = np.full(owner.shape, np.nan, np.float32)
    for k, p in enumerate(parts):
        mine = owner == k
        at, scale[mine] = p.sources(p.idx[mine])
        src[mine] = at + offsets[k]
    h, w = owner.shape
    out = np.empty((bands, h, w), np.float32)
    rows = max(1, BLOCK_PX // w)
    buf = np.empty(bands * rows * w, np.int8)
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        q = buf[:bands * (r1 - r0) * w].reshape(bands, -1)
        np.take(data, src[r0:r1].ravel(), axis=1, out=q, mode="clip")  # "raise" buffers out
        np.multiply(q.reshape(bands, r1 - r0, w), scale[r0:r1], out=out[:, r0:r1])
    return out


def _decode(parts: list[Part], bands: int) -> tuple[np.ndarray, list[int]]:
    """(bands, Σ tile pixels) int8: every part's tiles, decoded in place; each part's offset."""
    offsets = np.cumsum([0, *(p.npix for p in parts)]).tolist()
    data = np.empty((bands, max(offsets[-1], 1)), np.int8)
    for p, a, b in zip(parts, offsets, offsets[1:]):
        p.decode(data[:, a:b])
    return data, offsets[:-1]
