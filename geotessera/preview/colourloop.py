"""The ``bands`` stretch of a shard in memory as one compiled loop (numba).

Written by hand because numpy cannot fuse it: ``Stretch.colour`` over ``colour_window``
gathers the three bands out of a pixel-major shard (a strided copy), then makes about ten
float32/float64 passes over (3, h, w) temporaries (dequantise, mask, subtract, divide, clip,
nan_to_num, scale, round, where). This loop reads each pixel's three bytes and its scale
once. Per 1024² shard of 128 bands: see ``benchmarks/bench_reduce.py``.

It performs the same IEEE operations in the same order as the numpy path, without
fast-math: the float32 product of the value and the scale, then in float64 the difference
from ``low``, the division by ``high − low``, the clip to [0, 1] (NaN becomes 0), ×255 and
round half to even. ``tests/test_colourloop.py`` checks it against ``colour_window`` bit for
bit. Only the fused build calls it, whose workers have numba loaded for the reduction.
"""

from __future__ import annotations

import numpy as np
from numba import njit  # the build's extra: readers never import this module

from geotessera.preview.stretch import Stretch


@njit(cache=True, nogil=True)
def _colour(emb, b0, b1, b2, scales, low, span, out):  # pragma: no cover - compiled
    """``emb`` (h, w, bands) int8, ``scales`` (h, w), ``out`` (4, h, w) zeros."""
    h, w = scales.shape
    bands = (b0, b1, b2)
    for y in range(h):
        for x in range(w):
            s = scales[y, x]
            if not np.isfinite(s):
                continue
            for c in range(3):
                v = np.float32(emb[y, x, bands[c]]) * s
                t = (np.float64(v) - low[c]) / span[c]
                if not t >= 0.0:  # below zero, or NaN (nan_to_num after the clip)
                    t = 0.0
                elif t > 1.0:
                    t = 1.0
                out[c, y, x] = np.uint8(np.rint(t * 255.0))
            out[3, y, x] = 255


def colour_pixel_major(stretch: Stretch, emb: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """(4, h, w) uint8 RGBA of a shard, ``emb`` (bands, h, w) with bands at unit stride (a
    pixel-major shard's band-major view), for a ``bands`` stretch: the bytes
    ``colour_window`` gives."""
    if stretch.mode != "bands" or len(stretch.bands) != 3:
        raise ValueError("the compiled loop colours a three-band 'bands' stretch only")
    low = np.asarray(stretch.low, np.float64)
    span = np.asarray(stretch.high, np.float64) - low
    out = np.zeros((4, *scales.shape), np.uint8)
    b0, b1, b2 = (int(b) for b in stretch.bands)
    _colour(emb.transpose(1, 2, 0), b0, b1, b2, np.asarray(scales, np.float32), low, span,
            out)
    return out
